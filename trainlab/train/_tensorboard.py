"""TensorBoard event files of a run (``trainlab train --tensorboard DIR``) and of a study (``trainlab tune``).

Written with PyTorch's own writer (``torch.utils.tensorboard.SummaryWriter``), so any TensorBoard
reads them: ``tensorboard --logdir DIR``.

A training run: one TensorBoard *run* per member, ``DIR/m00_<label>``, ``DIR/m01_<label>``, ...
(the label is :func:`trainlab.labels.member_labels`' name of the member, made safe for a folder
name), so TensorBoard's run selector and legends name members by their settings. Each holds

* **scalars**, at every evaluation (step = the trainer's step): every metric of the evaluation
  record under ``split/metric`` (``train/loss``, ``train/acc``, ``val/loss``, ``val/acc``,
  ``test/...``, ``train/batch_loss``, ``train/penalty``, ``train/grad_norm`` ...), ``lr`` (the
  member's learning rate) and ``epoch`` -- the numbers of ``metrics.jsonl``;
* **histograms** per layer from the live probe (:class:`~trainlab.train.LayerProbe`, every
  ``probe_every`` steps and at step 0): ``weights/<path>.<Layer>`` and
  ``activations/<path>.<Layer>``, with the probe's bins; and the probe's per-layer scalars
  ``grad_norm/...`` (the vanishing-gradient view), ``dead/...``, ``saturated/...``,
  ``bn_batch_mean/...``, ``bn_batch_var/...``, ``bn_running_mean/...``, ``bn_running_var/...``
  (means over the features);
* **hparams**: the member's settings -- the per-member keys of the config that differ between
  the members or are on for some member, with the member's value, and its seed
  (:func:`member_hparams`) -- as one HParams *session* per member, so the HParams tab compares the
  members (table, parallel coordinates, scatter against ``val/acc``, ``val/loss`` ...). A member
  that diverged ends its session with status FAILURE.

A resumed run (``--resume``) writes on into the same folders; events the interrupted process
wrote after its last checkpoint are dropped by TensorBoard (``purge_step``).

A study: one TensorBoard run per trial, ``DIR/trial-0003``, with the trial's values as hparams,
its final metric (the study's objective, e.g. ``val_acc``) as the scalar ``objective``, and its
learning curves (``train/loss``, ``val/acc``, ... at step = the evaluation's number, 1, 2, ...).

The ``tensorboard`` package is an optional extra (``pip install 'trainlab[tensorboard]'``); without
it :func:`require_tensorboard` raises one clear line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import math
from pathlib import Path
import re
from typing import Any

import torch

from trainlab.errors import ConfigError
from trainlab.train._callback import Callback

__all__ = ["require_tensorboard", "check_logdir", "TensorBoardSink", "TrialTensorBoard", "tensorboard_sinks", "member_hparams", "safe_name",
           "metric_tag"]

_MISSING = ("--tensorboard needs the 'tensorboard' package, which is not installed: pip install "
            "'trainlab[tensorboard]' (or pip install tensorboard)")


def require_tensorboard() -> Any:
    """``torch.utils.tensorboard.SummaryWriter``, or a :class:`ConfigError` of one line when tensorboard is missing."""
    try:
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError(_MISSING) from None
    return SummaryWriter


def check_logdir(logdir: str | Path) -> Path:
    """``--tensorboard DIR`` before anything runs: the package is there and DIR is not a file (one line if not)."""
    require_tensorboard()
    path = Path(logdir)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--tensorboard {logdir}: that is a file; give a folder (it is created if missing)")
    return path


def safe_name(text: str, limit: int = 60) -> str:
    """``"lr=0.01, dropout=0.5"`` -> ``"lr=0.01,dropout=0.5"``: a folder name TensorBoard shows as is."""
    s = re.sub(r"[^A-Za-z0-9._=,+-]+", "_", text.replace(", ", ","))
    return s.strip("_")[:limit] or "member"


def metric_tag(key: str) -> str:
    """The scalar tag of an evaluation record's key: ``val_acc`` -> ``val/acc``, ``batch_loss`` -> ``train/batch_loss``."""
    for split in ("train", "val", "test"):
        if key.startswith(split + "_"):
            return f"{split}/{key[len(split) + 1:]}"
    if key in ("batch_loss", "penalty", "grad_norm", "grad_norm_max"):
        return f"train/{key}"
    return key


