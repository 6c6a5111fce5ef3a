"""Mixup and CutMix: new training examples from pairs of the batch, with mixed (soft) labels."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from trainlab.augment._base import AugmentContext, Transform, sample_beta, soft_targets
from trainlab.augment._erase import box_mask, square_boxes
from trainlab.errors import ConfigError
from trainlab.population import member_view

__all__ = ["Mixup", "CutMix"]


def _partners(x: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """``(P, N, ...)``: member ``p``'s example ``n`` paired with example ``perm[p, n]`` of its batch."""
    P = perm.shape[0]
    if x.shape[0] == 1:
        return x[0][perm]
    return x[torch.arange(P, device=x.device).unsqueeze(1), perm]


def _num_classes(transform: Transform, augmenter: AugmentContext) -> int:
    if augmenter.num_classes is None:
        raise ConfigError(f"{type(transform).__name__} mixes targets into probability vectors and needs the class "
                          "count: give Augmenter(num_classes=...) (the Trainer fills it from the model)")
    return augmenter.num_classes


def _mix_targets(targets: torch.Tensor, perm: torch.Tensor, lam: torch.Tensor, num_classes: int,
                 dtype: torch.dtype) -> torch.Tensor:
    """``lam * t + (1 - lam) * t[perm]`` per member: soft targets ``(P, N, C)``."""
    P = perm.shape[0]
    t = soft_targets(targets, P, num_classes, dtype)
    # lerp: t + (1 - lam) (t_pi - t) -- exactly t where an example is its own partner
    return torch.lerp(t, _partners(t, perm), member_view(1.0 - lam.to(dtype), 3))


class _Mixing(Transform):
    def __init__(self, alpha: float | Sequence[float]) -> None:
        self._settings = dict(alpha=alpha)
        self.alpha = alpha
        self._setup_values(None)
        #: the last draw: the label weight of each example's own class ``(P,)`` and the partners ``(P, N)``
        self.last_lam: torch.Tensor | None = None
        self.last_perm: torch.Tensor | None = None

    def _setup_values(self, P: int | None) -> None:
        self._alpha = self._member_values(self.alpha, P, "alpha", low=0.0)


class Mixup(_Mixing):
    """Mixup (Zhang et al. 2018): blend each example with a partner, and their labels alike.

    Per member and step: ``lambda ~ Beta(alpha, alpha)`` and a random permutation
    ``pi`` of the batch (the partners), then for every example ``n``::

        x'_n = lambda * x_n + (1 - lambda) * x_pi(n)
        t'_n = lambda * onehot(y_n) + (1 - lambda) * onehot(y_pi(n))

    so the targets become soft ``(P, N, C)``; :class:`~trainlab.nn.SoftmaxCrossEntropy`
    takes them as they are (and applies its label smoothing once, to the mixed
    targets). One lambda per batch, as in the paper's code. ``alpha`` may differ per
    member; ``alpha = 0`` is off (``lambda = 1``). Small alphas (0.1 - 0.4) mostly give
    lambda near 0 or 1: lightly mixed examples. Any batch size works: an example
    paired with itself (probability ``1/N``) is unchanged, and a batch of one is
    returned as it is (with soft one-hot targets).

    See: Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018,
    https://arxiv.org/abs/1710.09412
    """

    name = "mixup"

    def apply(self, x: torch.Tensor, targets: torch.Tensor, augmenter: AugmentContext) -> tuple[torch.Tensor, torch.Tensor]:
        P, N = self.population_size, x.shape[1]
        lam = sample_beta(self, self._alpha, x.device)
        perm = self.permutations(N, x.device)
        self.last_lam, self.last_perm = lam, perm
        # x + (1 - lam) (x_pi - x): an example paired with itself comes back bit for bit
        mixed = torch.lerp(x, _partners(x, perm), member_view((1.0 - lam).to(x.dtype), x.ndim))
        return mixed.expand(P, *x.shape[1:]), _mix_targets(targets, perm, lam, _num_classes(self, augmenter), x.dtype)


class CutMix(_Mixing):
    """CutMix (Yun et al. 2019): paste a box of a partner image, and mix labels by area.

    Per member and step: ``lambda ~ Beta(alpha, alpha)``, a partner permutation
    ``pi``, and one box of ``(1 - lambda)`` of the image area -- sides
    ``floor(H sqrt(1 - lambda))`` x ``floor(W sqrt(1 - lambda))``, centre uniform over
    the image, clipped at the borders. Inside the box every example takes its
    partner's pixels. The label weights then follow the area actually pasted::

        lambda' = 1 - (box area) / (H * W)
        t'_n    = lambda' * onehot(y_n) + (1 - lambda') * onehot(y_pi(n))

    ``last_lam`` is ``lambda'`` (``(P,)``), ``last_boxes`` the boxes ``(P, 4)``
    (top, left, bottom, right; exclusive ends). ``alpha = 0`` is off; a batch of one
    pastes the image into itself (unchanged).

    See: Yun et al., "CutMix: Regularization Strategy to Train Strong Classifiers
    with Localizable Features", ICCV 2019, https://arxiv.org/abs/1905.04899
    """

    name = "cutmix"
    needs_images = True

    def apply(self, x: torch.Tensor, targets: torch.Tensor, augmenter: AugmentContext) -> tuple[torch.Tensor, torch.Tensor]:
        P = self.population_size
        _, N, C, H, W = x.shape
        lam = sample_beta(self, self._alpha, x.device)
        u = self.draw((2,), device=x.device, dtype=torch.float64)
        perm = self.permutations(N, x.device)
        r = torch.sqrt(1.0 - lam)
        side_h, side_w = (H * r).floor().long(), (W * r).floor().long()
        cy = (u[:, 0] * H).floor().long().clamp_(max=H - 1)
        cx = (u[:, 1] * W).floor().long().clamp_(max=W - 1)
        boxes = square_boxes(cy, cx, side_h, side_w, H, W)  # (P, 4)
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        lam_area = 1.0 - area.to(torch.float64) / (H * W)
        self.last_lam, self.last_perm, self.last_boxes = lam_area, perm, boxes
        mask = box_mask(boxes, H, W).unsqueeze(1)  # (P, 1, 1, H, W)
        mixed = torch.where(mask, _partners(x, perm), x)
        return mixed, _mix_targets(targets, perm, lam_area, _num_classes(self, augmenter), x.dtype)
