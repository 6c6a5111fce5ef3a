"""Draw docs/figures/schedules.png: every schedule's rate over a run (no training, a second).

    python scripts/schedule_figures.py
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from trainlab import nn  # noqa: E402
from trainlab.optim import Momentum  # noqa: E402
from trainlab.schedule import (  # noqa: E402
    Constant,
    CosineAnnealingLR,
    CosineAnnealingWarmRestarts,
    ExponentialLR,
    MultiStepLR,
    OneCycleLR,
    StepLR,
)

OUT = Path(__file__).resolve().parents[1] / "docs" / "figures"
EPOCHS, SPE = 30, 20  # 30 epochs of 20 iterations


def curve(schedule) -> tuple[torch.Tensor, torch.Tensor | None]:
    opt = Momentum([nn.Parameter(torch.zeros(1, 1, dtype=torch.float64))], lr=1.0, momentum=0.9)
    schedule.attach(opt)
    schedule.begin(EPOCHS * SPE, SPE)
    rates = [schedule.rates(s) for s in range(EPOCHS * SPE)]
    lr = torch.stack([r[0] for r in rates])[:, 0]
    mom = torch.stack([r[1] for r in rates])[:, 0] if rates[0][1] is not None else None
    return lr, mom


def main() -> None:
    panels = [
        ("step (step_size 10, gamma 0.1)", StepLR(10, 0.1)),
        ("multistep ([15, 25], gamma 0.1)", MultiStepLR([15, 25], 0.1)),
        ("exponential (gamma 0.9)", ExponentialLR(0.9)),
        ("cosine (t_max = the run)", CosineAnnealingLR()),
        ("cosine_restarts (t_0 5, t_mult 2)", CosineAnnealingWarmRestarts(5, 2)),
        ("cosine + warmup 5 (start 0.1)", CosineAnnealingLR(warmup=5, warmup_start=0.1)),
        ("onecycle (per step) + momentum", OneCycleLR()),
        ("constant + warmup 3", Constant(warmup=3)),
    ]
    fig, axes = plt.subplots(2, 4, figsize=(12, 5), sharex=True)
    x = torch.arange(EPOCHS * SPE) / SPE
    for ax, (title, s) in zip(axes.flat, panels):
        lr, mom = curve(s)
        ax.plot(x, lr, color="C0")
        ax.set_title(title, fontsize=9)
        ax.set_ylim(0, 1.05)
        if mom is not None:
            ax2 = ax.twinx()
            ax2.plot(x, mom, color="C3", lw=0.8)
            ax2.set_ylabel("momentum", color="C3", fontsize=8)
            ax2.tick_params(labelsize=7)
    for ax in axes[1]:
        ax.set_xlabel("epoch")
    for ax in axes[:, 0]:
        ax.set_ylabel("rate / base rate")
    fig.tight_layout()
    fig.savefig(OUT / "schedules.png", dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    main()
