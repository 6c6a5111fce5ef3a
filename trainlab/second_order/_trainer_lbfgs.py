"""L-BFGS as a Trainer optimizer (``optim.name = "lbfgs"``): full-batch or large-batch training with a
strong-Wolfe line search. It lives with the second-order methods whose math it uses; :mod:`trainlab.optim`
(below this package) stays free of them.

The math is :class:`trainlab.second_order.LBFGS`'s (two-loop recursion, N&W Alg. 7.4) and the
line search is :func:`trainlab.second_order.wolfe_batch` (N&W Alg. 3.5/3.6), one search per
member: every evaluation of the closure evaluates all members, each at its own trial step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from trainlab.errors import ConfigError
from trainlab.nn import Module, Parameter
from trainlab.optim import Number, Optimizer
from trainlab.second_order._base import check_wolfe_constants
from trainlab.second_order._lbfgs import LBFGS as _Math
from trainlab.second_order._line_search import wolfe_batch

__all__ = ["TrainerLBFGS", "CLOSURE_OPTIMIZERS"]

Closure = Callable[[], torch.Tensor]


class _ClosureObjective:
    """``value_and_grad(W (P, m))``: write ``W`` into the parameters, run the closure, read the gradients."""

    def __init__(self, params: list[Parameter], closure: Closure) -> None:
        self.params, self.closure = params, closure
        self.evals = 0

    def flat(self) -> torch.Tensor:
        P = self.params[0].data.shape[0]
        return torch.cat([p.data.reshape(P, -1) for p in self.params], dim=1)

    def flat_grad(self) -> torch.Tensor:
        P = self.params[0].data.shape[0]
        return torch.cat([p.grad.reshape(P, -1) for p in self.params], dim=1)

    def set(self, w: torch.Tensor) -> None:
        start = 0
        for p in self.params:
            n = p.data[0].numel()
            p.data.copy_(w[:, start:start + n].reshape(p.data.shape))
            start += n

    def value_and_grad(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.set(w)
        self.evals += 1
        f = self.closure()
        return f.detach().to(w.dtype).clone(), self.flat_grad()


class TrainerLBFGS(Optimizer):
    """L-BFGS for the :class:`~trainlab.train.Trainer` (``optim.name = "lbfgs"``).

    Each :meth:`step` takes ``max_iter`` L-BFGS iterations on the current batch (default 1:
    one Trainer step = one iteration; ``torch.optim.LBFGS`` defaults to 20 per ``step``).
    An iteration, per member:

    1. ``d = -H g`` from the last ``history`` pairs ``(s, y)`` (two-loop recursion, ``H_0 = s^T y / y^T y``);
    2. a strong-Wolfe line search along ``d`` (``c1``, ``c2``, at most ``max_evals`` evaluations),
       first trial ``lr`` -- or ``lr * min(1, 1/|g|_2)`` while the member has no pair yet;
    3. the pair ``s = w' - w``, ``y = g' - g`` is kept if ``y^T s > 1e-12 |s| |y|``.

    With a full batch (``batch_size >= n``) this is :func:`trainlab.second_order.minimize`'s
    L-BFGS iteration for iteration. With large mini-batches each pair is formed on one batch
    (both gradients on the same examples), so the curvature pairs stay consistent.

    Members are independent: each has its own line search and history. A member whose
    gradient satisfies ``|g|_inf <= tolerance_grad`` has converged and does not move; a
    member whose line search fails stays where it is and forgets its history (the next
    iteration starts again with steepest descent). ``converged`` and ``failures`` (per
    member) say what happened at the last step.

    The objective must be deterministic for the line search to make sense: dropout and
    noise layers draw new masks on every evaluation, so the Trainer refuses them with L-BFGS.
    Weight decay: use ``[regularize]`` penalties (they enter the closure); there is no
    ``weight_decay`` here, as in ``torch.optim.LBFGS``.
    """

    needs_closure = True
    _ranges = {"lr": (0.0, False, None, False)}

    def __init__(self, params: Iterable[Parameter], *, lr: Number = 1.0, history: int = 10, max_iter: int = 1,
                 c1: float = 1e-4, c2: float = 0.9, max_evals: int = 25, tolerance_grad: float = 1e-7) -> None:
        for name, v in (("history", history), ("max_iter", max_iter), ("max_evals", max_evals)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"LBFGS {name} must be an integer >= 1, got {v!r}")
        check_wolfe_constants(c1, c2)
        if not (isinstance(tolerance_grad, (int, float)) and tolerance_grad >= 0):
            raise ConfigError(f"LBFGS tolerance_grad must be a number >= 0, got {tolerance_grad!r}")
        super().__init__(params, lr=lr)
        self.params = [p for p in self.params if p.trainable]
        self.history, self.max_iter, self.max_evals = history, max_iter, max_evals
        self.c1, self.c2, self.tolerance_grad = float(c1), float(c2), float(tolerance_grad)
        self._settings.update(history=history, max_iter=max_iter, c1=c1, c2=c2, max_evals=max_evals,
                              tolerance_grad=tolerance_grad)
        self._settings.pop("weight_decay")
        self._settings.pop("decoupled")
        P = self.size
        m = sum(p.data[0].numel() for p in self.params)
        first = self.params[0].data
        self.S = torch.zeros(P, history, m, dtype=first.dtype, device=first.device)
        self.Y = torch.zeros_like(self.S)
        self.rho = torch.zeros(P, history, dtype=first.dtype, device=first.device)
        self.count = torch.zeros(P, dtype=torch.int64, device=first.device)
        self.converged = torch.zeros(P, dtype=torch.bool, device=first.device)
        self.failures = torch.zeros(P, dtype=torch.int64, device=first.device)
        self.evals = 0

    def check_deterministic(self, model: Module, augment: object = None) -> None:
        """Refuse what makes the objective random (the Trainer calls this): every evaluation in a line
        search would draw new dropout masks, noise or augmentations, so no step could be accepted reliably."""
        from trainlab.nn import DropoutFamily, NoiseFamily, StochasticPool2d

        # every layer, also those nested in a Residual block
        random = sorted({type(m).__name__ for m in model.modules()
                         if isinstance(m, (DropoutFamily, NoiseFamily, StochasticPool2d))})
        if random or augment is not None:
            raise ConfigError(f"{type(self).__name__} needs a deterministic objective for its line search; "
                              f"remove {', '.join(random) or 'the augmentation'} (each evaluation would draw anew)")

    def _update(self, w: torch.Tensor, g: torch.Tensor, state: dict[str, torch.Tensor],
                lr: torch.Tensor) -> None:  # pragma: no cover - step() is overridden
        raise NotImplementedError

    def _pairs(self, i: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        return [(self.S[i, j], self.Y[i, j], self.rho[i, j]) for j in range(int(self.count[i]))]

    def _push(self, i: int, s: torch.Tensor, y: torch.Tensor, sy: torch.Tensor) -> None:
        c = int(self.count[i])
        if c == self.history:  # drop the oldest pair
            self.S[i] = self.S[i].roll(-1, dims=0)
            self.Y[i] = self.Y[i].roll(-1, dims=0)
            self.rho[i] = self.rho[i].roll(-1, dims=0)
            c -= 1
        self.S[i, c], self.Y[i, c], self.rho[i, c] = s, y, 1.0 / sy
        self.count[i] = c + 1

    def step(self, closure: Closure | None = None, loss: torch.Tensor | None = None) -> None:
        """``closure()`` evaluates the objective ``(P,)`` at the parameters' current values and fills
        every ``.grad``. ``loss``: the value at the current point with ``.grad`` already filled
        (the Trainer's forward/backward), which saves the first evaluation."""
        if closure is None:
            raise ConfigError("LBFGS.step needs a closure that evaluates the loss and fills the gradients "
                              "(the Trainer passes one)")

        obj = _ClosureObjective(self.params, closure)
        w = obj.flat()
        if loss is None:
            f, g = obj.value_and_grad(w)
        else:
            f, g = loss.detach().to(w.dtype).clone(), obj.flat_grad()
        lr = self.hparams["lr"]
        for _ in range(self.max_iter):
            gnorm = g.abs().amax(dim=1)
            finite = torch.isfinite(f) & torch.isfinite(g).all(dim=1)
            self.converged = gnorm <= self.tolerance_grad
            run = self.active & finite & ~self.converged
            members = run.nonzero().flatten().tolist()
            if not members:
                break
            d = torch.zeros_like(w)
            alpha1 = torch.ones(self.size, dtype=w.dtype, device=w.device)
            for i in members:
                pairs = self._pairs(i)
                d[i] = -_Math.two_loop(g[i], pairs)
                if not float(torch.dot(d[i], g[i])) < 0.0:  # rounding only; start afresh
                    self.count[i] = 0
                    pairs = []
                    d[i] = -g[i]
                first = 1.0 if pairs else min(1.0, 1.0 / max(float(g[i].norm()), torch.finfo(w.dtype).tiny))
                alpha1[i] = float(lr[i]) * first
            res = wolfe_batch(obj, w, d, f, g, members, alpha1, c1=self.c1, c2=self.c2, max_evals=self.max_evals)
            self.evals += res.evals
            w_new, f_new, g_new = w.clone(), f.clone(), g.clone()
            for i in members:
                if res.outcomes[i].ok:
                    s, y = res.w[i] - w[i], res.g[i] - g[i]
                    sy = torch.dot(s, y)
                    if float(sy) > 1e-12 * float(s.norm() * y.norm()):
                        self._push(i, s, y, sy)
                    w_new[i], f_new[i], g_new[i] = res.w[i], res.f[i], res.g[i]
                else:
                    self.failures[i] += 1
                    self.count[i] = 0
            self.steps += run.to(self.steps.dtype)
            w, f, g = w_new, f_new, g_new
        # The parameters hold the last trial point of the search: put every member where it belongs,
        # with the gradient of that point (what a probe reads after the step).
        obj.set(w)
        start = 0
        for p in self.params:
            n = p.data[0].numel()
            p.grad.copy_(g[:, start:start + n].reshape(p.grad.shape))
            start += n

    def zero_state(self) -> None:
        super().zero_state()
        self.count.zero_()
        self.failures.zero_()

    def state_dict(self) -> dict[str, torch.Tensor]:
        # The base class's load_state_dict checks and restores every tensor listed here.
        return {**super().state_dict(), "lbfgs.S": self.S, "lbfgs.Y": self.Y, "lbfgs.rho": self.rho,
                "lbfgs.count": self.count, "lbfgs.failures": self.failures}


#: optimizers whose ``step(closure)`` evaluates the objective itself (line searches), by config name
CLOSURE_OPTIMIZERS: dict[str, type[Optimizer]] = {"lbfgs": TrainerLBFGS}
