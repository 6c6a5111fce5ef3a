"""``trainlab train``'s job as an API: config in, a finished run directory out.

A run directory holds:

``config.toml``          the resolved config (every default filled in)
``metrics.jsonl``        one JSON line per evaluation per member, appended as training goes
``history.json``         the full :class:`~trainlab.train.History`
``model.safetensors``    weights of every member (and preprocessing statistics)
``model.json``           architecture and metadata for loading
``curves.png``           loss and accuracy curves
``summary.json``         final and best numbers per member, diverged members, timings,
                         versions, device and seed; ``"finished": true`` marks a complete run
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainlab.build import Run, build_run
from trainlab.config import dumps
from trainlab.errors import ConfigError
from trainlab.io import atomic_write_text, save_model
from trainlab.train import Callback, History, Trainer

__all__ = ["train_run", "environment", "summarize"]


def environment(device: torch.device | str) -> dict[str, Any]:
    """Versions and machine facts recorded with every run."""
    from trainlab import __version__

    return {"trainlab": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "platform": platform.platform(), "device": str(device),
            "torch_threads": torch.get_num_threads()}


class _MetricsWriter(Callback):
    """Appends each evaluation to metrics.jsonl as it happens (nothing computed is lost)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.written = 0
        path.write_text("")

    def on_evaluate(self, trainer: Trainer, record: dict[str, Any]) -> None:
        self.flush(trainer.history)

    def flush(self, history: History) -> None:
        lines = history.jsonl_lines(self.written)
        if lines:
            with self.path.open("a") as f:
                f.write("\n".join(lines) + "\n")
        self.written = len(history.records)


def summarize(history: History, *, seconds: float) -> dict[str, Any]:
    """Final and best metrics per member."""
    members = []
    metrics = history.metrics
    final = history.final or (history.records[-1] if history.records else {})
    for m in range(history.size):
        row: dict[str, Any] = {"member": m}
        for k, v in final.items():
            if isinstance(v, list):
                row[f"final_{k}"] = v[m] if v[m] is None or np.isfinite(v[m]) else None
        if "val_acc" in metrics and np.isfinite(history["val_acc"][:, m]).any():
            i = int(np.nanargmax(history["val_acc"][:, m]))
            row["best_val_acc"] = float(history["val_acc"][i, m])
            row["best_epoch"] = float(history["epoch"][i])
        row["diverged"] = history.diverged.get(m)
        row["stopped"] = history.stopped.get(m)
        members.append(row)
    return {"members": members, "seconds": round(seconds, 3), "steps": int(history["step"][-1]) if history.records else 0}


def _any_positive(v: Any) -> bool:
    return any(x > 0 for x in v) if isinstance(v, list) else v > 0


def train_run(cfg: dict[str, Any], out: str | Path, *, progress: bool = False) -> tuple[Run, dict[str, Any]]:
    """Build everything ``cfg`` describes, train, and write the run directory ``out``."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create output directory {out}: {e.strerror}") from None
    summary_path = out / "summary.json"
    if summary_path.exists():
        summary_path.unlink()  # a stale summary must not mark this new run finished
    atomic_write_text(out / "config.toml", dumps(cfg))
    writer = _MetricsWriter(out / "metrics.jsonl")
    run = build_run(cfg, progress=progress, callbacks=[writer])
    t0 = time.perf_counter()
    history = run.trainer.fit(run.splits.train, run.splits.val, run.splits.test)
    seconds = time.perf_counter() - t0
    writer.flush(history)
    history.save(out / "history.json")
    save_model(out, run.model, preprocessor=run.splits.preprocessor, num_classes=run.splits.num_classes,
               extra={"data": cfg["data"]["name"], "seed": cfg["seed"]})
    fig = history.plot(title=f"{cfg['data']['name']}: {cfg['model']['type']} ({run.model.size} member(s))")
    fig.savefig(out / "curves.png", dpi=100)
    import matplotlib.pyplot as plt

    plt.close(fig)
    summary = summarize(history, seconds=seconds)
    decayed = sorted({n for r in run.trainer.regularizers for n in r.parameter_names()} |
                     ({n for n, p in run.model.named_parameters().items() if p.decay}
                      if _any_positive(cfg["optim"]["weight_decay"]) else set()))
    summary.update(seed=cfg["seed"], environment=environment(run.model.device),
                   regularized_parameters=decayed,
                   parameters_per_member=run.model.num_parameters(),
                   data={"name": cfg["data"]["name"], "train": int(run.splits.train.x.shape[0]),
                         "val": int(run.splits.val.x.shape[0]) if run.splits.val is not None else 0,
                         "test": int(run.splits.test.x.shape[0]) if run.splits.test is not None else 0},
                   finished=True)
    atomic_write_text(summary_path, json.dumps(summary, indent=1))
    return run, summary
