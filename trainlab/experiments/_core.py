"""The shapes every experiment shares: presets, checks, results, figures, the registry.

An experiment is data first: ``run(preset) -> Result`` trains and measures, and
returns numbers, arrays and checks -- nothing is drawn or printed. ``plot(result)``
turns a Result into captioned matplotlib figures. The report
(:mod:`trainlab.report`) composes the two.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
import contextlib
import contextvars
from dataclasses import dataclass, field
import importlib
import logging
import math
import time
from typing import Any

from trainlab.errors import ConfigError

__all__ = [
    "PRESETS",
    "Preset",
    "Check",
    "Figure",
    "Result",
    "Experiment",
    "Registry",
    "NotAvailable",
    "observe_checks",
]

#: the preset names: ``smoke`` (tests, seconds), ``quick`` (the report, minutes on 2 cores),
#: ``textbook`` (Saito ch. 6's exact settings)
PRESETS = ("smoke", "quick", "textbook")


class NotAvailable(ConfigError):
    """The technique an experiment needs has not landed (or its package is absent)."""


@dataclass(frozen=True)
class Preset:
    """How big an experiment runs and on what data.

    ``name`` is one of :data:`PRESETS`. ``data`` is a registered data-set name
    (``"mnist-5k"``, the embedded 5,000 digits, or ``"mnist"``, ...); ``data_dir`` a
    folder of local IDX files; ``seed`` seeds every random choice; ``download``
    lets a full data set be fetched from its mirrors. ``note`` says how the data was
    chosen (e.g. why the textbook preset fell back to the embedded digits).
    """

    name: str = "quick"
    data: str = "mnist-5k"
    data_dir: str | None = None
    seed: int = 0
    download: bool = True
    note: str = ""

    def __post_init__(self) -> None:
        if self.name not in PRESETS:
            raise ConfigError(f"unknown preset {self.name!r} (allowed: {', '.join(PRESETS)})")

    @property
    def embedded(self) -> bool:
        """Whether the data is the embedded 5,000-image pool (sizes must fit in it)."""
        return self.data == "mnist-5k"

    def pick(self, table: Mapping[str, Any]) -> Any:
        """The entry of a ``{"smoke": ..., "quick": ..., "textbook": ...}`` table for this preset."""
        return table[self.name]


def as_preset(preset: Preset | str) -> Preset:
    if isinstance(preset, Preset):
        return preset
    if isinstance(preset, str):
        return Preset(name=preset)
    raise ConfigError(f"preset must be a name ({', '.join(PRESETS)}) or a Preset, got {preset!r}")


_OPS = (">=", "<=", "between")

# ---- watching checks as they are measured (the lab's live lessons) -----------------------------------
#: the listeners of the current context: each gets ``Check.to_dict()`` when a Check is made. Context-local,
#: so a lesson running in one thread (or asyncio task) never sees another's checks; empty by default, when
#: making a Check costs one ContextVar read.
_CHECK_LISTENERS: contextvars.ContextVar[tuple[Callable[[dict[str, Any]], None], ...]] = \
    contextvars.ContextVar("trainlab_check_listeners", default=())


@contextlib.contextmanager
def observe_checks(listener: Callable[[dict[str, Any]], None]) -> Iterator[None]:
    """Call ``listener(check.to_dict())`` (JSON-safe) for every :class:`Check` made inside the block, in the
    order they are made: the measurement has been taken when its Check exists, so a lesson can show it
    before the experiment returns. An experiment that remakes a check (same name, new threshold) reports
    it again; the Result's ``checks`` are the final word. Observing never changes what is measured: the
    listener gets a fresh dict, and an exception in it is logged, not raised into the experiment."""
    token = _CHECK_LISTENERS.set(_CHECK_LISTENERS.get() + (listener,))
    try:
        yield
    finally:
        _CHECK_LISTENERS.reset(token)


def _report_check(check: "Check") -> None:
    for listener in _CHECK_LISTENERS.get():
        try:
            listener(check.to_dict())
        except Exception:  # a broken observer must not change the experiment's course or its results
            logging.getLogger("trainlab.experiments").warning("a check observer failed", exc_info=True)


@dataclass(frozen=True)
class Check:
    """One measured claim: ``measured`` compared with ``threshold`` by ``op``.

    ``op`` is ``">="``, ``"<="`` or ``"between"`` (``threshold = (low, high)``, both
    inclusive). ``passed`` is computed here from the measurement, never given.
    ``explanation`` says why the threshold is where it is and, with numbers, what
    the measurement means (and why a claim did not hold, when it did not).
    """

    name: str
    claim: str
    measured: float
    threshold: float | tuple[float, float]
    op: str = ">="
    explanation: str = ""
    unit: str = ""

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise ConfigError(f"check op must be one of {', '.join(_OPS)}, got {self.op!r}")
        if self.op == "between":
            lo, hi = self.threshold  # type: ignore[misc]
            object.__setattr__(self, "threshold", (float(lo), float(hi)))
        else:
            object.__setattr__(self, "threshold", float(self.threshold))  # type: ignore[arg-type]
        object.__setattr__(self, "measured", float(self.measured))
        if _CHECK_LISTENERS.get():
            _report_check(self)

    @property
    def passed(self) -> bool:
        m = self.measured
        if not math.isfinite(m):
            return False
        if self.op == ">=":
            return m >= self.threshold  # type: ignore[operator]
        if self.op == "<=":
            return m <= self.threshold  # type: ignore[operator]
        lo, hi = self.threshold  # type: ignore[misc]
        return lo <= m <= hi

    def threshold_text(self) -> str:
        if self.op == "between":
            lo, hi = self.threshold  # type: ignore[misc]
            return f"between {_num(lo)} and {_num(hi)}{self.unit}"
        return f"{self.op} {_num(self.threshold)}{self.unit}"  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        thr = list(self.threshold) if isinstance(self.threshold, tuple) else self.threshold
        return {"name": self.name, "claim": self.claim, "op": self.op, "threshold": _finite(thr),
                "measured": _finite(self.measured), "passed": self.passed, "explanation": self.explanation,
                "unit": self.unit}


def _num(v: float) -> str:
    if v == 0 or 1e-3 <= abs(v) < 1e4:
        return f"{v:.4g}"
    return f"{v:.3g}"


def _finite(v: Any) -> Any:
    if isinstance(v, list):
        return [_finite(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


@dataclass
class Figure:
    """A matplotlib figure with the words a student needs to read it."""

    figure: Any
    title: str
    caption: str


@dataclass
class Result:
    """What one experiment measured.

    ``settings``: what was run (JSON-able); ``numbers``: the measurements
    (JSON-able: numbers, lists, small dicts); ``checks``: the claims, measured;
    ``arrays``: bigger data for the figures only (not written to results.json);
    ``summary``: the key number in one line for the report's table; ``seconds``:
    wall-clock time of ``run``; ``notes``: anything a reader must know (e.g. a
    fallback in the data).
    """

    name: str
    preset: str
    settings: dict[str, Any] = field(default_factory=dict)
    numbers: dict[str, Any] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    arrays: dict[str, Any] = field(default_factory=dict)
    summary: str = ""
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def check(self, name: str) -> Check:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(f"no check {name!r} (has: {', '.join(c.name for c in self.checks)})")


class Experiment:
    """One lecture-note claim, measured.

    Parameters
    ----------
    name:
        Registry key, e.g. ``"batchnorm"``.
    title, claim:
        What the report shows: a title and the course's claim in one or two sentences.
    source:
        Where the claim comes from (course note file and topic; the textbook script).
    docs:
        The docs page of its technique, without ``.md`` (``"normalization"``).
    run:
        ``run(preset: Preset) -> Result`` (data only).
    plot:
        ``plot(result) -> list[Figure]``.
    available:
        ``() -> (bool, reason)``: whether the technique it needs has landed.
    image_data:
        ``True`` when it reads the input shape from its data and so runs on any registered
        image data set (e.g. ``--data cifar10``); ``False`` (default): its nets are built for
        28x28 grayscale digits (MNIST, Fashion-MNIST, KMNIST, the embedded pool).
    """

    def __init__(self, *, name: str, title: str, claim: str, source: str, docs: str,
                 run: Callable[[Preset], Result] | None, plot: Callable[[Result], list[Figure]] | None,
                 available: Callable[[], tuple[bool, str]] | None = None, image_data: bool = False) -> None:
        self.name, self.title, self.claim, self.source, self.docs = name, title, claim, source, docs
        self._run, self._plot = run, plot
        self._available = available
        self.image_data = image_data

    def supports(self, preset: Preset) -> tuple[bool, str]:
        """``(True, "")`` when it can run on the preset's data set, else ``(False, why)``."""
        from trainlab.data import get_dataset_info

        shape = tuple(get_dataset_info(preset.data).image_shape)
        if shape == (1, 28, 28) or self.image_data:
            return True, ""
        return False, (f"its nets are built for 28x28 grayscale digits (784 inputs); {preset.data} images are "
                       f"{shape}")

    def available(self) -> tuple[bool, str]:
        """``(True, "")``, or ``(False, why)`` when its technique has not landed."""
        if self._available is not None:
            try:
                ok, why = self._available()
            except Exception as e:  # an optional package that fails to import is "not available"
                return False, f"{type(e).__name__}: {e}"
            if not ok:
                return False, why
        if self._run is None:
            return False, "this experiment has not been written yet"
        return True, ""

    def run(self, preset: Preset | str = "quick") -> Result:
        """Run at ``preset``; the Result's ``seconds`` is the wall-clock time of the run."""
        ok, why = self.available()
        if not ok:
            raise NotAvailable(f"experiment {self.name!r} is not available: {why}")
        p = as_preset(preset)
        t0 = time.perf_counter()
        result = self._run(p)  # type: ignore[misc]
        result.seconds = time.perf_counter() - t0
        result.name, result.preset = self.name, p.name
        result.settings.setdefault("preset", p.name)
        result.settings.setdefault("data", p.data)
        result.settings.setdefault("seed", p.seed)
        if p.note and p.note not in result.notes:
            result.notes.append(p.note)
        return result

    def plot(self, result: Result) -> list[Figure]:
        return [] if self._plot is None else self._plot(result)

    def __repr__(self) -> str:
        return f"Experiment({self.name!r})"


