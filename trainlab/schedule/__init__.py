"""Learning-rate schedules on the population axis (see ``docs/schedules.md``)."""

from trainlab.schedule._config import from_config
from trainlab.schedule._schedules import (
    SCHEDULES,
    Constant,
    CosineAnnealingLR,
    CosineAnnealingWarmRestarts,
    ExponentialLR,
    MultiStepLR,
    OneCycleLR,
    PerMember,
    ReduceLROnPlateau,
    Schedule,
    StepLR,
    momentum_name,
)

__all__ = ["Schedule", "Constant", "StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR",
           "CosineAnnealingWarmRestarts", "OneCycleLR", "ReduceLROnPlateau", "PerMember", "SCHEDULES",
           "from_config", "momentum_name"]
