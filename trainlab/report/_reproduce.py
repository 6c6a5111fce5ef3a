"""Run experiments and write report.html + results.json."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
import datetime as _dt
import json
import math
import os
from pathlib import Path
import time
import traceback
from typing import Any

import numpy as np

from trainlab.errors import ConfigError, DataError
from trainlab.experiments import REGISTRY, Experiment, Figure, Preset, Result
from trainlab.report._html import figure_png, render_html
from trainlab.report._schema import SCHEMA_VERSION, validate_results

__all__ = ["ProgressEvent", "Report", "resolve_preset", "docs_link", "experiment_entry", "write_report",
           "reproduce", "resolve_names"]

_MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                "t10k-labels-idx1-ubyte.gz")


@dataclass
class ProgressEvent:
    """What :func:`reproduce` tells its ``progress`` callback.

    ``kind`` is ``"start"`` (an experiment begins), ``"done"`` (it ended: ``status``,
    ``seconds``, ``passed``/``checks``), or ``"skip"`` (not available: ``reason``).
    """

    kind: str
    index: int
    total: int
    name: str
    status: str = ""
    seconds: float | None = None
    passed: int = 0
    checks: int = 0
    reason: str = ""


@dataclass
class Report:
    """What :func:`reproduce` returns: the results object (as in results.json), the
    experiments' :class:`Result` objects, and the paths written."""

    results: dict[str, Any]
    outcomes: dict[str, Result] = field(default_factory=dict)
    html_path: Path | None = None
    json_path: Path | None = None

    @property
    def all_held(self) -> bool:
        s = self.results["summary"]
        return s["did_not_hold"] == 0 and s["errors"] == 0


# ---- inputs -------------------------------------------------------------------------------


def resolve_names(names: Sequence[str] | None) -> list[str]:
    """The experiments to run, in report order; all when ``names`` is empty. Unknown names are one error."""
    known = list(REGISTRY)
    if not names:
        return known
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise ConfigError(f"unknown experiment{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
                          f"(known: {', '.join(known)})")
    wanted = set(names)
    return [n for n in known if n in wanted]


def _full_mnist_present(data_dir: str | None) -> tuple[bool, str]:
    from trainlab.data import fetch

    try:
        for f in _MNIST_FILES:
            fetch("mnist", f, data_dir=data_dir, download=False)
    except DataError as e:
        return False, str(e)
    return True, ""


def resolve_preset(preset: str = "quick", *, data: str | None = None, data_dir: str | None = None,
                   seed: int = 0) -> Preset:
    """A :class:`Preset`: ``data`` defaults to the embedded ``mnist-5k``, except for the
    textbook preset, which takes full MNIST when its files are present locally (cache or
    ``data_dir``; nothing is downloaded unless ``data`` names it explicitly)."""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"seed must be an integer, got {seed!r}")
    if data is not None:
        from trainlab.data import get_dataset_info

        get_dataset_info(data)  # an unknown name is one line listing the known ones
        return Preset(name=preset, data=data, data_dir=data_dir, seed=seed, download=True)
    if preset == "textbook":
        ok, why = _full_mnist_present(data_dir)
        if ok:
            return Preset(name=preset, data="mnist", data_dir=data_dir, seed=seed, download=False,
                          note="full MNIST, as in the textbook")
        return Preset(name=preset, data="mnist-5k", data_dir=data_dir, seed=seed,
                      note="full MNIST is not available locally (" + why + "), so the textbook settings run on the "
                           "5,000 embedded digits; sizes above the pool are capped; pass --data mnist to download it")
    return Preset(name=preset, data="mnist-5k", data_dir=data_dir, seed=seed)


def _check_data(preset: Preset) -> None:
    """Fail fast, with one line, when the data cannot be loaded (before any experiment runs)."""
    if preset.embedded:
        from trainlab.data import embedded_mnist_path

        embedded_mnist_path()
        return
    from trainlab.data import load_splits

    load_splits(preset.data, train=10, val=0, test=10, data_dir=preset.data_dir, download=preset.download)


def docs_link(page: str, out_dir: Path, docs_base: str | None = None) -> str:
    """Link to ``docs/<page>.md``: under ``docs_base`` (a URL or folder) when given, else
    relative from the report's folder to this checkout's docs/ (``../docs/<page>.md``
    when the checkout cannot be found)."""
    if not page:
        return ""
    if docs_base:
        return f"{docs_base.rstrip('/')}/{page}.md"
    repo_docs = Path(__file__).resolve().parents[2] / "docs"
    if repo_docs.is_dir():
        return Path(os.path.relpath(repo_docs / f"{page}.md", out_dir.resolve())).as_posix()
    return f"../docs/{page}.md"


# ---- results.json entries ---------------------------------------------------------------------


def _clean(v: Any) -> Any:
    """JSON-safe: numpy to Python, non-finite floats to null, tuples to lists, keys to strings."""
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, np.ndarray):
        return _clean(v.tolist())
    if isinstance(v, (np.floating, float)):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.bool_,)):
        return bool(v)
    if v is None or isinstance(v, (str, int, bool)):
        return v
    return str(v)


def experiment_entry(exp: Experiment, *, status: str, docs: str, result: Result | None = None,
                     reason: str | None = None, figures: Sequence[Figure] = ()) -> dict[str, Any]:
    """One experiment's entry in results.json."""
    entry: dict[str, Any] = {
        "name": exp.name, "title": exp.title, "claim": exp.claim, "source": exp.source, "docs": docs,
        "status": status, "reason": reason, "seconds": None, "summary": "", "settings": {}, "numbers": {},
        "checks": [], "figures": [{"title": f.title, "caption": f.caption} for f in figures], "notes": [],
    }
    if result is not None:
        entry.update(seconds=round(result.seconds, 3), summary=result.summary, settings=_clean(result.settings),
                     numbers=_clean(result.numbers), checks=[_clean(c.to_dict()) for c in result.checks],
                     notes=list(result.notes))
    return entry


