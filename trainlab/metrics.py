"""Classification metrics per member: top-k accuracy, the confusion matrix, per-class accuracy, macro-F1.

Every function takes the population's outputs ``(P, N, C)`` (logits or probabilities: only their
order matters) or predicted labels ``(P, N)``, and true labels ``(N,)`` shared by all members (or
``(P, N)``), and returns one result per member. Conventions are scikit-learn's, and the tests hold
them to ``sklearn.metrics``:

* confusion matrix ``M[i, j]`` = examples of true class ``i`` predicted as ``j`` (rows: truth);
* per-class accuracy = recall of each class, ``M[c, c] / sum_j M[c, j]`` (NaN for a class with no
  examples; ``sklearn.metrics.recall_score(average=None)``);
* macro-F1 = the unweighted mean over classes of ``F1_c = 2 TP / (2 TP + FP + FN)``, over the classes
  that occur in the labels or the predictions (``f1_score(average="macro")`` without ``labels=``);
* top-k accuracy = the fraction of examples whose true class is among the ``k`` highest scores
  (``top_k_accuracy_score``; ties between scores are broken by ``torch.topk``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
import re
from typing import Any

import torch

from trainlab.errors import ConfigError

__all__ = ["confusion_matrix", "top_k_accuracy", "per_class_accuracy", "macro_f1", "parse_metrics",
           "MetricSpec", "compute_metrics", "plot_confusion", "print_extra"]


def _labels(labels: torch.Tensor, P: int, N: int) -> torch.Tensor:
    y = labels.long()
    if y.ndim == 1:
        y = y.unsqueeze(0)
    if y.ndim != 2 or y.shape[1] != N or y.shape[0] not in (1, P):
        raise ConfigError(f"labels of shape {tuple(labels.shape)} do not fit {N} examples of {P} members")
    return y.expand(P, N)


def confusion_matrix(pred: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(P, C, C)`` int64 counts; ``pred`` is ``(P, N, C)`` scores or ``(P, N)`` predicted classes."""
    p = pred.argmax(dim=-1) if pred.ndim == 3 else pred.long()
    P, N = p.shape
    y = _labels(labels, P, N)
    C = num_classes
    if bool((y < 0).any()) or bool((y >= C).any()) or bool((p < 0).any()) or bool((p >= C).any()):
        raise ConfigError(f"class indices must lie in [0, {C})")
    flat = (torch.arange(P, device=p.device).unsqueeze(1) * (C * C) + y.to(p.device) * C + p).reshape(-1)
    return torch.bincount(flat, minlength=P * C * C).reshape(P, C, C)