def _hparam_value(v: Any) -> int | float | str | bool | None:
    if v is None:
        return None
    if isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else str(v)
    return str(v)


def member_hparams(cfg: Any) -> list[dict[str, Any]]:
    """Each member's settings of a resolved config (a :class:`~trainlab.config.RunConfig` or its plain
    dict), and ``seed``: the per-member keys (dotted names) whose values differ between the members or
    that switch their feature on for some member (:func:`trainlab.config.value_is_on`: not None, False
    or 0), with the member's value. Keys off for every member (``augment.cutmix = 0``, ...) are left
    out, so the HParams table shows what was used."""
    from trainlab.config import get_key, per_member_keys, value_is_on

    if hasattr(cfg, "to_dict"):
        cfg = cfg.to_dict()
    size = int(cfg["population"]["size"])
    seeds = cfg["population"].get("seeds") or [int(cfg["seed"]) + i for i in range(size)]
    out: list[dict[str, Any]] = [{} for _ in range(size)]
    for key in per_member_keys():
        try:
            v = get_key(cfg, key)
        except (KeyError, TypeError, ConfigError):
            continue
        values = list(v) if isinstance(v, (list, tuple)) and len(v) == size else [v] * size
        differs = len({repr(x) for x in values}) > 1
        if not differs and not value_is_on(v):
            continue
        for m in range(size):
            mv = _hparam_value(values[m])
            if mv is not None:
                out[m][key] = mv
    for m in range(size):
        out[m]["seed"] = int(seeds[m])
    return out


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _session_end(failed: bool) -> Any:
    """The hparams plugin's session-end summary with status SUCCESS or FAILURE (torch writes SUCCESS only)."""
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.plugins.hparams.api_pb2 import Status
    from tensorboard.plugins.hparams.metadata import PLUGIN_DATA_VERSION, PLUGIN_NAME, SESSION_END_INFO_TAG
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData, SessionEndInfo

    sei = SessionEndInfo(status=Status.Value("STATUS_FAILURE" if failed else "STATUS_SUCCESS"))
    content = HParamsPluginData(session_end_info=sei, version=PLUGIN_DATA_VERSION)
    smd = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name=PLUGIN_NAME,
                                                                 content=content.SerializeToString()))
    return Summary(value=[Summary.Value(tag=SESSION_END_INFO_TAG, metadata=smd)])


def _write_hparams(writer: Any, hp: Mapping[str, Any], metrics: Sequence[str],
                   domains: Mapping[str, list[Any]] | None = None) -> None:
    """The experiment and session-start summaries of one session (the member's or trial's run)."""
    from torch.utils.tensorboard.summary import hparams

    exp, ssi, _ = hparams(dict(hp), {m: 0.0 for m in metrics}, hparam_domain_discrete=dict(domains or {}))
    fw = writer._get_file_writer()
    fw.add_summary(exp)
    fw.add_summary(ssi)


