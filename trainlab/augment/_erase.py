"""Cutout and Gaussian input noise: corrupt each training image, keep its label."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from trainlab.augment._base import AugmentContext, Transform
from trainlab.errors import ConfigError
from trainlab.population import member_view

__all__ = ["Cutout", "InputNoise", "square_boxes", "box_mask"]


def square_boxes(cy: torch.Tensor, cx: torch.Tensor, side_h: torch.Tensor, side_w: torch.Tensor, H: int,
                 W: int) -> torch.Tensor:
    """Boxes ``(..., 4)`` = (top, left, bottom, right), bottom/right exclusive, clipped to the image.

    The box of side ``side`` is centred on ``(cy, cx)``: rows ``cy - side//2`` to
    ``cy - side//2 + side - 1``, cut where it leaves the image.
    """
    top = cy - torch.div(side_h, 2, rounding_mode="floor")
    left = cx - torch.div(side_w, 2, rounding_mode="floor")
    return torch.stack([top.clamp(0, H), left.clamp(0, W), (top + side_h).clamp(0, H), (left + side_w).clamp(0, W)],
                       dim=-1)


def box_mask(boxes: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """Boolean ``(..., 1, H, W)``: True inside each box (broadcasts over channels)."""
    rows = torch.arange(H, device=boxes.device).view(H, 1)
    cols = torch.arange(W, device=boxes.device).view(1, W)
    b = boxes[..., None, None, :]
    inside = (rows >= b[..., 0]) & (rows < b[..., 2]) & (cols >= b[..., 1]) & (cols < b[..., 3])
    return inside.unsqueeze(-3)


class Cutout(Transform):
    """Zero a ``size x size`` square of every training image (DeVries & Taylor 2017).

    Per member and example, the square's centre is drawn uniformly over the image;
    the part inside the image is set to 0 (the whole square when it fits, less at the
    borders -- as in the paper, so border regions are erased as often as the centre).
    The label is kept. ``size`` in pixels, may differ per member; 0 is off. ``p``
    (default 1, per member): the probability that an example is erased at all
    (AutoAugment-style; drawn from a separate ``gate`` stream).
    ``last_boxes`` holds the erased boxes ``(P, N, 4)``: (top, left, bottom, right),
    bottom and right exclusive.

    See: DeVries & Taylor, "Improved Regularization of Convolutional Neural Networks
    with Cutout", 2017, https://arxiv.org/abs/1708.04552
    """

    name = "cutout"
    needs_images = True

    def __init__(self, size: int | Sequence[int], p: float | Sequence[float] = 1.0) -> None:
        self._settings = dict(size=size) if p == 1.0 else dict(size=size, p=p)
        self.size, self.p = size, p
        self._setup_values(None)
        self.last_boxes: torch.Tensor | None = None

    def _setup_values(self, P: int | None) -> None:
        items = self.size if isinstance(self.size, Sequence) and not isinstance(self.size, str) else [self.size]
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in items):
            raise ConfigError(f"Cutout size must be an integer >= 0 (pixels) or one per member, got {self.size!r}")
        self._size = self._member_values(self.size, P, "size", low=0.0)
        self._p = self._member_values(self.p, P, "p", low=0.0, high=1.0)

    def apply(self, x: torch.Tensor, targets: torch.Tensor, augmenter: AugmentContext) -> tuple[torch.Tensor, torch.Tensor]:
        P = self.population_size
        _, N, C, H, W = x.shape
        u = self.draw((N, 2), device=x.device, dtype=torch.float64)
        cy = (u[..., 0] * H).floor().long().clamp_(max=H - 1)
        cx = (u[..., 1] * W).floor().long().clamp_(max=W - 1)
        side = self._values("size", self._size, x.device, torch.float64).long().view(P, 1).expand(P, N)
        (gate,) = self.gates([self._p], N, x.device)
        if gate is not None:
            side = torch.where(gate, side, torch.zeros_like(side))
        boxes = square_boxes(cy, cx, side, side, H, W)
        self.last_boxes = boxes
        return x.expand(P, N, C, H, W).masked_fill(box_mask(boxes, H, W), 0.0), targets


class InputNoise(Transform):
    """Add Gaussian noise to every training input: ``x' = x + std * eps``, ``eps ~ N(0, 1)``.

    Per member (``std`` may differ per member), example and pixel, fresh each step;
    labels kept. The same math as :class:`trainlab.nn.GaussianNoise` as a model's
    first layer ("noise robustness" in the course notes), drawn from the
    augmentation's own streams and composable with the other transforms (e.g. after
    a geometric transform). The result is not clipped to the data range. ``p``
    (default 1, per member): the probability that an example gets noise at all.

    See: Bishop, "Training with noise is equivalent to Tikhonov regularization", 1995.
    """

    name = "noise"

    def __init__(self, std: float | Sequence[float], p: float | Sequence[float] = 1.0) -> None:
        self._settings = dict(std=std) if p == 1.0 else dict(std=std, p=p)
        self.std, self.p = std, p
        self._setup_values(None)

    def _setup_values(self, P: int | None) -> None:
        self._std = self._member_values(self.std, P, "std", low=0.0)
        self._p = self._member_values(self.p, P, "p", low=0.0, high=1.0)

    def apply(self, x: torch.Tensor, targets: torch.Tensor, augmenter: AugmentContext) -> tuple[torch.Tensor, torch.Tensor]:
        eps = self.draw(tuple(x.shape[1:]), device=x.device, dtype=x.dtype, kind="normal")
        std = self._values("std", self._std, x.device, x.dtype)
        (gate,) = self.gates([self._p], x.shape[1], x.device)
        if gate is not None:  # scale 0: the example is left exactly as it was
            eps = eps * gate.to(eps.dtype).view(*gate.shape, *([1] * (eps.ndim - 2)))
        return torch.addcmul(x, member_view(std, eps.ndim), eps), targets
