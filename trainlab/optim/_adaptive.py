"""More adaptive optimizers: NAdam, RAdam, Adamax, Adadelta.

Each follows its ``torch.optim`` namesake step for step (same defaults, same place for
``eps``, same bias corrections) and is pinned to it in ``tests/optim_tests``. The step
count ``t`` in every bias correction is the member's own (a frozen member's stops).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from trainlab.nn import Parameter
from trainlab.optim._base import Number, Optimizer

__all__ = ["NAdam", "RAdam", "Adamax", "Adadelta"]

_BETAS = {"beta1": (0.0, True, 1.0, False), "beta2": (0.0, True, 1.0, False), "eps": (0.0, False, None, False)}


class _AdamFamily(Optimizer):
    """Shared: ``m`` and a second-moment state, ``t`` per member, ``(P, 1, ...)`` views of per-step scalars."""

    _ranges = dict(_BETAS)
    _state_names = ("m", "v")

    def _member_t(self) -> torch.Tensor:
        """Each member's step number after this step's increment, as the hyperparameters' dtype."""
        return (self.steps + self.active.to(self.steps.dtype)).to(self.hparams["lr"].dtype)

    def _col(self, v: torch.Tensor, ndim: int) -> torch.Tensor:
        return v.reshape((self.size,) + (1,) * (ndim - 1))


class NAdam(_AdamFamily):
    """Adam with Nesterov momentum (Dozat 2016), in ``torch.optim.NAdam``'s form (defaults lr 2e-3,
    betas 0.9/0.999, eps 1e-8, ``momentum_decay`` psi = 4e-3)::

        mu_t = b1 (1 - 0.5 * 0.96^(t psi)),  mu_{t+1} likewise,  Pi_t = prod_{s<=t} mu_s
        m <- b1 m + (1-b1) g,   v <- b2 v + (1-b2) g^2,   d = sqrt(v / (1 - b2^t)) + eps
        w <- w - lr (1 - mu_t) / (1 - Pi_t) * g / d - lr mu_{t+1} / (1 - Pi_t mu_{t+1}) * m / d

    ``Pi_t`` (the momentum-schedule product) is per member and saved in checkpoints.
    """

    _ranges = {**_BETAS, "momentum_decay": (0.0, True, None, False)}

    def __init__(self, params: Iterable[Parameter], *, lr: Number = 2e-3, beta1: Number = 0.9, beta2: Number = 0.999,
                 eps: Number = 1e-8, momentum_decay: Number = 4e-3, weight_decay: Number = 0.0,
                 decoupled: bool = False) -> None:
        super().__init__(params, lr=lr, weight_decay=weight_decay, decoupled=decoupled, beta1=beta1, beta2=beta2,
                         eps=eps, momentum_decay=momentum_decay)
        self.mu_product = torch.ones(self.size, dtype=self.hparams["lr"].dtype, device=self.steps.device)

    def step(self) -> None:
        t = self._member_t()
        b1, psi = self.hparams["beta1"], self.hparams["momentum_decay"]
        mu = b1 * (1.0 - 0.5 * 0.96 ** (t * psi))
        mu_next = b1 * (1.0 - 0.5 * 0.96 ** ((t + 1.0) * psi))
        prod = torch.where(self.active, self.mu_product * mu, self.mu_product)
        self._c_g = (1.0 - mu) / (1.0 - prod)
        self._c_m = mu_next / (1.0 - prod * mu_next)
        self._bc2 = 1.0 - self.hparams["beta2"] ** t
        super().step()
        self.mu_product.copy_(prod)

    def _update(self, w: torch.Tensor, g: torch.Tensor, state: dict[str, torch.Tensor], lr: torch.Tensor) -> None:
        m, v = self._adam_moments(w, g, state)
        denom = (v / self._col(self._bc2, w.ndim)).sqrt_().add_(self.h("eps", w.ndim))
        w.addcdiv_(g * (lr * self._col(self._c_g, w.ndim)), denom, value=-1.0)
        w.addcdiv_(m * (lr * self._col(self._c_m, w.ndim)), denom, value=-1.0)

    def zero_state(self) -> None:
        super().zero_state()
        self.mu_product.fill_(1.0)

    def state_dict(self) -> dict[str, torch.Tensor]:
        # The base class's load_state_dict restores every tensor listed here, this one included.
        return {**super().state_dict(), "mu_product": self.mu_product}