def top_k_accuracy(scores: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """``(P,)`` float64: fraction of examples whose label is among the member's ``k`` top scores."""
    if scores.ndim != 3:
        raise ConfigError(f"top-k accuracy needs scores of shape (P, N, C), got {tuple(scores.shape)}")
    P, N, C = scores.shape
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= C:
        raise ConfigError(f"top-k accuracy needs 1 <= k <= {C} (the number of classes), got k={k!r}")
    top = scores.topk(k, dim=-1).indices  # (P, N, k)
    y = _labels(labels, P, N).to(top.device)
    return (top == y.unsqueeze(-1)).any(dim=-1).double().mean(dim=1)


def per_class_accuracy(cm: torch.Tensor) -> torch.Tensor:
    """``(P, C)`` float64 recall of every class from a confusion matrix ``(P, C, C)`` (NaN: no examples)."""
    cm = cm.double()
    support = cm.sum(dim=2)
    return torch.diagonal(cm, dim1=1, dim2=2) / support  # 0/0 -> NaN: the class never occurs


def macro_f1(cm: torch.Tensor) -> torch.Tensor:
    """``(P,)`` float64 macro-averaged F1 over the classes present in the labels or the predictions."""
    cm = cm.double()
    tp = torch.diagonal(cm, dim1=1, dim2=2)
    fp = cm.sum(dim=1) - tp  # predicted c, truth another class
    fn = cm.sum(dim=2) - tp
    denom = 2 * tp + fp + fn
    present = denom > 0
    f1 = torch.where(present, 2 * tp / denom.clamp(min=1), torch.zeros_like(tp))
    return f1.sum(dim=1) / present.sum(dim=1).clamp(min=1)


@dataclass(frozen=True)
class MetricSpec:
    """Parsed ``--metrics``: top-k values, and whether F1, per-class accuracy and the confusion matrix are wanted."""

    top_k: tuple[int, ...] = ()
    f1: bool = False
    per_class: bool = False
    confusion: bool = False


_ALLOWED = "acc, topK (e.g. top5), f1, per_class, confusion"


def parse_metrics(text: str | Sequence[str] | None) -> MetricSpec:
    """``"top5,f1,confusion"`` -> :class:`MetricSpec`; unknown names raise a one-line ConfigError."""
    if text is None:
        return MetricSpec()
    items = [t.strip().lower() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    if not items:
        raise ConfigError(f"--metrics needs at least one name ({_ALLOWED})")
    top, f1, per_class, conf = [], False, False, False
    for t in items:
        m = re.fullmatch(r"top-?(\d+)", t)
        if m:
            k = int(m.group(1))
            if k < 1:
                raise ConfigError(f"--metrics: {t!r} needs k >= 1")
            top.append(k)
        elif t in ("f1", "macro_f1", "macro-f1"):
            f1 = True
        elif t in ("per_class", "per-class", "class_acc"):
            per_class = True
        elif t in ("confusion", "confusion_matrix"):
            conf = True
        elif t not in ("acc", "accuracy", "loss"):
            raise ConfigError(f"--metrics: unknown metric {t!r} (allowed: {_ALLOWED})")
    return MetricSpec(tuple(sorted(set(top))), f1, per_class, conf)


def compute_metrics(scores: torch.Tensor, labels: torch.Tensor, spec: MetricSpec, *,
                    num_classes: int | None = None) -> dict[str, Any]:
    """The metrics ``spec`` asks for, as plain lists (one entry per member), for JSON and tables.

    Keys: ``top{k}_acc`` ``[P]``; ``macro_f1`` ``[P]``; ``per_class_acc`` ``[P][C]`` (None where a
    class has no examples); ``confusion`` ``[P][C][C]``.
    """
    C = num_classes or scores.shape[-1]
    out: dict[str, Any] = {}
    for k in spec.top_k:
        out[f"top{k}_acc"] = top_k_accuracy(scores, labels, k).tolist()
    if spec.f1 or spec.per_class or spec.confusion:
        cm = confusion_matrix(scores, labels, C)
        if spec.f1:
            out["macro_f1"] = macro_f1(cm).tolist()
        if spec.per_class:
            out["per_class_acc"] = [[None if v != v else v for v in row] for row in per_class_accuracy(cm).tolist()]
        if spec.confusion:
            out["confusion"] = cm.tolist()
    return out


def plot_confusion(cm: torch.Tensor | Sequence[Sequence[Sequence[int]]], *, class_names: Sequence[str] | None = None,
                   titles: Sequence[str] | None = None, normalize: bool = True) -> Any:
    """A matplotlib Figure: one confusion-matrix panel per member (rows: true class, columns: predicted).

    Cells are coloured by the row-normalized fraction (each true class sums to 1, so a
    rare class's errors are as visible as a common one's) and labelled with the counts.
    """
    from matplotlib.figure import Figure  # a bare Figure: no pyplot, no backend switched for the caller

    m = torch.as_tensor(cm, dtype=torch.float64)
    if m.ndim == 2:
        m = m.unsqueeze(0)
    P, C, _ = m.shape
    names = list(class_names) if class_names is not None else [str(c) for c in range(C)]
    cols = min(P, 4)
    rows = (P + cols - 1) // cols
    side = 0.45 * C + 1.5
    fig = Figure(figsize=(side * cols, side * rows), layout="constrained")
    for i in range(P):
        ax = fig.add_subplot(rows, cols, i + 1)
        counts = m[i]
        shown = counts / counts.sum(dim=1, keepdim=True).clamp(min=1) if normalize else counts
        im = ax.imshow(shown.numpy(), cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None)
        if C <= 20:
            for r in range(C):
                for c in range(C):
                    n = int(counts[r, c])
                    if n:
                        ax.text(c, r, str(n), ha="center", va="center", fontsize=7,
                                color="white" if float(shown[r, c]) > 0.5 else "black")
        ax.set_xticks(range(C), names, fontsize=7)
        ax.set_yticks(range(C), names, fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        acc = float(torch.diagonal(counts).sum() / counts.sum().clamp(min=1))
        ax.set_title(titles[i] if titles is not None else f"member {i} (acc {acc:.3f})", fontsize=9)
    fig.colorbar(im, ax=fig.axes, shrink=0.6, label="fraction of the true class" if normalize else "count")
    return fig


def print_extra(result: dict[str, Any]) -> None:
    """Print what :func:`compute_metrics` adds beyond the per-member table (``trainlab evaluate``)."""
    if "per_class_acc" in result:
        rows = result["per_class_acc"]
        C = len(rows[0])
        print("per-class accuracy (recall):")
        print("member  " + "  ".join(f"{c:>6}" for c in range(C)))
        for m, row in enumerate(rows):
            print(f"{m:>6}  " + "  ".join("     -" if v is None else f"{v:6.3f}" for v in row))
    if "confusion" in result:
        for m, cm in enumerate(result["confusion"]):
            width = max(len(str(v)) for row in cm for v in row)
            print(f"confusion matrix, member {m} (rows: true class, columns: predicted):")
            for row in cm:
                print("  " + " ".join(str(v).rjust(width) for v in row))
    if "figure" in result:
        print(f"wrote {result['figure']}")