def _summary(entries: list[dict[str, Any]]) -> dict[str, int]:
    checks = [c for e in entries for c in e["checks"]]
    return {"experiments": len(entries), "held": sum(e["status"] == "held" for e in entries),
            "did_not_hold": sum(e["status"] == "did not hold" for e in entries),
            "not_available": sum(e["status"] == "not available" for e in entries),
            "errors": sum(e["status"] == "error" for e in entries), "checks": len(checks),
            "checks_passed": sum(bool(c["passed"]) for c in checks)}


def write_report(results: dict[str, Any], out_dir: str | os.PathLike[str],
                 figures: dict[str, list[dict[str, Any]]] | None = None) -> tuple[Path, Path]:
    """Write ``out_dir/results.json`` (validated against the schema first) and ``out_dir/report.html``.

    ``figures[name]`` holds the encoded figures of experiment ``name`` (see
    :func:`~trainlab.report._html.render_html`). Both files are written to a temporary
    name and renamed, so a reader never sees half a file.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = dict(results)
    results["summary"] = _summary(results["experiments"])
    validate_results(results)
    json_path, html_path = out / "results.json", out / "report.html"
    for path, text in ((json_path, json.dumps(results, indent=1, allow_nan=False) + "\n"),
                       (html_path, render_html(results, figures or {}))):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    return html_path, json_path


def _encode(figs: list[Figure]) -> list[dict[str, Any]]:
    out = []
    for f in figs:
        png, w, h = figure_png(f.figure)
        out.append({"title": f.title, "caption": f.caption, "png": png, "width": w, "height": h})
    return out


# ---- the run ------------------------------------------------------------------------------------


def reproduce(names: Sequence[str] | None = None, *, preset: str = "quick", data: str | None = None,
              data_dir: str | None = None, out: str | os.PathLike[str] | None = None, seed: int = 0,
              docs_base: str | None = None, threads: int | None = None,
              progress: Callable[[ProgressEvent], None] | None = None) -> Report:
    """Run the named experiments (all by default) and write ``out/report.html`` and ``out/results.json``.

    Experiments run one after the other, each deterministic for its seed; after every
    experiment both files are rewritten (``"complete": false`` until the end), so an
    interrupted run leaves a readable partial report. An experiment whose technique has
    not landed is listed as "not available"; one that raises is listed as "error" with
    its message, and the others still run. ``out=None`` writes nothing.
    """
    import torch

    import trainlab

    todo = resolve_names(names)
    p = resolve_preset(preset, data=data, data_dir=data_dir, seed=seed)
    if threads is not None:
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise ConfigError(f"threads must be an integer >= 1, got {threads!r}")
        torch.set_num_threads(threads)
    _check_data(p)
    import matplotlib

    matplotlib.use("Agg", force=True)
    out_dir = Path(out) if out is not None else None
    results: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION, "tool": "trainlab reproduce", "trainlab_version": trainlab.__version__,
        "torch_version": torch.__version__,
        "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "preset": p.name, "data": p.data, "data_note": p.note, "seed": p.seed, "threads": torch.get_num_threads(),
        "seconds": 0.0, "complete": False, "summary": {}, "experiments": [],
    }
    report = Report(results)
    figures: dict[str, list[dict[str, Any]]] = {}
    t0 = time.perf_counter()
    total = len(todo)
    for i, name in enumerate(todo, 1):
        exp = REGISTRY[name]
        docs = docs_link(exp.docs, out_dir or Path("."), docs_base)
        ok, why = exp.available()
        if ok:
            ok, why = exp.supports(p)  # e.g. an MLP on 784 inputs, asked to run on CIFAR-10
        if not ok:
            results["experiments"].append(experiment_entry(exp, status="not available", docs=docs, reason=why))
            if progress:
                progress(ProgressEvent("skip", i, total, name, status="not available", reason=why))
        else:
            if progress:
                progress(ProgressEvent("start", i, total, name))
            try:
                result = exp.run(p)
                figs = exp.plot(result)
            except Exception as e:  # one broken experiment must not lose the others
                tb = traceback.format_exception_only(type(e), e)[-1].strip()
                entry = experiment_entry(exp, status="error", docs=docs, reason=tb)
                results["experiments"].append(entry)
                if progress:
                    progress(ProgressEvent("done", i, total, name, status="error", reason=tb))
            else:
                status = "held" if result.passed else "did not hold"
                figures[name] = _encode(figs)
                results["experiments"].append(experiment_entry(exp, status=status, docs=docs, result=result,
                                                               figures=figs))
                report.outcomes[name] = result
                if progress:
                    progress(ProgressEvent("done", i, total, name, status=status, seconds=result.seconds,
                                           passed=sum(c.passed for c in result.checks), checks=len(result.checks)))
        results["seconds"] = round(time.perf_counter() - t0, 3)
        results["complete"] = i == total
        if out_dir is not None:
            report.html_path, report.json_path = write_report(results, out_dir, figures)
    if total == 0 and out_dir is not None:
        results["complete"] = True
        report.html_path, report.json_path = write_report(results, out_dir, figures)
    results["summary"] = _summary(results["experiments"])
    return report
