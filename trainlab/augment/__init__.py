"""Data augmentation on the fly: per batch, training only, per member, seeded, on the data's device.

Quick start::

    from trainlab.augment import Augmenter, Geometric, Cutout, Mixup
    aug = Augmenter([Geometric(rotate=10, shift=2, scale=0.1), Mixup(0.2)],
                    population=model.population, dataset="mnist-5k")
    Trainer(model, loss, optimizer, augment=aug).fit(splits.train, splits.val)

Augmentation policy search: :class:`RandAugment` (two numbers, N ops per image at
magnitude M) and per-op probabilities (``Geometric(rotate_p=...)``, ``Cutout(p=)``,
``InputNoise(p=)``), all per member, so ``trainlab tune`` searches them as populations.

Config: the ``[augment]`` table (see :func:`from_config`). Each technique's page:
``docs/augmentation.md``.
"""

from trainlab.augment._augmenter import Augmenter, from_config
from trainlab.augment._base import Transform, sample_beta, soft_targets, stream_seed
from trainlab.augment._elastic import Elastic
from trainlab.augment._erase import Cutout, InputNoise
from trainlab.augment._geometric import LABEL_PRESERVING_LIMITS, Geometric, check_label_preserving
from trainlab.augment._mix import CutMix, Mixup
from trainlab.augment._policy import MAX_MAGNITUDE, POLICY_OPS, POLICY_RANGES, RandAugment, policy_ops_for

__all__ = [
    "Augmenter",
    "from_config",
    "Transform",
    "Geometric",
    "Elastic",
    "Cutout",
    "InputNoise",
    "Mixup",
    "CutMix",
    "RandAugment",
    "POLICY_OPS",
    "POLICY_RANGES",
    "MAX_MAGNITUDE",
    "policy_ops_for",
    "LABEL_PRESERVING_LIMITS",
    "check_label_preserving",
    "sample_beta",
    "soft_targets",
    "stream_seed",
]
