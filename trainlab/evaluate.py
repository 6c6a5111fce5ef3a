"""Evaluate a saved model on a split of its data set."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from trainlab.config import RunConfig
from trainlab.errors import CheckpointError
from trainlab.io import load_model
from trainlab.nn import Module, SoftmaxCrossEntropy

__all__ = ["evaluate_saved", "predict"]


@torch.no_grad()
def predict(model: Module, x: torch.Tensor, batch_size: int = 1000, *, progress: bool = False) -> torch.Tensor:
    """Eval-mode outputs ``(P, N, C)`` for inputs ``(N, ...)`` (shared by all members).

    ``progress``: a bar over the examples with the time left, on a terminal only (it is
    cleared when done; nothing is printed in pipes and logs)."""
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=x.shape[0], unit="img", desc="evaluating", leave=False, dynamic_ncols=True, disable=None)
    outs = []
    for i in range(0, x.shape[0], batch_size):
        outs.append(model.forward(x[i:i + batch_size].unsqueeze(0), training=False))
        if bar is not None:
            bar.update(min(batch_size, x.shape[0] - i))
    if bar is not None:
        bar.close()
    return torch.cat(outs, dim=1)


def evaluate_saved(run: str | Path, *, split: str = "test", data: str | None = None, data_dir: str | None = None,
                   device: str = "cpu", ensemble: str | None = None,
                   members: list[int] | None = None, progress: bool = False,
                   metrics: str | Sequence[str] | None = None, figure: str | Path | None = None) -> dict[str, Any]:
    """Loss and accuracy per member of the model saved in ``run`` on ``split``.

    ``metrics`` (``"top5,f1,per_class,confusion"``, see :func:`trainlab.metrics.parse_metrics`)
    adds ``top{k}_acc`` and ``macro_f1`` to each member's row and ``per_class_acc`` /
    ``confusion`` (one entry per member) to the result; with ``confusion`` a figure of every
    member's matrix is written to ``figure`` (default ``RUN/confusion_<split>.png``) and its
    path returned as ``result["figure"]``.

    The split is rebuilt from the run's ``config.toml`` (same data set, sizes and
    seed, hence the same images), and inputs are preprocessed with the statistics
    saved with the model, not refitted. ``ensemble="mean"`` / ``"vote"`` also scores
    the members (or ``members``) predicting together; ``ensemble="snapshots"`` scores
    the run's saved snapshots (``train.snapshot_every``) as one averaged ensemble.
    """
    from trainlab.build import resolve_device
    from trainlab.data import load_splits
    from trainlab.metrics import compute_metrics, parse_metrics

    spec = parse_metrics(metrics)  # a bad name fails before any work
    run = Path(run)
    run_dir = run if run.is_dir() else run.parent
    saved = load_model(run, device=resolve_device(device))
    cfg_path = run_dir / "config.toml"
    if not cfg_path.exists():
        raise CheckpointError(f"{cfg_path}: not found; evaluate needs the run's config to rebuild its data split")
    cfg = RunConfig.load(cfg_path)
    d = cfg.data
    name = data or d.name
    splits = load_splits(name, train=d.train, val=d.val, test=d.test, seed=cfg.seed, preprocess="none",
                         flatten=d.flatten, data_dir=data_dir or d.data_dir, cache_dir=d.cache_dir,
                         download=d.download, device=saved.model.device)
    part = getattr(splits, split)
    if part is None:
        raise CheckpointError(f"the run's config has no {split} split ({split} = 0)")
    x = part.x
    if saved.preprocessor is not None:
        x = saved.preprocessor.transform(x.cpu()).to(saved.model.device)
    out = predict(saved.model, x.to(saved.model.dtype), progress=progress)
    loss = SoftmaxCrossEntropy()
    loss.build(saved.model.size, device=saved.model.device, dtype=saved.model.dtype)
    losses = loss.forward(out, part.y).tolist()
    accs = (out.argmax(-1) == part.y.unsqueeze(0)).double().mean(1).tolist()
    from trainlab.labels import member_labels

    labels = member_labels(cfg) if cfg.size == saved.model.size else \
        [f"member {m}" for m in range(saved.model.size)]
    rows = [{"member": m, "member_label": labels[m], "loss": losses[m], "acc": accs[m]}
            for m in range(saved.model.size)]
    result: dict[str, Any] = {"data": name, "split": split, "examples": int(x.shape[0]), "members": rows}
    extra = compute_metrics(out, part.y, spec, num_classes=out.shape[-1])
    for key in [k for k in extra if k.startswith("top") or k == "macro_f1"]:
        for m, v in enumerate(extra.pop(key)):
            rows[m][key] = v
    result.update(extra)
    if spec.confusion:
        import io

        from trainlab.io import atomic_write_bytes
        from trainlab.metrics import plot_confusion

        path = Path(figure) if figure is not None else run_dir / f"confusion_{split}.png"
        fig = plot_confusion(result["confusion"])
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
        atomic_write_bytes(path, buf.getvalue())
        result["figure"] = str(path)
    if ensemble is not None:
        from trainlab.ensemble import ensemble_predict, expected_calibration_error, load_snapshots

        if ensemble == "snapshots":
            models = [s.model for s in load_snapshots(run_dir, device=saved.model.device)]
            pred = ensemble_predict(models, x.to(saved.model.dtype))
            used: list[int] | list[str] = [f"{len(models)} snapshots"]
            used_labels = [f"{len(models)} snapshots"]
        else:
            pred = ensemble_predict(saved.model, x.to(saved.model.dtype), method=ensemble, members=members)
            member_ids = members if members is not None else list(range(saved.model.size))
            used, used_labels = member_ids, [labels[m] for m in member_ids]
        y = part.y.to(pred.labels.device)
        result["ensemble"] = {"method": ensemble, "members": used, "member_labels": used_labels,
                              "acc": pred.accuracy(y),
                              "ece": expected_calibration_error(pred.probs, y),
                              "mean_disagreement": float(pred.disagreement.mean())}
    return result
