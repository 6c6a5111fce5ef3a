"""The augmenter: a pipeline of transforms the Trainer applies to every training batch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import math
from typing import Any

import torch

from trainlab.augment._base import Transform
from trainlab.augment._elastic import Elastic
from trainlab.augment._erase import Cutout, InputNoise
from trainlab.augment._geometric import Geometric, check_label_preserving
from trainlab.augment._mix import CutMix, Mixup
from trainlab.augment._policy import RandAugment, policy_ops_for
from trainlab.errors import CheckpointError, ConfigError
from trainlab.population import Population

__all__ = ["Augmenter", "from_config"]


class Augmenter:
    """On-the-fly augmentation of training batches, per member and per step, seeded.

    ``Trainer(..., augment=Augmenter([...], population=model.population, dataset="mnist-5k"))``.
    The trainer calls ``augmenter(x, y, trainer)`` on each training batch only (never
    on validation/test data): ``x`` is the batch ``(1, N, ...)`` shared by all members,
    ``y`` its labels ``(N,)``. The transforms run in the order given, each member with
    its own random draws, so the result is ``(P, N, ...)``; the targets stay class
    indices, or become soft ``(P, N, C)`` when a transform mixes labels (Mixup,
    CutMix) -- the loss accepts both, and smooths labels itself, once
    (``SoftmaxCrossEntropy(label_smoothing=...)``): transforms never smooth.

    Images: transforms that need them (:class:`Geometric`, :class:`Cutout`,
    :class:`CutMix`) take ``(C, H, W)`` inputs; flat inputs ``(C*H*W,)`` (an MLP on
    ``flatten=True`` data) are viewed as images of ``image_shape`` (default: the data
    set's) and flattened back.

    Parameters
    ----------
    transforms:
        :class:`RandAugment`, :class:`Geometric`, :class:`Cutout`, :class:`InputNoise`,
        :class:`Mixup`, :class:`CutMix` objects; each type at most once. Suggested order
        (the one :func:`from_config` uses): RandAugment, Geometric, CutMix, Mixup,
        Cutout, InputNoise.
    population:
        The model's population: its member seeds seed the transforms' streams.
    num_classes:
        Classes, for soft targets (default: the model's output width, from the trainer).
    dataset:
        A registered data set name: geometric transforms it does not declare
        label-preserving are refused (:func:`check_label_preserving`); also gives
        the default ``image_shape``. ``None`` skips the check (your own data).
    force:
        Allow such transforms anyway (with a warning).
    """

    def __init__(self, transforms: Sequence[Transform], *, population: Population, num_classes: int | None = None,
                 dataset: str | None = None, force: bool = False,
                 image_shape: Sequence[int] | None = None) -> None:
        transforms = list(transforms)
        if not isinstance(population, Population):
            raise ConfigError(f"Augmenter population must be a trainlab Population, got {type(population).__name__}")
        names = [t.name for t in transforms]
        for t in transforms:
            if not isinstance(t, Transform):
                raise ConfigError(f"Augmenter transforms must be trainlab.augment transforms, got {t!r}")
            if names.count(t.name) > 1:
                raise ConfigError(f"Augmenter: {type(t).__name__} is listed twice; give each transform once "
                                  f"(per-member values go in one transform)")
        if num_classes is not None and (not isinstance(num_classes, int) or isinstance(num_classes, bool)
                                        or num_classes < 2):
            raise ConfigError(f"Augmenter num_classes must be an integer >= 2, got {num_classes!r}")
        if not isinstance(force, bool):
            raise ConfigError(f"Augmenter force must be true or false, got {force!r}")
        info = None
        if dataset is not None:
            from trainlab.data import get_dataset_info

            info = get_dataset_info(dataset)
            for t in transforms:
                if isinstance(t, (Geometric, RandAugment, Elastic)):
                    check_label_preserving(t, info, force=force)
        if image_shape is None and info is not None:
            image_shape = info.image_shape
        self.transforms = transforms
        self.population = population
        self.num_classes = num_classes
        self.dataset = dataset
        self.force = force
        self.image_shape = tuple(image_shape) if image_shape is not None else None
        for t in transforms:
            t.setup(population)

    def __repr__(self) -> str:
        inner = ", ".join(repr(t) for t in self.transforms)
        return f"Augmenter([{inner}], dataset={self.dataset!r})"

    # ---- the batch --------------------------------------------------------------------------
    def __call__(self, x: torch.Tensor, y: torch.Tensor, trainer: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x', targets)`` for one training batch: ``x (1 or P, N, ...)``, ``y (N,)``."""
        P = self.population.size
        if x.ndim < 3 or x.shape[0] not in (1, P):
            raise ConfigError(f"augmentation expects a batch (1, N, ...) or (P, N, ...) with P = {P}, got "
                              f"{tuple(x.shape)}")
        if self.num_classes is None:
            out_shape = getattr(getattr(trainer, "model", None), "output_shape", None)
            if out_shape:
                self.num_classes = int(out_shape[-1])
        if self.num_classes is None and any(isinstance(t, (Mixup, CutMix)) for t in self.transforms):
            raise ConfigError("Mixup/CutMix need the number of classes: pass num_classes to Augmenter")
        flat_shape = None
        if any(t.needs_images for t in self.transforms) and x.ndim != 5:
            shape = self.image_shape
            if x.ndim != 3 or shape is None or len(shape) != 3 or math.prod(shape) != x.shape[-1]:
                need = ", ".join(type(t).__name__ for t in self.transforms if t.needs_images)
                raise ConfigError(f"{need} need image inputs (C, H, W); got examples of shape {tuple(x.shape[2:])}"
                                  + (f" that are not images of {shape}" if shape else "")
                                  + " (PCA/whitened features cannot be shifted or cut)")
            flat_shape = x.shape
            x = x.reshape(x.shape[0], x.shape[1], *shape)
        targets = y
        for t in self.transforms:
            x, targets = t.apply(x, targets, self)
        if x.shape[0] != P:  # no transform (empty pipeline): still one batch per member
            x = x.expand(P, *x.shape[1:])
        if flat_shape is not None:
            x = x.reshape(P, x.shape[1], flat_shape[-1])
        return x, targets

    # ---- state (checkpoints) --------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Every transform's generator states: ``{"<transform>.<device>.<member>": uint8 tensor}``."""
        return {f"{t.name}.{k}": v for t in self.transforms for k, v in t.state_dict().items()}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Restore :meth:`state_dict` (the next draws are the ones an uninterrupted run makes)."""
        by_name = {t.name: t for t in self.transforms}
        parts: dict[str, dict[str, torch.Tensor]] = {name: {} for name in by_name}
        unknown = []
        for key, value in state.items():
            name, _, rest = key.partition(".")
            if name in parts:
                parts[name][rest] = value
            else:
                unknown.append(key)
        if unknown:
            raise CheckpointError(f"the checkpoint's augmentation state has entries for transforms this run does "
                                  f"not use: {', '.join(sorted(unknown))}")
        for name, t in by_name.items():
            t.load_state_dict(parts[name])


def from_config(cfg: Mapping[str, Any], population: Population, *, dataset: str | None = None,
                num_classes: int | None = None, image_shape: Sequence[int] | None = None) -> Augmenter | None:
    """An :class:`Augmenter` from the ``[augment]`` config table, or ``None`` when nothing is on.

    Keys (each number may be a list with one value per member): ``policy_ops`` (RandAugment's
    N), ``policy_magnitude`` (its M), ``rotate`` (degrees), ``shift`` (pixels), ``scale``
    (relative zoom), ``hflip``, ``rot90``, ``elastic`` (alpha), ``elastic_sigma``, ``force``, ``cutout`` (pixels),
    ``mixup`` (alpha),
    ``cutmix`` (alpha), ``noise`` (std), and the probabilities ``rotate_p``, ``shift_p``,
    ``scale_p``, ``elastic_p``, ``cutout_p``, ``noise_p``. Order: RandAugment, Geometric, Elastic, CutMix, Mixup,
    Cutout, InputNoise. The policy draws from the label-preserving ops of ``dataset``
    (:func:`~trainlab.augment.policy_ops_for`).
    """
    def on(v: Any) -> bool:
        return v is not None and (any(x > 0 for x in v) if isinstance(v, list) else v > 0)

    transforms: list[Transform] = []
    try:
        if on(cfg.get("policy_ops")):
            info = None
            if dataset is not None:
                from trainlab.data import get_dataset_info

                info = get_dataset_info(dataset)
            transforms.append(RandAugment(cfg["policy_ops"], cfg.get("policy_magnitude", 5.0),
                                          ops=policy_ops_for(info)))
        if (on(cfg.get("rotate")) or on(cfg.get("shift")) or on(cfg.get("scale")) or cfg.get("hflip", False)
                or cfg.get("rot90", False)):
            transforms.append(Geometric(rotate=cfg.get("rotate", 0.0), shift=cfg.get("shift", 0.0),
                                        scale=cfg.get("scale", 0.0), hflip=cfg.get("hflip", False),
                                        rotate_p=cfg.get("rotate_p", 1.0), shift_p=cfg.get("shift_p", 1.0),
                                        scale_p=cfg.get("scale_p", 1.0), rot90=cfg.get("rot90", False)))
        if on(cfg.get("elastic")):
            transforms.append(Elastic(cfg["elastic"], cfg.get("elastic_sigma", 4.0), p=cfg.get("elastic_p", 1.0)))
    except ConfigError as e:
        raise ConfigError(f"config: augment: {e}") from None
    if on(cfg.get("cutmix")):
        transforms.append(CutMix(cfg["cutmix"]))
    if on(cfg.get("mixup")):
        transforms.append(Mixup(cfg["mixup"]))
    if on(cfg.get("cutout")):
        transforms.append(Cutout(cfg["cutout"], p=cfg.get("cutout_p", 1.0)))
    if on(cfg.get("noise")):
        transforms.append(InputNoise(cfg["noise"], p=cfg.get("noise_p", 1.0)))
    if not transforms:
        return None
    try:
        return Augmenter(transforms, population=population, num_classes=num_classes, dataset=dataset,
                         force=cfg.get("force", False), image_shape=image_shape)
    except ConfigError as e:
        msg = str(e)
        raise ConfigError(msg if msg.startswith("augment") else f"config: augment: {msg}") from None