class RAdam(_AdamFamily):
    """Rectified Adam (Liu et al. 2020), as ``torch.optim.RAdam`` (lr 1e-3, betas 0.9/0.999, eps 1e-8)::

        m, v as Adam;  m_hat = m / (1 - b1^t)
        rho_inf = 2 / (1 - b2) - 1,   rho_t = rho_inf - 2 t b2^t / (1 - b2^t)
        rho_t > 5:  r = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
                    w <- w - lr m_hat r sqrt(1 - b2^t) / (sqrt(v) + eps)
        otherwise:  w <- w - lr m_hat          (the variance estimate is not yet trusted: SGD with momentum)

    The switch is per member (members with different ``beta2`` switch at different steps).
    """

    def __init__(self, params: Iterable[Parameter], *, lr: Number = 1e-3, beta1: Number = 0.9, beta2: Number = 0.999,
                 eps: Number = 1e-8, weight_decay: Number = 0.0, decoupled: bool = False) -> None:
        super().__init__(params, lr=lr, weight_decay=weight_decay, decoupled=decoupled, beta1=beta1, beta2=beta2,
                         eps=eps)

    def step(self) -> None:
        t = self._member_t()
        b1, b2 = self.hparams["beta1"], self.hparams["beta2"]
        self._bc1 = 1.0 - b1 ** t
        bc2 = 1.0 - b2 ** t
        rho_inf = 2.0 / (1.0 - b2) - 1.0
        rho_t = rho_inf - 2.0 * t * b2 ** t / bc2
        self._rectify = rho_t > 5.0
        r2 = (rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t)
        self._rect = torch.where(self._rectify, r2.clamp(min=0.0).sqrt(), torch.zeros_like(r2))
        self._sqrt_bc2 = bc2.sqrt()
        super().step()

    def _update(self, w: torch.Tensor, g: torch.Tensor, state: dict[str, torch.Tensor], lr: torch.Tensor) -> None:
        m, v = self._adam_moments(w, g, state)
        m_hat = m / self._col(self._bc1, w.ndim)
        adaptive = self._col(self._sqrt_bc2, w.ndim) / (v.sqrt() + self.h("eps", w.ndim))
        step = torch.where(self._col(self._rectify, w.ndim), m_hat * lr * adaptive * self._col(self._rect, w.ndim),
                           m_hat * lr)
        w.sub_(step)


class Adamax(_AdamFamily):
    """Adam's infinity-norm variant (Kingma & Ba 2015, section 7.1), as ``torch.optim.Adamax``
    (lr 2e-3, betas 0.9/0.999, eps 1e-8)::

        m <- b1 m + (1-b1) g,   u <- max(b2 u, |g| + eps),   w <- w - lr / (1 - b1^t) * m / u

    (torch adds ``eps`` inside the max, not to the denominator; so does this.)
    """

    _state_names = ("m", "u")

    def __init__(self, params: Iterable[Parameter], *, lr: Number = 2e-3, beta1: Number = 0.9, beta2: Number = 0.999,
                 eps: Number = 1e-8, weight_decay: Number = 0.0, decoupled: bool = False) -> None:
        super().__init__(params, lr=lr, weight_decay=weight_decay, decoupled=decoupled, beta1=beta1, beta2=beta2,
                         eps=eps)

    def step(self) -> None:
        self._bc1 = 1.0 - self.hparams["beta1"] ** self._member_t()
        super().step()

    def _update(self, w: torch.Tensor, g: torch.Tensor, state: dict[str, torch.Tensor], lr: torch.Tensor) -> None:
        m, u = state["m"], state["u"]
        b1 = self.h("beta1", w.ndim)
        m.mul_(b1).addcmul_(g, 1.0 - b1)
        torch.maximum(u * self.h("beta2", w.ndim), g.abs() + self.h("eps", w.ndim), out=u)
        w.addcdiv_(m * (lr / self._col(self._bc1, w.ndim)), u, value=-1.0)


class Adadelta(Optimizer):
    """Adadelta (Zeiler 2012), as ``torch.optim.Adadelta`` (lr 1.0, rho 0.9, eps 1e-6)::

        s <- rho s + (1 - rho) g^2
        d = sqrt(a + eps) / sqrt(s + eps) * g          (a: the running mean of squared updates)
        a <- rho a + (1 - rho) d^2
        w <- w - lr d

    Zeiler's rule has no learning rate (``lr = 1``); torch and trainlab keep it as a multiplier.
    """

    _ranges = {"rho": (0.0, True, 1.0, True), "eps": (0.0, False, None, False)}
    _state_names = ("square_avg", "acc_delta")

    def __init__(self, params: Iterable[Parameter], *, lr: Number = 1.0, rho: Number = 0.9, eps: Number = 1e-6,
                 weight_decay: Number = 0.0, decoupled: bool = False) -> None:
        super().__init__(params, lr=lr, weight_decay=weight_decay, decoupled=decoupled, rho=rho, eps=eps)

    def _update(self, w: torch.Tensor, g: torch.Tensor, state: dict[str, torch.Tensor], lr: torch.Tensor) -> None:
        s, a = state["square_avg"], state["acc_delta"]
        rho, eps = self.h("rho", w.ndim), self.h("eps", w.ndim)
        s.mul_(rho).addcmul_(g * g, 1.0 - rho)
        d = (a + eps).sqrt_().div_((s + eps).sqrt_()).mul_(g)
        a.mul_(rho).addcmul_(d * d, 1.0 - rho)
        w.addcmul_(d, lr, value=-1.0)
