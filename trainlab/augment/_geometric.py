"""Label-preserving geometric transforms: small rotations, shifts, zooms, and flips where allowed."""

from __future__ import annotations

from collections.abc import Sequence
import math
from typing import Protocol
import warnings

import torch
import torch.nn.functional as F

from trainlab.augment._base import AugmentContext, Transform
from trainlab.data import GEOMETRIC_TRANSFORMS, DatasetInfo
from trainlab.errors import ConfigError

__all__ = ["Geometric", "LABEL_PRESERVING_LIMITS", "check_label_preserving", "affine_resample"]

#: The sizes behind the words of :data:`trainlab.data.GEOMETRIC_TRANSFORMS`: the
#: largest rotation (degrees), shift (pixels) and relative zoom a data set that
#: declares the transform promises to survive with its labels intact.
LABEL_PRESERVING_LIMITS: dict[str, float] = {"rotate": 15.0, "shift": 3.0, "scale": 0.1}

_UNITS = {"rotate": " degrees", "shift": " pixels", "scale": ""}
_WHY = {
    "rotate": "a 6 rotated far enough reads as a 9",
    "hflip": "a mirrored digit can read as another digit, or as none",
    "rot90": "a 6 turned by 180 degrees reads as a 9, and a digit turned by 90 as none",
}


