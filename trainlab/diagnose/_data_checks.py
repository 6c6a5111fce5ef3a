"""Step 0 of the doctor: checks of the data before any training.

``measure(splits, ...) -> data`` computes plain numbers (input statistics per split,
constant features, NaN/inf, label counts, exact duplicates across splits, a quick
label-noise estimate, train/test shift); ``judge(data) -> findings`` turns them into
findings with fixes and is a pure function of those numbers (unit-tested without data);
``figures(data)`` draws the class counts. The thresholds live in :class:`DT`, each with
what was measured (embedded MNIST, seed 0; ``docs/doctor.md``).
"""

from __future__ import annotations

from collections.abc import Mapping
import math
from typing import Any

import numpy as np
import torch

from trainlab.diagnose._severity import Severity
from trainlab.diagnose._findings import Finding

__all__ = ["DT", "measure", "judge", "figures", "label_noise_estimate"]


class DT:
    """Thresholds of the data checks."""

    # RMS of the inputs as fed to the model (all values of the training split): minmax
    # 0.335, standardize 0.913, none (raw pixels 0-255) 85.5. Networks initialized by
    # He/Xavier assume inputs of order 1; above 10 the first layer's outputs are 10x too large.
    RMS_FAIL = 10.0
    RMS_WARN = 3.0
    # Largest / smallest class count in the training split: stratified mnist-5k 1.00-1.01,
    # the full MNIST training set's natural 1.24 (6742 / 5421). Above 3 the rare classes get
    # a third of the gradient signal of the common ones.
    IMBALANCE_WARN = 3.0
    # Exact duplicates of validation/test images in the training split: mnist-5k has 0. Any
    # is a leak; above 1% of a split the score is noticeably inflated.
    LEAK_WARN = 1
    LEAK_FAIL = 0.01
    # Label-noise estimate (share of held-out training examples a linear model, trained on
    # the other half for 50 steps, gives less than 5% probability to while it is at least
    # 50% sure of another class), mnist-5k seed 0: clean 0.054 (standardize 0.055), 10%
    # planted noise 0.145, 20% 0.205, 40% 0.268. 0.10 sits between clean (x1.8) and 10%.
    NOISE_WARN = 0.10
    NOISE_FAIL = 0.18
    # Train/test shift: mean over features of |mean_train - mean_test| / pooled std.
    # Sampling noise alone (3,500 vs 1,000 images) gives 0.024 on mnist-5k; a 20x imbalanced
    # training split (its class mix differs from test's) 0.097.
    SHIFT_WARN = 0.2


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1).double().cpu()


def _stats(x: torch.Tensor) -> dict[str, Any]:
    f = _flat(x)
    finite = torch.isfinite(f)
    g = f[finite]
    return {"n": int(f.shape[0]), "min": float(g.min()) if g.numel() else math.nan,
            "max": float(g.max()) if g.numel() else math.nan, "mean": float(g.mean()) if g.numel() else math.nan,
            "std": float(g.std(unbiased=False)) if g.numel() else math.nan,
            "rms": float(g.pow(2).mean().sqrt()) if g.numel() else math.nan,
            "nan": int(torch.isnan(f).sum()), "inf": int(torch.isinf(f).sum())}


def _row_keys(x: torch.Tensor) -> list[bytes]:
    a = np.ascontiguousarray(_flat(x).numpy())
    return [r.tobytes() for r in a]