def _domains(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """Discrete domains (the values the members take) for the HParams tab's filters."""
    keys = {k for r in rows for k in r}
    out = {}
    for k in sorted(keys):
        vals = [r[k] for r in rows if k in r]
        kinds = {type(v) for v in vals}
        if len(kinds) == 1 and len(vals) == len(rows):
            out[k] = sorted(set(vals), key=lambda v: (str(type(v)), v))
    return out


class TensorBoardSink(Callback):
    """Write a training run's scalars, probe histograms and hparams as TensorBoard events (module doc).

    ``hparams``: one dict of settings per member (:func:`member_hparams`). Give the sink to the
    trainer's ``sinks`` and, for histograms, to a :class:`~trainlab.train.LayerProbe`'s sinks
    (:meth:`probe` is the probe sink). Never changes training.
    """

    def __init__(self, logdir: str | Path, *, hparams: Sequence[Mapping[str, Any]] | None = None,
                 flush_secs: int = 10) -> None:
        self.SummaryWriter = require_tensorboard()
        self.logdir = Path(logdir)
        self.hparams = [dict(h) for h in hparams] if hparams is not None else None
        self.flush_secs = flush_secs
        self.writers: list[Any] = []
        self.member_dirs: list[Path] = []
        self._written = 0
        self._purge: int | None = None
        self._hparams_due = False
        self._pending: list[Mapping[str, Any]] = []  # probe records that came before the writers opened
        self._closed = False

    # ---- opening ------------------------------------------------------------------------
    def _open(self, trainer: Any) -> None:
        if self.writers:
            return
        self._closed = False
        P = trainer.model.size
        labels = list(trainer.labels) if getattr(trainer, "labels", None) else [f"member {i}" for i in range(P)]
        if self.hparams is not None and len(self.hparams) != P:
            raise ConfigError(f"TensorBoardSink hparams must hold one dict per member ({P}), got {len(self.hparams)}")
        resumed = trainer.step > 0
        # A resumed run: events after the checkpoint's step, written by the interrupted process, are dropped.
        self._purge = trainer.step + 1 if resumed else None
        self._hparams_due = not resumed
        width = max(2, len(str(P - 1)))
        self.member_dirs = [self.logdir / f"m{m:0{width}d}_{safe_name(labels[m])}" for m in range(P)]
        self.writers = [self.SummaryWriter(log_dir=str(d), purge_step=self._purge, flush_secs=self.flush_secs)
                        for d in self.member_dirs]
        self._written = len(trainer.history.records)
        pending, self._pending = self._pending, []
        for rec in pending:
            self.probe(rec)

    def on_train_begin(self, trainer: Any) -> None:
        self._open(trainer)

    # ---- scalars ------------------------------------------------------------------------
    def _write_records(self, trainer: Any) -> None:
        records = trainer.history.records
        new = records[self._written:]
        if not new:
            return
        if self._hparams_due:
            keys = sorted({metric_tag(k) for r in new for k, v in r.items() if isinstance(v, list)
                           and k.startswith(("train_", "val_", "test_"))})
            domains = _domains(self.hparams) if self.hparams else None
            for m, w in enumerate(self.writers):
                hp = self.hparams[m] if self.hparams is not None else {"member": m}
                _write_hparams(w, hp, keys, domains)
            self._hparams_due = False
        lr = getattr(trainer.optimizer, "lr", None)
        lr = lr.detach().cpu().tolist() if isinstance(lr, torch.Tensor) else None
        for r in new:
            step = int(r["step"])
            for m, w in enumerate(self.writers):
                for k, v in r.items():
                    if isinstance(v, list) and len(v) == len(self.writers) and _finite(v[m]):
                        w.add_scalar(metric_tag(k), float(v[m]), step)
                if "lr" not in r and lr is not None and len(lr) == len(self.writers) and _finite(lr[m]):
                    w.add_scalar("lr", float(lr[m]), step)
                if _finite(r.get("epoch")):
                    w.add_scalar("epoch", float(r["epoch"]), step)
        self._written = len(records)
        for w in self.writers:
            w.flush()

    def on_evaluate(self, trainer: Any, record: dict[str, Any]) -> None:
        self._open(trainer)
        self._write_records(trainer)

    def on_interrupt(self, trainer: Any) -> None:
        for w in self.writers:
            w.flush()

    def on_train_end(self, trainer: Any) -> None:
        self._open(trainer)
        self._write_records(trainer)  # the last record, made after training stopped between evaluations
        for m, w in enumerate(self.writers):
            w._get_file_writer().add_summary(_session_end(m in trainer.history.diverged))
            w.close()
        self._closed = True

    # ---- probe records (histograms) ----------------------------------------------------------
    def probe(self, record: Mapping[str, Any]) -> None:
        """A :class:`~trainlab.train.LayerProbe` sink: its histograms and per-layer scalars."""
        if self._closed:
            return  # after training ended (a probe placed after this sink): nothing more to write
        if not self.writers:
            self._pending.append(record)
            return
        step = int(record["step"])
        if self._purge is not None and step < self._purge:
            return  # a resumed run's first probe record repeats one the interrupted process wrote
        for layer in record["layers"]:
            name = f"{layer['path']}.{layer['type']}"
            for part, prefix in (("weight", "weights"), ("act", "activations")):
                e = layer.get(part)
                if e is None:
                    continue
                edges = e["edges"]
                for m, w in enumerate(self.writers):
                    counts = e["hist"][m]
                    num = sum(counts)
                    mean, std = e["mean"][m], e["std"][m]
                    if num == 0 or mean is None or std is None:
                        continue
                    w.add_histogram_raw(f"{prefix}/{name}", min=edges[0], max=edges[-1], num=num,
                                        sum=mean * num, sum_squares=(std * std + mean * mean) * num,
                                        bucket_limits=edges[1:], bucket_counts=counts, global_step=step)
            scalars: list[tuple[str, list[Any]]] = []
            if layer.get("grad"):
                scalars.append((f"grad_norm/{name}", layer["grad"]["norm"]))
            act = layer.get("act") or {}
            for k in ("dead", "saturated"):
                if k in act:
                    scalars.append((f"{k}/{name}", act[k]))
            for k, v in (layer.get("bn") or {}).items():
                scalars.append((f"bn_{k}/{name}", v["mean"]))
            for tag, values in scalars:
                for m, w in enumerate(self.writers):
                    if _finite(values[m]):
                        w.add_scalar(tag, float(values[m]), step)

    __call__ = probe


class TrialTensorBoard:
    """A study's trials as TensorBoard runs ``DIR/trial-NNNN`` (see the module doc)."""

    def __init__(self, logdir: str | Path, *, metric: str) -> None:
        self.SummaryWriter = require_tensorboard()
        self.logdir = Path(logdir)
        self.metric = metric

    def trial(self, number: int, values: Mapping[str, Any], state: str, value: float | None,
              attrs: Mapping[str, Any] | None = None) -> Path:
        """Write one finished trial: its ``values`` as hparams, ``value`` as the scalar ``objective``
        (complete trials), its curves (``attrs["curves"]``) as scalars; ``state`` ends the session
        (``complete``: SUCCESS, ``pruned``: ABORTED... written as FAILURE unless complete)."""
        d = self.logdir / f"trial-{number:04d}"
        w = self.SummaryWriter(log_dir=str(d), flush_secs=10)
        try:
            hp = {k: hv for k, v in values.items() if (hv := _hparam_value(v)) is not None}
            curves = dict((attrs or {}).get("curves") or {})
            metrics = ["objective"] + [metric_tag(k) for k in curves if k != "epoch"]
            _write_hparams(w, hp, metrics)
            for k, series in curves.items():
                tag = "epoch" if k == "epoch" else metric_tag(k)
                for i, v in enumerate(series, start=1):
                    if _finite(v):
                        w.add_scalar(tag, float(v), i)
            if value is not None and _finite(value):
                w.add_scalar("objective", float(value), max(1, len(curves.get("epoch", []))))
            w._get_file_writer().add_summary(_session_end(str(state) != "complete"))
        finally:
            w.close()
        return d


def tensorboard_sinks(logdir: str | Path, cfg: Any, *, every: int = 50) -> list[Callback]:
    """The trainer sinks of ``--tensorboard``: a :class:`TensorBoardSink` with the members' settings of the
    resolved config ``cfg`` (a RunConfig or its dict) as hparams, and the :class:`~trainlab.train.LayerProbe` that feeds it histograms."""
    from trainlab.train._probes import LayerProbe

    sink = TensorBoardSink(logdir, hparams=member_hparams(cfg))
    # the probe first: its last record (at the end of training) reaches the sink before the sink closes
    return [LayerProbe(every=every, sinks=[sink.probe], keep=0), sink]
