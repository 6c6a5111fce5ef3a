"""Label-preserving geometric transforms: small rotations, shifts, zooms, and flips where allowed."""

from __future__ import annotations

from collections.abc import Sequence
import math
from typing import Any
import warnings

import torch
import torch.nn.functional as F

from trainlab.augment._base import Transform
from trainlab.data import GEOMETRIC_TRANSFORMS, DatasetInfo
from trainlab.errors import ConfigError

__all__ = ["Geometric", "LABEL_PRESERVING_LIMITS", "check_label_preserving"]

#: The sizes behind the words of :data:`trainlab.data.GEOMETRIC_TRANSFORMS`: the
#: largest rotation (degrees), shift (pixels) and relative zoom a data set that
#: declares the transform promises to survive with its labels intact.
LABEL_PRESERVING_LIMITS: dict[str, float] = {"rotate": 15.0, "shift": 3.0, "scale": 0.1}

_UNITS = {"rotate": " degrees", "shift": " pixels", "scale": ""}
_WHY = {
    "rotate": "a 6 rotated far enough reads as a 9",
    "hflip": "a mirrored digit can read as another digit, or as none",
}


class Geometric(Transform):
    """Random affine transform of every training image: rotation, shift, zoom, mirror.

    Per member and example, drawn fresh at each step from the member's stream::

        angle ~ U(-rotate, rotate) degrees      shift_x, shift_y ~ U(-shift, shift) pixels
        zoom  ~ U(1 - scale, 1 + scale)         mirror left-right with probability 1/2 (hflip)

    The output pixel ``q`` (coordinates from the image centre) takes the input at
    ``p = M^-1 (q - t)``, ``M = zoom * R(angle) * mirror``, by bilinear interpolation
    (``torch.nn.functional.affine_grid`` + ``grid_sample``, ``align_corners=False``);
    what comes from outside the image is 0 (black after min-max scaling -- MNIST's
    background; after standardization 0 is the mean pixel instead). ``rotate``,
    ``shift`` and ``scale`` may differ per member (an augmentation-strength sweep).

    Whether a transform keeps the labels depends on the data set; each declares its
    label-preserving transforms (:attr:`trainlab.data.DatasetInfo.label_preserving`):
    digits allow rotate (<= 15 degrees), shift (<= 3 pixels) and scale (<= 0.1) but
    no hflip; Fashion-MNIST also allows hflip. :class:`Augmenter` refuses the others
    unless forced (:func:`check_label_preserving`).

    See: torchvision.transforms.RandomAffine (degrees, translate, scale) and
    RandomHorizontalFlip; Simard et al., "Best Practices for Convolutional Neural
    Networks Applied to Visual Document Analysis", ICDAR 2003.
    """

    name = "geometric"
    needs_images = True

    def __init__(self, *, rotate: float | Sequence[float] = 0.0, shift: float | Sequence[float] = 0.0,
                 scale: float | Sequence[float] = 0.0, hflip: bool = False) -> None:
        if not isinstance(hflip, bool):
            raise ConfigError(f"Geometric hflip must be true or false, got {hflip!r}")
        self._settings = dict(rotate=rotate, shift=shift, scale=scale, hflip=hflip)
        self.rotate, self.shift, self.scale, self.hflip = rotate, shift, scale, hflip
        self._setup_values(None)
        #: the last draw: angle (degrees), shift_x, shift_y (pixels), zoom, flip -- each (P, N)
        self.last_params: dict[str, torch.Tensor] | None = None

    def _setup_values(self, P: int | None) -> None:
        self._rotate = self._member_values(self.rotate, P, "rotate", low=0.0, high=180.0)
        self._shift = self._member_values(self.shift, P, "shift", low=0.0)
        self._scale = self._member_values(self.scale, P, "scale", low=0.0, high=1.0, high_inclusive=False)

    def requested(self) -> dict[str, float]:
        """The transforms this instance applies, with their largest size over members."""
        out = {}
        for name, table in (("rotate", self._rotate), ("shift", self._shift), ("scale", self._scale)):
            top = float(table.max())
            if top > 0:
                out[name] = top
        if self.hflip:
            out["hflip"] = 1.0
        return out

    def apply(self, x: torch.Tensor, targets: torch.Tensor, augmenter: Any) -> tuple[torch.Tensor, torch.Tensor]:
        P = self.population_size
        Q, N, C, H, W = x.shape
        dev, dt = x.device, x.dtype
        u = self.draw((N, 5), device=dev, dtype=dt)  # rotate, shift x, shift y, zoom, flip: same draws always
        rot = self._values("rotate", self._rotate, dev, dt).view(P, 1)
        sh = self._values("shift", self._shift, dev, dt).view(P, 1)
        sc = self._values("scale", self._scale, dev, dt).view(P, 1)
        angle = (2.0 * u[..., 0] - 1.0) * rot
        tx = (2.0 * u[..., 1] - 1.0) * sh
        ty = (2.0 * u[..., 2] - 1.0) * sh
        zoom = 1.0 + (2.0 * u[..., 3] - 1.0) * sc
        flip = (u[..., 4] < 0.5) if self.hflip else torch.zeros_like(u[..., 4], dtype=torch.bool)
        self.last_params = dict(angle=angle, shift_x=tx, shift_y=ty, zoom=zoom, flip=flip)
        # Inverse map in pixel units (origin at the centre): p = mirror R(-angle) (q - t) / zoom ...
        a = angle * (math.pi / 180.0)
        cos, sin = torch.cos(a), torch.sin(a)
        m = torch.where(flip, -1.0, 1.0).to(dt)
        inv = torch.stack([torch.stack([m * cos, m * sin], -1), torch.stack([-sin, cos], -1)], -2)
        inv = inv / zoom[..., None, None]  # (P, N, 2, 2)
        # ... and in affine_grid's normalized units: x_n = x / (W/2), y_n = y / (H/2).
        half = torch.tensor([W / 2.0, H / 2.0], device=dev, dtype=dt)
        lin = inv * half[None, None, None, :] / half[None, None, :, None]
        t = torch.stack([tx, ty], -1).unsqueeze(-1)  # (P, N, 2, 1) pixels
        off = -(inv @ t).squeeze(-1) / half
        theta = torch.cat([lin, off.unsqueeze(-1)], -1).reshape(P * N, 2, 3)
        grid = F.affine_grid(theta, [P * N, C, H, W], align_corners=False)
        xs = x.expand(P, N, C, H, W).reshape(P * N, C, H, W)
        out = F.grid_sample(xs, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return out.view(P, N, C, H, W), targets


def check_label_preserving(transform: Geometric, info: DatasetInfo, *, force: bool = False) -> None:
    """Refuse (``ConfigError``) a geometric transform ``info`` does not declare label-preserving.

    A transform is allowed when its name is in ``info.label_preserving`` and its size
    is within :data:`LABEL_PRESERVING_LIMITS`. ``force=True`` turns the error into a
    warning (you know your labels better than the registry).
    """
    declared = ", ".join(sorted(info.label_preserving)) or "none"
    digits = info.classes == tuple(str(d) for d in range(10))
    for name, size in transform.requested().items():
        reason = f" ({_WHY[name]})" if digits and name in _WHY else ""
        if name not in info.label_preserving:
            problem = (f"augment: {name} is not label-preserving for {info.name}{reason}; its label-preserving "
                       f"transforms are: {declared}. Leave {name} out")
        elif name in LABEL_PRESERVING_LIMITS and size > LABEL_PRESERVING_LIMITS[name]:
            problem = (f"augment: {name}={size:g}{_UNITS[name]} is beyond what {info.name} declares label-preserving: "
                       f"{GEOMETRIC_TRANSFORMS[name]}{reason}; use {name} <= {LABEL_PRESERVING_LIMITS[name]:g}")
        else:
            continue
        if not force:
            raise ConfigError(problem + ", or set force=True (config: augment.force = true) to use it anyway")
        warnings.warn(problem + " -- used anyway because force=True", UserWarning, stacklevel=3)
