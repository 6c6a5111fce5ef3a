"""Train the planted curve faults (examples/faults/curves/) and examples/healthy.toml, read each run
with the doctor's curve reading, and draw docs/figures/doctor_planted_curves.png (~1 min on 2 cores).

    python scripts/curve_figures.py [WORKDIR]
"""

from __future__ import annotations

from pathlib import Path
import sys
import tempfile

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from trainlab.config import load_config  # noqa: E402
from trainlab.diagnose._curves import judge_run  # noqa: E402
from trainlab.run import train_run  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
NAMES = ["rising", "noisy", "plateau", "early_decay", "overfitting", "underfitting", "healthy"]


def main(work: Path) -> None:
    fig, axes = plt.subplots(2, 4, figsize=(12, 5.5))
    for ax, name in zip(axes.flat, NAMES):
        path = REPO / "examples" / ("healthy.toml" if name == "healthy" else f"faults/curves/{name}.toml")
        out = work / name
        if not (out / "history.json").exists():
            train_run(load_config(path, ["data.test=0"]), out)
        c, findings = judge_run(out)
        ax.semilogy(c.epoch, c.train_loss, label="train loss")
        if c.val_loss:
            ax.semilogy(c.epoch, c.val_loss, "--", label="val loss")
        if c.lr:
            ax2 = ax.twinx()
            ax2.plot(c.epoch, c.lr, color="C3", lw=0.8)
            ax2.set_ylabel("lr", color="C3", fontsize=8)
            ax2.tick_params(labelsize=7)
        ax.set_title(f"{name}: {', '.join(f.code for f in findings) or 'no finding'}", fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
    axes.flat[0].legend(fontsize=7)
    axes.flat[-1].axis("off")
    fig.tight_layout()
    fig.savefig(REPO / "docs" / "figures" / "doctor_planted_curves.png", dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="trainlab-curves-")))