class Registry(Mapping[str, Experiment]):
    """Experiments by name, in report order.

    Built-in experiments are listed as ``name -> "module"`` and imported on first
    use; ``register`` adds one more (an :class:`Experiment`, or a module path whose
    ``EXPERIMENT`` attribute is one). A module that cannot be imported becomes an
    experiment that is "not available" with the import error as its reason, so a
    missing optional package never breaks the report.
    """

    def __init__(self) -> None:
        self._specs: dict[str, Experiment | str] = {}

    def register(self, name: str, experiment: Experiment | str, *, replace: bool = False) -> None:
        if name in self._specs and not replace:
            raise ConfigError(f"experiment {name!r} is already registered")
        self._specs[name] = experiment

    def _load(self, name: str) -> Experiment:
        spec = self._specs[name]
        if isinstance(spec, Experiment):
            return spec
        module, _, attr = spec.partition(":")
        try:
            exp = getattr(importlib.import_module(module), attr or "EXPERIMENT")
        except ImportError as e:
            reason = f"cannot import {module}: {e}"
            exp = Experiment(name=name, title=name, claim="", source="", docs="", run=None, plot=None,
                             available=lambda reason=reason: (False, reason))
        if exp.name != name:
            raise ConfigError(f"{spec} defines experiment {exp.name!r}, registered as {name!r}")
        self._specs[name] = exp
        return exp

    def __getitem__(self, name: str) -> Experiment:
        if name not in self._specs:
            raise KeyError(name)
        return self._load(name)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._specs))

    def __len__(self) -> int:
        return len(self._specs)

    def get_experiment(self, name: str) -> Experiment:
        """The experiment ``name``; an unknown name is one line listing the known ones."""
        if name not in self._specs:
            raise ConfigError(f"unknown experiment {name!r} (known: {', '.join(self._specs)})")
        return self._load(name)
