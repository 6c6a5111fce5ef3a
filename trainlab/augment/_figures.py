"""Figures of augmented samples (docs/augmentation.md): ``python -m trainlab.augment [out_dir]``."""

from __future__ import annotations

from pathlib import Path
from typing import Any
import warnings

import torch

from trainlab.augment._augmenter import Augmenter
from trainlab.augment._base import Transform
from trainlab.augment._erase import Cutout, InputNoise
from trainlab.augment._geometric import Geometric
from trainlab.augment._mix import CutMix, Mixup
from trainlab.population import Population

__all__ = ["augmented_samples", "plot_samples", "write_figures"]


def augmented_samples(transform: Transform, x: torch.Tensor, y: torch.Tensor, *, draws: int = 5, seed: int = 0,
                      num_classes: int = 10, dataset: str | None = "mnist-5k", force: bool = False
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """``draws`` augmented versions of the batch ``x (N, C, H, W)``: ``(draws, N, C, H, W)`` and targets.

    The draws are the members of a population of ``draws`` (seeds ``seed + i``): each
    shows what one member sees at one step.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        aug = Augmenter([transform], population=Population(draws, seed=seed), num_classes=num_classes,
                        dataset=dataset, force=force)
    xa, t = aug(x.unsqueeze(0), y)
    if not t.is_floating_point():
        t = torch.nn.functional.one_hot(t, num_classes).float().expand(draws, *t.shape, num_classes)
    return xa, t


def _boxes(transform: Transform, n: int) -> torch.Tensor | None:
    """The boxes the last draw erased (Cutout, ``(P, N, 4)``) or pasted (CutMix, one per member)."""
    boxes = getattr(transform, "last_boxes", None)
    if boxes is None:
        return None
    return boxes if boxes.ndim == 3 else boxes.unsqueeze(1).expand(boxes.shape[0], n, 4)


def _label(t: torch.Tensor) -> str:
    top = torch.topk(t, 2)
    parts = [f"{int(c)}:{float(w):.2f}" for w, c in zip(top.values, top.indices) if float(w) > 0.005]
    return " ".join(parts)


def plot_samples(x: torch.Tensor, xa: torch.Tensor, targets: torch.Tensor | None, title: str,
                 boxes: torch.Tensor | None = None) -> Any:
    """A grid: the originals in the first column, one augmented draw per further column.

    ``boxes`` ``(draws, N, 4)`` (top, left, bottom, right) are outlined in red.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    n, draws = x.shape[0], xa.shape[0]
    fig, axes = plt.subplots(n, draws + 1, figsize=(1.25 * (draws + 1), 1.35 * n), squeeze=False)
    for i in range(n):
        cols = [x[i]] + [xa[d, i] for d in range(draws)]
        for j, img in enumerate(cols):
            ax = axes[i][j]
            ax.imshow(img[0].cpu().numpy(), cmap="gray_r", vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            if targets is not None and j > 0:
                ax.set_xlabel(_label(targets[j - 1, i]), fontsize=7)
            if boxes is not None and j > 0:
                top, left, bottom, right = boxes[j - 1, i].tolist()
                if bottom > top and right > left:
                    ax.add_patch(Rectangle((left - 0.5, top - 0.5), right - left, bottom - top, fill=False,
                                           edgecolor="red", linewidth=0.8))
        axes[i][0].set_ylabel("original" if i == 0 else "", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def write_figures(out_dir: str | Path) -> list[Path]:
    """Draw docs/figures/aug_*.png from real embedded MNIST digits (a few seconds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from trainlab.data import load_splits

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    s = load_splits("mnist-5k", train=200, val=0, test=0, flatten=False, seed=0)
    pick = [int((s.train.y == c).nonzero()[0]) for c in (0, 2, 6, 7)]
    x, y = s.train.x[pick], s.train.y[pick]
    cases = [
        ("aug_geometric.png", Geometric(rotate=15, shift=3, scale=0.1), False,
         "Geometric: rotate <= 15 deg, shift <= 3 px, zoom 0.9-1.1 (digits: no flips)"),
        ("aug_noise.png", InputNoise(0.3), False, "Gaussian input noise, std 0.3"),
        ("aug_cutout.png", Cutout(12), False, "Cutout: a 12x12 square (red) zeroed, clipped at the borders"),
        ("aug_mixup.png", Mixup(0.4), True, "Mixup, alpha 0.4: images and labels blended (label:weight)"),
        ("aug_cutmix.png", CutMix(1.0), True, "CutMix, alpha 1: a partner's box (red) pasted, labels by area"),
    ]
    written = []
    for name, transform, show_targets, title in cases:
        xa, t = augmented_samples(transform, x, y)
        fig = plot_samples(x, xa, t if show_targets else None, title, boxes=_boxes(transform, x.shape[0]))
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        written.append(out / name)
    written.append(_forbidden_figure(s, out / "aug_forbidden.png"))
    written.append(_smoothing_figure(out / "aug_label_smoothing.png"))
    return written


def _smoothing_figure(path: Path, eps: float = 0.1) -> Path:
    """Targets of one example: hard, smoothed, mixed (lambda 0.7 with a 2), mixed then smoothed (once)."""
    import matplotlib.pyplot as plt

    C = 10
    hard = torch.nn.functional.one_hot(torch.tensor(7), C).float()
    mixed = 0.7 * hard + 0.3 * torch.nn.functional.one_hot(torch.tensor(2), C).float()
    rows = [("hard label 7", hard), (f"label smoothing {eps}", (1 - eps) * hard + eps / C),
            ("mixup/cutmix, lambda 0.7 with a 2", mixed),
            (f"mixed, then smoothed once ({eps})", (1 - eps) * mixed + eps / C)]
    fig, axes = plt.subplots(1, len(rows), figsize=(2.6 * len(rows), 2.2), sharey=True)
    for ax, (title, t) in zip(axes, rows):
        ax.bar(range(C), t.numpy(), color="tab:blue")
        ax.set_xticks(range(C))
        ax.set_title(title, fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("target probability", fontsize=8)
    fig.suptitle("Targets the loss sees: the loss smooths whatever arrives, exactly once", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _forbidden_figure(s: Any, path: Path) -> Path:
    """Why digits forbid flips and large rotations: a 6 turned 180 degrees, a mirrored 2, 3 and 7."""
    import matplotlib.pyplot as plt

    imgs = []
    for digit, what in ((6, "rot180"), (9, "rot180"), (2, "hflip"), (3, "hflip"), (7, "hflip")):
        img = s.train.x[int((s.train.y == digit).nonzero()[0])][0]
        imgs.append((digit, img, img.rot90(2) if what == "rot180" else img.flip(-1), what))
    fig, axes = plt.subplots(2, len(imgs), figsize=(1.4 * len(imgs), 3.0))
    for j, (digit, img, bad, what) in enumerate(imgs):
        for i, (im, label) in enumerate(((img, f"label {digit}"), (bad, what))):
            axes[i][j].imshow(im.numpy(), cmap="gray_r", vmin=0.0, vmax=1.0)
            axes[i][j].set_xticks([])
            axes[i][j].set_yticks([])
            axes[i][j].set_xlabel(label, fontsize=8)
    fig.suptitle("Not label-preserving for digits: a turned 6 reads as a 9 (and back), a mirrored 2 as a 5", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