@torch.no_grad()
def label_noise_estimate(x: torch.Tensor, y: torch.Tensor, num_classes: int, *, steps: int = 50,
                         seed: int = 0) -> float:
    """Share of training examples an "early" model is confidently wrong on (two-fold).

    A linear softmax model (inputs standardized on its own half, so the raw scale does not
    matter) is trained with Adam for ``steps`` full-batch steps on one half and scores the
    other, and vice versa. An example counts as mislabeled when the model gives its label
    less than 5% probability while being at least 50% sure of another class -- the
    "confident learning" idea of Northcutt et al. (2021) with a fixed confidence.
    """
    X, Y = _flat(x).float(), y.cpu()
    n = len(Y)
    if n < 20:
        return math.nan
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g)
    halves = (perm[: n // 2], perm[n // 2:])
    flagged = 0
    for a, b in (halves, halves[::-1]):
        mu, sd = X[a].mean(0), X[a].std(0).clamp_min(1e-6)
        xa, xb = torch.nan_to_num((X[a] - mu) / sd), torch.nan_to_num((X[b] - mu) / sd)
        # Adam (Kingma & Ba 2015) on the softmax cross-entropy + 1e-3 |W|^2, gradients in closed form
        # (X^T (P - onehot) / n); written out because importing torch.optim costs seconds
        W, c = torch.zeros(X.shape[1], num_classes), torch.zeros(num_classes)
        onehot = torch.nn.functional.one_hot(Y[a], num_classes).float()
        mW, vW, mc, vc = torch.zeros_like(W), torch.zeros_like(W), torch.zeros_like(c), torch.zeros_like(c)
        b1, b2, lr, eps = 0.9, 0.999, 0.01, 1e-8
        for t in range(1, steps + 1):
            r = (torch.softmax(xa @ W + c, dim=1) - onehot) / len(a)
            gW, gc = xa.T @ r + 2e-3 * W, r.sum(0)
            for p_, g_, m_, v_ in ((W, gW, mW, vW), (c, gc, mc, vc)):
                m_.mul_(b1).add_(g_, alpha=1 - b1)
                v_.mul_(b2).addcmul_(g_, g_, value=1 - b2)
                p_.sub_(lr * (m_ / (1 - b1**t)) / ((v_ / (1 - b2**t)).sqrt() + eps))
        p = torch.softmax(xb @ W + c, dim=1)
        py = p.gather(1, Y[b].unsqueeze(1)).squeeze(1)
        top = p.max(dim=1).values
        flagged += int(((py < 0.05) & (top >= 0.5)).sum())
    return flagged / n


def measure(splits: Any, *, preprocess: str = "", seed: int = 0, noise_steps: int = 50) -> dict[str, Any]:
    """The numbers of every data check, as plain Python values (JSON-ready)."""
    parts = {k: getattr(splits, k) for k in ("train", "val", "test") if getattr(splits, k) is not None}
    out: dict[str, Any] = {"preprocess": preprocess, "num_classes": int(splits.num_classes),
                           "stats": {k: _stats(v.x) for k, v in parts.items()}}
    tr = _flat(parts["train"].x)
    sd = tr.std(0, unbiased=False)
    out["features"] = int(tr.shape[1])
    out["constant_features"] = int((sd <= 1e-12).sum())
    y = parts["train"].y
    if not y.is_floating_point():
        counts = torch.bincount(y.cpu(), minlength=splits.num_classes).tolist()
        out["class_counts"] = {k: torch.bincount(v.y.cpu(), minlength=splits.num_classes).tolist()
                               for k, v in parts.items()}
        present = [c for c in counts if c > 0]
        out["imbalance_ratio"] = max(present) / min(present) if present else math.nan
        out["missing_classes"] = [i for i, c in enumerate(counts) if c == 0]
        out["label_noise_estimate"] = label_noise_estimate(parts["train"].x, y, splits.num_classes,
                                                           steps=noise_steps, seed=seed)
    keys = set(_row_keys(parts["train"].x))
    out["duplicates"] = {}
    for k in ("val", "test"):
        if k in parts:
            rows = _row_keys(parts[k].x)
            dup = sum(r in keys for r in rows)
            out["duplicates"][k] = {"count": dup, "fraction": dup / max(len(rows), 1)}
    if "test" in parts:
        te = _flat(parts["test"].x)
        pooled = torch.sqrt((sd**2 + te.std(0, unbiased=False) ** 2) / 2)
        use = pooled > 1e-12
        d = ((tr.mean(0) - te.mean(0)).abs()[use] / pooled[use])
        d = d[torch.isfinite(d)]
        out["shift"] = float(d.mean()) if d.numel() else math.nan
    return out


def _fix(overrides: list[str]) -> dict[str, Any]:
    return {"overrides": overrides, "val_acc": None, "baseline_val_acc": None, "measured_by": None}


def judge(data: Mapping[str, Any]) -> list[Finding]:
    """Findings from :func:`measure`'s numbers (pure: no data, no training)."""
    f: list[Finding] = []
    st = data["stats"]
    tr = st["train"]
    bad = {k: (s["nan"], s["inf"]) for k, s in st.items() if s["nan"] or s["inf"]}
    if bad:
        what = "; ".join(f"{k}: {n} NaN, {i} inf" for k, (n, i) in bad.items())
        f.append(Finding("nonfinite_inputs", Severity.FAIL, f"the inputs contain non-finite values ({what})",
                         "clean the data: drop or impute the NaN/inf entries before training"))
    rms = tr["rms"]
    if math.isfinite(rms) and rms > DT.RMS_WARN:
        sev = Severity.FAIL if rms > DT.RMS_FAIL else Severity.WARN
        pre = data.get("preprocess") or "the config's"
        f.append(Finding("inputs_not_normalized", sev,
                         f"the inputs are not normalized: the training inputs range {tr['min']:.4g} to "
                         f"{tr['max']:.4g} (mean {tr['mean']:.4g}, std {tr['std']:.4g}, RMS {rms:.4g}; the "
                         f"initialization assumes order 1) with data.preprocess = \"{pre}\"",
                         "set data.preprocess = \"minmax\" (pixels to [0, 1]) or \"standardize\" (per-feature "
                         "zero mean, unit variance), fitted on the training split",
                         {"rms": rms, "min": tr["min"], "max": tr["max"]},
                         fix=_fix(['data.preprocess="minmax"'])))
    ratio = data.get("imbalance_ratio")
    if ratio is not None and math.isfinite(ratio) and ratio > DT.IMBALANCE_WARN:
        counts = data["class_counts"]["train"]
        f.append(Finding("class_imbalance", Severity.WARN,
                         f"the classes are imbalanced: the largest has {ratio:.3g} x the images of the smallest "
                         f"(training counts {counts})",
                         "rebalance: oversample the rare classes (data.rebalance = true) or weight the loss by "
                         "inverse class frequency; judge by per-class or balanced accuracy",
                         {"imbalance_ratio": ratio, "counts": counts}, fix=_fix(["data.rebalance=true"])))
    if data.get("missing_classes"):
        f.append(Finding("missing_classes", Severity.WARN,
                         f"classes {data['missing_classes']} have no training image", "check the data split"))
    for k, d in (data.get("duplicates") or {}).items():
        if d["count"] >= DT.LEAK_WARN:
            sev = Severity.FAIL if d["fraction"] > DT.LEAK_FAIL else Severity.WARN
            f.append(Finding("leakage", sev,
                             f"{d['count']} {k} images ({d['fraction']:.1%}) are exact duplicates of training images: "
                             f"the {k} score is inflated (the model has seen them)",
                             "remove the duplicates from the training split (planted here by data.leak; set it to 0)",
                             {"split": k, **d}, fix=_fix(["data.leak=0.0"])))
    q = data.get("label_noise_estimate")
    if q is not None and math.isfinite(q) and q > DT.NOISE_WARN:
        sev = Severity.FAIL if q > DT.NOISE_FAIL else Severity.WARN
        f.append(Finding("label_noise", sev,
                         f"about {q:.0%} of the training labels look wrong (a simple model trained on the other half "
                         f"is confidently sure of another class; clean digits give about 5%)",
                         "clean the labels (inspect the flagged examples); meanwhile regularize more strongly or "
                         "stop early -- noisy labels are memorized late",
                         {"estimate": q}, fix=_fix(["data.label_noise=0.0"])))
    s = data.get("shift")
    if s is not None and math.isfinite(s) and s > DT.SHIFT_WARN:
        f.append(Finding("distribution_shift", Severity.WARN,
                         f"the test inputs differ from the training inputs: mean per-feature shift {s:.3g} pooled "
                         "standard deviations (sampling noise alone gives about 0.024)",
                         "check that train and test come from the same source and are preprocessed the same way",
                         {"shift": s}))
    return f


def figures(data: Mapping[str, Any]) -> dict[str, tuple[Any, str]]:
    """The class counts per split as bars (empty when the labels are not classes)."""
    if "class_counts" not in data:
        return {}
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    C = data["num_classes"]
    parts = list(data["class_counts"])
    w = 0.8 / max(len(parts), 1)
    for i, k in enumerate(parts):
        counts = np.asarray(data["class_counts"][k], dtype=float)
        ax.bar(np.arange(C) + i * w, counts / max(counts.sum(), 1), width=w, label=k)
    ax.set_xlabel("class")
    ax.set_ylabel("share of the split")
    ax.legend()
    fig.tight_layout()
    return {"classes": (fig, "Share of each class per split (bars of equal height: balanced).")}