class Geometric(Transform):
    """Random affine transform of every training image: rotation, shift, zoom, mirror.

    Per member and example, drawn fresh at each step from the member's stream::

        angle ~ U(-rotate, rotate) degrees      shift_x, shift_y ~ U(-shift, shift) pixels
        zoom  ~ U(1 - scale, 1 + scale)         mirror left-right with probability 1/2 (hflip)

    ``rot90=True`` also turns each image by ``k * 90`` degrees counterclockwise, ``k``
    drawn uniformly from ``{0, 1, 2, 3}`` per member and example (from a separate
    ``rot90`` stream, so the other draws stay those of a run without it), after the
    affine part, exactly (``torch.rot90``: a permutation of the pixels, square images
    only). For data whose labels survive any quarter turn (texture, satellite and
    microscopy images, ...); no built-in data set declares it, so it is refused for
    digits and clothes unless forced.

    AutoAugment-style probabilities: ``rotate_p``, ``shift_p``, ``scale_p`` (default 1)
    apply each part to an example with that probability (else angle 0, no shift, zoom
    1), drawn per member and example from a separate ``gate`` stream, so the
    magnitudes' draws stay those of a run without probabilities.

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
                 scale: float | Sequence[float] = 0.0, hflip: bool = False,
                 rotate_p: float | Sequence[float] = 1.0, shift_p: float | Sequence[float] = 1.0,
                 scale_p: float | Sequence[float] = 1.0, rot90: bool = False) -> None:
        if not isinstance(hflip, bool):
            raise ConfigError(f"Geometric hflip must be true or false, got {hflip!r}")
        if not isinstance(rot90, bool):
            raise ConfigError(f"Geometric rot90 must be true or false, got {rot90!r}")
        self._settings = dict(rotate=rotate, shift=shift, scale=scale, hflip=hflip)
        if rot90:
            self._settings["rot90"] = True  # shown only when set
        self.rot90 = rot90
        for k, v in (("rotate_p", rotate_p), ("shift_p", shift_p), ("scale_p", scale_p)):
            if not (isinstance(v, (int, float)) and not isinstance(v, bool) and v == 1.0):
                self._settings[k] = v  # shown only when set
        self.rotate, self.shift, self.scale, self.hflip = rotate, shift, scale, hflip
        self.rotate_p, self.shift_p, self.scale_p = rotate_p, shift_p, scale_p
        self._setup_values(None)
        #: the last draw: angle (degrees), shift_x, shift_y (pixels), zoom, flip -- each (P, N)
        self.last_params: dict[str, torch.Tensor] | None = None

    def _setup_values(self, P: int | None) -> None:
        self._rotate = self._member_values(self.rotate, P, "rotate", low=0.0, high=180.0)
        self._shift = self._member_values(self.shift, P, "shift", low=0.0)
        self._scale = self._member_values(self.scale, P, "scale", low=0.0, high=1.0, high_inclusive=False)
        self._probs = [self._member_values(v, P, k, low=0.0, high=1.0) for k, v in
                       (("rotate_p", self.rotate_p), ("shift_p", self.shift_p), ("scale_p", self.scale_p))]

    def requested(self) -> dict[str, float]:
        """The transforms this instance applies, with their largest size over members."""
        out = {}
        for name, table in (("rotate", self._rotate), ("shift", self._shift), ("scale", self._scale)):
            top = float(table.max())
            if top > 0:
                out[name] = top
        if self.hflip:
            out["hflip"] = 1.0
        if self.rot90:
            out["rot90"] = 1.0
        return out

    def apply(self, x: torch.Tensor, targets: torch.Tensor, augmenter: AugmentContext) -> tuple[torch.Tensor, torch.Tensor]:
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
        g_rot, g_shift, g_scale = self.gates(self._probs, N, dev)
        if g_rot is not None:
            angle = torch.where(g_rot, angle, torch.zeros_like(angle))
        if g_shift is not None:
            tx = torch.where(g_shift, tx, torch.zeros_like(tx))
            ty = torch.where(g_shift, ty, torch.zeros_like(ty))
        if g_scale is not None:
            zoom = torch.where(g_scale, zoom, torch.ones_like(zoom))
        self.last_params = dict(angle=angle, shift_x=tx, shift_y=ty, zoom=zoom, flip=flip)
        xs = x.expand(P, N, C, H, W).reshape(P * N, C, H, W)
        out = affine_resample(xs, angle.reshape(-1), tx.reshape(-1), ty.reshape(-1), zoom.reshape(-1),
                              flip.reshape(-1)).view(P, N, C, H, W)
        if self.rot90:
            if H != W:
                raise ConfigError(f"augment: rot90 needs square images, got {H}x{W}")
            k = (self.draw((N,), device=dev, dtype=torch.float64, stream="rot90") * 4).floor().long().clamp_(max=3)
            self.last_params["rot90"] = k
            for q in (1, 2, 3):
                sel = k == q
                if bool(sel.any()):
                    out[sel] = torch.rot90(out[sel], q, dims=(-2, -1))
        return out, targets


def affine_resample(x: torch.Tensor, angle: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor, zoom: torch.Tensor,
                    flip: torch.Tensor) -> torch.Tensor:
    """Images ``x (M, C, H, W)`` under ``M = zoom * R(angle) * mirror`` and a shift ``(tx, ty)``, each ``(M,)``.

    Angles in degrees, shifts in pixels; bilinear, zeros from outside the image (see :class:`Geometric`).
    """
    _, C, H, W = x.shape
    dev, dt = x.device, x.dtype
    # Inverse map in pixel units (origin at the centre): p = mirror R(-angle) (q - t) / zoom ...
    a = angle * (math.pi / 180.0)
    cos, sin = torch.cos(a), torch.sin(a)
    m = torch.where(flip, -1.0, 1.0).to(dt)
    inv = torch.stack([torch.stack([m * cos, m * sin], -1), torch.stack([-sin, cos], -1)], -2)
    inv = inv / zoom[..., None, None]  # (M, 2, 2)
    # ... and in affine_grid's normalized units: x_n = x / (W/2), y_n = y / (H/2).
    half = torch.tensor([W / 2.0, H / 2.0], device=dev, dtype=dt)
    lin = inv * half[None, None, :] / half[None, :, None]
    t = torch.stack([tx, ty], -1).unsqueeze(-1)  # (M, 2, 1) pixels
    off = -(inv @ t).squeeze(-1) / half
    theta = torch.cat([lin, off.unsqueeze(-1)], -1)
    grid = F.affine_grid(theta, [x.shape[0], C, H, W], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class RequestsGeometry(Protocol):
    """A transform that says which geometric transforms it applies, and how large (Geometric,
    RandAugment, Elastic)."""

    def requested(self) -> dict[str, float]: ...


def check_label_preserving(transform: RequestsGeometry, info: DatasetInfo, *, force: bool = False) -> None:
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
