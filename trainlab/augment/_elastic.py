"""Elastic distortion (Simard, Steinkraus & Platt 2003): the classic label-preserving transform for digits."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from trainlab.augment._base import AugmentContext, Transform

__all__ = ["Elastic", "gaussian_smooth", "displace"]

#: the Gaussian kernel reaches this many standard deviations each way (as scipy.ndimage's default truncate)
TRUNCATE = 4.0


def gaussian_smooth(field: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Smooth ``field (P, M, H, W)`` with a Gaussian of std ``sigma[p]`` pixels for member ``p``.

    Separable, normalized (the weights sum to 1), radius ``int(4 sigma + 0.5)`` (the largest
    member's), zeros beyond the image -- ``scipy.ndimage.gaussian_filter(mode="constant")``.
    """
    P, M, H, W = field.shape
    r = int(TRUNCATE * float(sigma.max()) + 0.5)
    t = torch.arange(-r, r + 1, device=field.device, dtype=field.dtype)
    s = sigma.to(device=field.device, dtype=field.dtype).view(P, 1)
    k = torch.exp(-0.5 * (t / s) ** 2)
    # a member with a smaller sigma than the largest gets its own radius: weights beyond it are 0
    k = torch.where(t.abs() <= (TRUNCATE * s + 0.5).floor(), k, torch.zeros_like(k))
    k = k / k.sum(dim=1, keepdim=True)  # (P, 2r+1)
    weight = k.repeat_interleave(M, dim=0)  # one kernel per (member, map): a depthwise conv
    f = field.reshape(1, P * M, H, W)
    f = F.conv2d(f, weight.view(P * M, 1, 1, 2 * r + 1), padding=(0, r), groups=P * M)
    f = F.conv2d(f, weight.view(P * M, 1, 2 * r + 1, 1), padding=(r, 0), groups=P * M)
    return f.view(P, M, H, W)


def displace(x: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """``x (M, C, H, W)`` resampled at ``(row + dy, col + dx)`` per output pixel, bilinear, zeros outside.

    ``dx, dy (M, H, W)`` in pixels: the output at ``(i, j)`` is the input at ``(i + dy[i, j], j + dx[i, j])``
    (``grid_sample`` with ``align_corners=False``: pixel ``j``'s centre is ``(2j + 1)/W - 1``).
    """
    M, C, H, W = x.shape
    cols = (2.0 * torch.arange(W, device=x.device, dtype=x.dtype) + 1.0) / W - 1.0
    rows = (2.0 * torch.arange(H, device=x.device, dtype=x.dtype) + 1.0) / H - 1.0
    gx = cols.view(1, 1, W) + dx * (2.0 / W)
    gy = rows.view(1, H, 1) + dy * (2.0 / H)
    grid = torch.stack([gx, gy], dim=-1)  # (M, H, W, 2): x (width) first
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class Elastic(Transform):
    """Elastic distortion of every training image (Simard et al. 2003, section 2).

    Per member and example, fresh at each step: two random fields
    ``u_x, u_y ~ U(-1, 1)`` per pixel, each smoothed by a Gaussian of std ``sigma``
    pixels (:func:`gaussian_smooth`) and scaled by ``alpha``; the image is resampled at
    the displaced positions by bilinear interpolation (:func:`displace`; zeros from
    outside the image)::

        dx = alpha * (G_sigma * u_x),   dy = alpha * (G_sigma * u_y)
        x'(i, j) = x(i + dy(i, j), j + dx(i, j))

    A small ``sigma`` gives a nearly random field (the paper: "the result is
    completely random"), a large one a nearly affine shift; Simard et al. used
    ``sigma = 4``, ``alpha = 34`` on MNIST (with a normalized kernel, as here). The
    displacement magnitude scales with ``alpha`` and shrinks as ``sigma`` grows
    (measured on 28 x 28, 400 fields: at ``sigma`` 4, ``alpha`` 34 the mean |displacement|
    is 1.0 pixel, the largest 5.5; at ``sigma`` 8 the mean falls to 0.45).

    ``alpha`` (0 = off), ``sigma`` and ``p`` (the probability that an example is
    distorted at all, drawn from the ``gate`` stream) may differ per member.
    ``last_displacement`` is the last ``(P, N, 2, H, W)`` field (dx, dy) in pixels.

    Label-preserving for handwriting (it models the hand's wobble): mnist-5k, mnist
    and kmnist declare it; for other data sets it is refused unless forced.

    See: Simard, Steinkraus & Platt, "Best Practices for Convolutional Neural Networks
    Applied to Visual Document Analysis", ICDAR 2003.
    """

    name = "elastic"
    needs_images = True

    def __init__(self, alpha: float | Sequence[float], sigma: float | Sequence[float] = 4.0,
                 p: float | Sequence[float] = 1.0) -> None:
        self._settings = dict(alpha=alpha, sigma=sigma) if p == 1.0 else dict(alpha=alpha, sigma=sigma, p=p)
        self.alpha, self.sigma, self.p = alpha, sigma, p
        self._setup_values(None)
        self.last_displacement: torch.Tensor | None = None

    def _setup_values(self, P: int | None) -> None:
        self._alpha = self._member_values(self.alpha, P, "alpha", low=0.0, high=1000.0)
        self._sigma = self._member_values(self.sigma, P, "sigma", low=0.0, low_inclusive=False, high=100.0)
        self._p = self._member_values(self.p, P, "p", low=0.0, high=1.0)

    def requested(self) -> dict[str, float]:
        """``{"elastic": largest alpha}`` when on (for :func:`~trainlab.augment.check_label_preserving`)."""
        top = float(self._alpha.max())
        return {"elastic": top} if top > 0 else {}

    def apply(self, x: torch.Tensor, targets: torch.Tensor, augmenter: AugmentContext) -> tuple[torch.Tensor, torch.Tensor]:
        P = self.population_size
        _, N, C, H, W = x.shape
        u = 2.0 * self.draw((N, 2, H, W), device=x.device, dtype=x.dtype) - 1.0  # U(-1, 1)
        field = gaussian_smooth(u.view(P, N * 2, H, W), self._sigma).view(P, N, 2, H, W)
        scale = self._values("alpha", self._alpha, x.device, x.dtype).view(P, 1)
        (gate,) = self.gates([self._p], N, x.device)
        if gate is not None:
            scale = scale * gate.to(x.dtype)
        d = field * scale[..., None, None, None]  # (P, 1 or N) -> over (2, H, W)
        self.last_displacement = d
        xs = x.expand(P, N, C, H, W).reshape(P * N, C, H, W)
        out = displace(xs, d[:, :, 0].reshape(P * N, H, W), d[:, :, 1].reshape(P * N, H, W))
        return out.view(P, N, C, H, W), targets
