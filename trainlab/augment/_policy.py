"""RandAugment: N ops per image, drawn uniformly from the label-preserving ops, all at one magnitude M."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from trainlab.augment._base import AugmentContext, Transform
from trainlab.augment._erase import box_mask, square_boxes
from trainlab.augment._geometric import LABEL_PRESERVING_LIMITS, affine_resample
from trainlab.data import DatasetInfo
from trainlab.errors import ConfigError

__all__ = ["RandAugment", "POLICY_OPS", "POLICY_RANGES", "MAX_MAGNITUDE", "MAX_POLICY_OPS", "policy_ops_for"]

#: Every op a policy may draw. ``hflip`` has no magnitude (a mirror is a mirror).
POLICY_OPS: tuple[str, ...] = ("identity", "rotate", "shift_x", "shift_y", "scale", "hflip", "cutout", "noise")

#: The size of each op at magnitude ``MAX_MAGNITUDE``; at ``M`` it is ``M / MAX_MAGNITUDE`` of it.
#: The geometric ones are the label-preserving limits (:data:`LABEL_PRESERVING_LIMITS`);
#: cutout is a fraction of the smaller image side, noise a standard deviation.
POLICY_RANGES: dict[str, float] = {
    "rotate": LABEL_PRESERVING_LIMITS["rotate"],  # degrees
    "shift_x": LABEL_PRESERVING_LIMITS["shift"],  # pixels
    "shift_y": LABEL_PRESERVING_LIMITS["shift"],  # pixels
    "scale": LABEL_PRESERVING_LIMITS["scale"],  # zoom 1 +- 0.1
    "cutout": 0.5,  # side: half the smaller image side (14 pixels on MNIST)
    "noise": 0.3,  # std (pixels in [0, 1] after min-max)
}

MAX_MAGNITUDE = 10.0
MAX_POLICY_OPS = 10

_NEEDS = {"rotate": "rotate", "shift_x": "shift", "shift_y": "shift", "scale": "scale", "hflip": "hflip"}


def policy_ops_for(info: DatasetInfo | None) -> tuple[str, ...]:
    """The ops a policy draws from on data set ``info``: identity, its label-preserving geometric
    transforms, cutout and noise (``None``: every op but hflip)."""
    out = []
    for op in POLICY_OPS:
        need = _NEEDS.get(op)
        if need is None or (op != "hflip" if info is None else need in info.label_preserving):
            out.append(op)
    return tuple(out)


class RandAugment(Transform):
    """RandAugment (Cubuk et al. 2020): each training image gets ``n`` ops in a row, all at magnitude ``m``.

    Per member and image, at every step, ``n`` ops are drawn uniformly, with
    replacement, from ``ops`` (default :func:`policy_ops_for` the data set: identity,
    rotate, shift_x, shift_y, scale, hflip where the data set allows it, cutout,
    noise) and applied in the order drawn. The whole policy is two numbers, so it
    is searched like a learning rate: ``n`` (0 = off) and ``m`` in ``[0, 10]``, each
    per member. At magnitude ``m`` an op has ``m / 10`` of its range
    (:data:`POLICY_RANGES`), with a random sign as in RandAugment:

    ============  ==================================================
    rotate        by exactly +-(m/10) 15 degrees
    shift_x/_y    by exactly +-(m/10) 3 pixels along one axis
    scale         zoom by exactly 1 +- (m/10) 0.1
    cutout        zero a square of side round((m/10) min(H, W) / 2), uniform centre
    noise         add Gaussian noise of std (m/10) 0.3
    hflip         mirror (no magnitude)
    identity      nothing
    ============  ==================================================

    ``m = 10`` is the data set's label-preserving limit for the geometric ops, so the
    search never leaves the label-preserving region. ``m = 0`` is the identity (bit for
    bit), except for hflip, which has no magnitude. ``last_ops`` ``(P, N, S)`` holds the
    drawn op indices into ``ops`` (``-1``: no op in that slot; member ``p`` fills its
    first ``n_p`` slots), ``last_signs`` the signs.

    Differences from the paper's code: the ops are the ones that keep digit labels
    (no colour ops: grey-level digits); trainlab's zoom stands in for shear; the
    magnitude is a float (the paper's is an integer; search it with ``step = 1`` for
    that).

    Streams: member ``p`` draws ``N x n_p`` op/sign/centre uniforms and one normal
    image per drawn noise op from its own generator, so its draws depend on its own
    ``n`` only -- the population invariant holds with any mix of ``n`` values.

    See: Cubuk, Zoph, Shlens & Le, "RandAugment: Practical automated data augmentation
    with a reduced search space", NeurIPS 2020, https://arxiv.org/abs/1909.13719;
    torchvision.transforms.RandAugment(num_ops, magnitude).
    """

    name = "randaugment"
    needs_images = True

    def __init__(self, n: int | Sequence[int], m: float | Sequence[float] = 5.0, *,
                 ops: Sequence[str] | None = None) -> None:
        ops = tuple(policy_ops_for(None) if ops is None else ops)
        if isinstance(ops, str) or not ops or any(op not in POLICY_OPS for op in ops) or len(set(ops)) != len(ops):
            raise ConfigError(f"RandAugment ops must be a non-empty list of distinct names from "
                              f"{', '.join(POLICY_OPS)}; got {list(ops)!r}")
        self._settings = dict(n=n, m=m, ops=list(ops))
        self.n, self.m, self.ops = n, m, ops
        self._setup_values(None)
        self.last_ops: torch.Tensor | None = None
        self.last_signs: torch.Tensor | None = None

    def _setup_values(self, P: int | None) -> None:
        items = self.n if isinstance(self.n, Sequence) and not isinstance(self.n, str) else [self.n]
        if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_POLICY_OPS for v in items):
            raise ConfigError(f"RandAugment n (ops per image) must be an integer in [0, {MAX_POLICY_OPS}] or one per "
                              f"member, got {self.n!r}")
        self._n = self._member_values(self.n, P, "n", low=0.0)
        self._m = self._member_values(self.m, P, "m (magnitude)", low=0.0, high=MAX_MAGNITUDE)
        self._n_list = [int(v) for v in self._n.tolist()]

    def requested(self) -> dict[str, float]:
        """The geometric transforms the policy may apply, with their largest size over members
        (for :func:`~trainlab.augment.check_label_preserving`)."""
        top = float(self._m.max()) / MAX_MAGNITUDE if max(self._n_list) > 0 else 0.0
        out: dict[str, float] = {}
        for op in self.ops:
            if op == "hflip":
                out["hflip"] = 1.0
            elif op in _NEEDS and top > 0:
                out[_NEEDS[op]] = top * POLICY_RANGES[op]
        return out

    def apply(self, x: torch.Tensor, targets: torch.Tensor, augmenter: AugmentContext) -> tuple[torch.Tensor, torch.Tensor]:
        P = self.population_size
        _, N, C, H, W = x.shape
        dev, dt = x.device, x.dtype
        S, K = max(self._n_list), len(self.ops)
        ops = torch.full((P, N, S), -1, dtype=torch.long, device=dev)
        sign = torch.ones((P, N, S), dtype=dt, device=dev)
        centre = torch.zeros((P, N, S, 2), dtype=torch.float64, device=dev)
        k_noise = self.ops.index("noise") if "noise" in self.ops else -1
        eps = torch.zeros((P, N, S, C, H, W), dtype=dt, device=dev) if k_noise >= 0 and S > 0 else None
        for p, g in enumerate(self.generators(dev)):
            n = self._n_list[p]
            if n == 0:
                continue
            u = torch.rand((N, n, 4), generator=g, device=dev, dtype=torch.float64)  # op, sign, centre y, x
            op = (u[..., 0] * K).floor().long().clamp_(max=K - 1)
            ops[p, :, :n] = op
            sign[p, :, :n] = torch.where(u[..., 1] < 0.5, -1.0, 1.0).to(dt)
            centre[p, :, :n] = u[..., 2:]
            if eps is not None:
                hit = op == k_noise
                count = int(hit.sum())
                if count:
                    eps[p, :, :n][hit] = torch.randn((count, C, H, W), generator=g, device=dev, dtype=dt)
        self.last_ops, self.last_signs = ops, sign
        if S == 0:
            return x.expand(P, N, C, H, W), targets
        frac = (self._values("m", self._m, dev, torch.float64) / MAX_MAGNITUDE).view(P, 1)

        def size(op: str) -> torch.Tensor:
            return (frac * POLICY_RANGES[op]).to(dt)

        def code(op: str) -> int:
            return self.ops.index(op) if op in self.ops else -2  # -2 matches no slot

        side = (frac * POLICY_RANGES["cutout"] * min(H, W)).round().long().expand(P, N)
        std = size("noise").view(P, 1, 1, 1, 1)
        x = x.expand(P, N, C, H, W)
        zero = torch.zeros((), dtype=dt, device=dev)
        for s in range(S):
            op, sg = ops[..., s], sign[..., s]
            angle = torch.where(op == code("rotate"), sg * size("rotate"), zero)
            tx = torch.where(op == code("shift_x"), sg * size("shift_x"), zero)
            ty = torch.where(op == code("shift_y"), sg * size("shift_y"), zero)
            zoom = 1.0 + torch.where(op == code("scale"), sg * size("scale"), zero)
            moved = ((angle != 0) | (tx != 0) | (ty != 0) | (zoom != 1)).reshape(-1)
            if bool(moved.any()):  # resample only the moved images: the others stay bit for bit
                idx = moved.nonzero().squeeze(1)
                flat = x.reshape(P * N, C, H, W)
                sub = affine_resample(flat[idx], angle.reshape(-1)[idx], tx.reshape(-1)[idx], ty.reshape(-1)[idx],
                                      zoom.reshape(-1)[idx], torch.zeros(idx.numel(), dtype=torch.bool, device=dev))
                x = flat.index_copy(0, idx, sub).view(P, N, C, H, W)
            flip = op == code("hflip")
            if bool(flip.any()):
                x = torch.where(flip.view(P, N, 1, 1, 1), x.flip(-1), x)
            cut = (op == code("cutout")) & (side > 0)
            if bool(cut.any()):
                cy = (centre[:, :, s, 0] * H).floor().long().clamp_(max=H - 1)
                cx = (centre[:, :, s, 1] * W).floor().long().clamp_(max=W - 1)
                mask = box_mask(square_boxes(cy, cx, side, side, H, W), H, W) & cut.view(P, N, 1, 1, 1)
                x = x.masked_fill(mask, 0.0)
            noisy = (op == k_noise) & (std.view(P, 1) > 0)
            if eps is not None and bool(noisy.any()):
                x = torch.where(noisy.view(P, N, 1, 1, 1), torch.addcmul(x, std, eps[:, :, s]), x)
        return x, targets
