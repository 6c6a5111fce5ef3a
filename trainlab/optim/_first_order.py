"""First-order optimizers. Update rules follow ``torch.optim`` exactly (same defaults
where the textbook differs, and each docstring says where it does)."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from trainlab.nn import Parameter
from trainlab.optim._base import Number, Optimizer

__all__ = ["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSProp", "Adam", "AdamW"]


class SGD(Optimizer):
    """``w <- w - lr * g``.  See: ``torch.optim.SGD``."""

    def __init__(self, params: Iterable[Parameter], *, lr: Number = 0.01, weight_decay: Number = 0.0,
                 decoupled: bool = False) -> None:
        super().__init__(params, lr=lr, weight_decay=weight_decay, decoupled=decoupled)

    def _update(self, w: torch.Tensor, g: torch.Tensor, state: dict[str, torch.Tensor], lr: torch.Tensor) -> None:
        w.addcmul_(g, lr, value=-1.0)

    def _update_all(self, ws: list[torch.Tensor], gs: list[torch.Tensor], states: list[dict[str, torch.Tensor]],
                    lrs: list[torch.Tensor]) -> None:
        if type(self)._update is not SGD._update:  # a subclass with its own rule: that rule, per parameter
            return super()._update_all(ws, gs, states, lrs)
        torch._foreach_addcmul_(ws, gs, lrs, value=-1.0)  # _update on every parameter, one call


class Momentum(Optimizer):
    """Heavy ball: ``v <- mu v + g``, ``w <- w - lr v`` (``torch.optim.SGD(momentum=mu)``, dampening 0).

    The textbook writes ``v <- mu v - lr g; w <- w + v``: the same steps while the
    learning rate is constant (its ``v`` is ``-lr`` times this one).
    """

    _ranges = {"momentum": (0.0, True, 1.0, False)}
    _state_names = ("velocity",)

    def __init__(self, params: Iterable[Parameter], *, lr: Number = 0.01, momentum: Number = 0.9,
                 weight_decay: Number = 0.0, decoupled: bool = False) -> None:
        super().__init__(params, lr=lr, weight_decay=weight_decay, decoupled=decoupled, momentum=momentum)

    def _update(self, w: torch.Tensor, g: torch.Tensor, state: dict[str, torch.Tensor], lr: torch.Tensor) -> None:
        v = state["velocity"]
        v.mul_(self.h("momentum", w.ndim)).add_(g)
        w.addcmul_(v, lr, value=-1.0)

    def _update_all(self, ws: list[torch.Tensor], gs: list[torch.Tensor], states: list[dict[str, torch.Tensor]],
                    lrs: list[torch.Tensor]) -> None:
        if type(self)._update is not Momentum._update:  # a subclass with its own rule (Nesterov): its _update
            return super()._update_all(ws, gs, states, lrs)
        vs = [st["velocity"] for st in states]
        torch._foreach_mul_(vs, [self.h("momentum", w.ndim) for w in ws])
        torch._foreach_add_(vs, gs)
        torch._foreach_addcmul_(ws, vs, lrs, value=-1.0)


class Nesterov(Momentum):
    """Nesterov momentum in the form of ``torch.optim.SGD(momentum=mu, nesterov=True)``:
    ``v <- mu v + g``, ``w <- w - lr (g + mu v)``."""

    def _update(self, w: torch.Tensor, g: torch.Tensor, state: dict[str, torch.Tensor], lr: torch.Tensor) -> None:
        v = state["velocity"]
        mu = self.h("momentum", w.ndim)
        v.mul_(mu).add_(g)
        w.addcmul_(g + mu * v, lr, value=-1.0)


class AdaGrad(Optimizer):
    """``h <- h + g^2``, ``w <- w - lr g / (sqrt(h) + eps)``.  See: ``torch.optim.Adagrad``.

    Default ``eps = 1e-10`` (PyTorch); the textbook adds ``1e-7``.
    """

    _ranges = {"eps": (0.0, False, None, False)}
    _state_names = ("sum_sq",)

    def __init__(self, params: Iterable[Parameter], *, lr: Number = 0.01, eps: Number = 1e-10,
                 weight_decay: Number = 0.0, decoupled: bool = False) -> None:
        super().__init__(params, lr=lr, weight_decay=weight_decay, decoupled=decoupled, eps=eps)

    def _update(self, w: torch.Tensor, g: torch.Tensor, state: dict[str, torch.Tensor], lr: torch.Tensor) -> None:
        h = state["sum_sq"]
        h.addcmul_(g, g)
        w.addcmul_(g / (h.sqrt() + self.h("eps", w.ndim)), lr, value=-1.0)


class RMSProp(Optimizer):
    """``s <- a s + (1 - a) g^2``, ``w <- w - lr g / (sqrt(s) + eps)``.  See: ``torch.optim.RMSprop``.

    Defaults ``alpha = 0.99`` (the textbook's ``decay_rate``), ``eps = 1e-8`` (textbook: 1e-7).

    ``centered=True`` (Graves 2013; ``torch.optim.RMSprop(centered=True)``) also keeps the mean
    gradient ``gbar <- a gbar + (1 - a) g`` and divides by the estimated standard deviation
    instead: ``w <- w - lr g / (sqrt(s - gbar^2) + eps)``.
    """

    _ranges = {"alpha": (0.0, True, 1.0, False), "eps": (0.0, False, None, False)}
    _state_names: tuple[str, ...] = ("mean_sq",)

    def __init__(self, params: Iterable[Parameter], *, lr: Number = 0.01, alpha: Number = 0.99,
                 eps: Number = 1e-8, weight_decay: Number = 0.0, decoupled: bool = False,
                 centered: bool = False) -> None:
        self.centered = bool(centered)
        if self.centered:
            self._state_names = ("mean_sq", "grad_avg")
        super().__init__(params, lr=lr, weight_decay=weight_decay, decoupled=decoupled, alpha=alpha, eps=eps)
        if self.centered:
            self._settings["centered"] = True

    def _update(self, w: torch.Tensor, g: torch.Tensor, state: dict[str, torch.Tensor], lr: torch.Tensor) -> None:
        s = state["mean_sq"]
        a = self.h("alpha", w.ndim)
        s.mul_(a).addcmul_(g * g, 1.0 - a)
        if self.centered:
            gbar = state["grad_avg"]
            gbar.mul_(a).addcmul_(g, 1.0 - a)
            w.addcmul_(g / (s.addcmul(gbar, gbar, value=-1.0).sqrt_() + self.h("eps", w.ndim)), lr, value=-1.0)
            return
        w.addcmul_(g / (s.sqrt() + self.h("eps", w.ndim)), lr, value=-1.0)


class Adam(Optimizer):
    """Kingma & Ba 2015: ``m <- b1 m + (1-b1) g``, ``v <- b2 v + (1-b2) g^2``,
    ``w <- w - lr * m_hat / (sqrt(v_hat) + eps)`` with bias corrections
    ``m_hat = m / (1 - b1^t)``, ``v_hat = v / (1 - b2^t)`` (``t`` counted per member).
    See: ``torch.optim.Adam`` (same defaults: lr 1e-3, betas 0.9/0.999, eps 1e-8).
    """

    _ranges = {"beta1": (0.0, True, 1.0, False), "beta2": (0.0, True, 1.0, False), "eps": (0.0, False, None, False)}
    _state_names = ("m", "v")

    def __init__(self, params: Iterable[Parameter], *, lr: Number = 1e-3, beta1: Number = 0.9,
                 beta2: Number = 0.999, eps: Number = 1e-8, weight_decay: Number = 0.0,
                 decoupled: bool = False) -> None:
        super().__init__(params, lr=lr, weight_decay=weight_decay, decoupled=decoupled, beta1=beta1,
                         beta2=beta2, eps=eps)

    def step(self) -> None:
        # Bias corrections depend on each member's own step count (after this step's increment).
        t = (self.steps + self.active.to(self.steps.dtype)).to(self.hparams["lr"].dtype)
        self._bc1 = 1.0 - self.hparams["beta1"] ** t
        self._bc2 = 1.0 - self.hparams["beta2"] ** t
        super().step()

    def _update(self, w: torch.Tensor, g: torch.Tensor, state: dict[str, torch.Tensor], lr: torch.Tensor) -> None:
        m, v = self._adam_moments(w, g, state)
        shape = (self.size,) + (1,) * (w.ndim - 1)
        bc1, bc2 = self._bc1.reshape(shape), self._bc2.reshape(shape)
        denom = (v / bc2).sqrt_().add_(self.h("eps", w.ndim))
        w.addcdiv_(m * (lr / bc1), denom, value=-1.0)

    def _update_all(self, ws: list[torch.Tensor], gs: list[torch.Tensor], states: list[dict[str, torch.Tensor]],
                    lrs: list[torch.Tensor]) -> None:
        if type(self)._update is not Adam._update:
            return super()._update_all(ws, gs, states, lrs)
        # _update's operations, each over all parameters at once (same order, same values).
        ms, vs = [st["m"] for st in states], [st["v"] for st in states]
        b1s, b2s = [self.h("beta1", w.ndim) for w in ws], [self.h("beta2", w.ndim) for w in ws]
        torch._foreach_mul_(ms, b1s)
        torch._foreach_addcmul_(ms, gs, [1.0 - b for b in b1s])
        torch._foreach_mul_(vs, b2s)
        torch._foreach_addcmul_(vs, torch._foreach_mul(gs, gs), [1.0 - b for b in b2s])
        shapes = [(self.size,) + (1,) * (w.ndim - 1) for w in ws]
        denom = torch._foreach_div(vs, [self._bc2.reshape(s) for s in shapes])
        torch._foreach_sqrt_(denom)
        torch._foreach_add_(denom, [self.h("eps", w.ndim) for w in ws])
        steps = torch._foreach_mul(ms, [lr / self._bc1.reshape(s) for lr, s in zip(lrs, shapes)])
        torch._foreach_addcdiv_(ws, steps, denom, value=-1.0)


class AdamW(Adam):
    """Adam with decoupled weight decay (``torch.optim.AdamW``; default ``weight_decay = 0.01``):
    ``w <- w - lr * wd * w`` then the Adam step."""

    def __init__(self, params: Iterable[Parameter], *, lr: Number = 1e-3, beta1: Number = 0.9,
                 beta2: Number = 0.999, eps: Number = 1e-8, weight_decay: Number = 0.01) -> None:
        super().__init__(params, lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay,
                         decoupled=True)
