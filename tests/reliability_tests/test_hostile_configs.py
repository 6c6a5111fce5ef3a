"""Property-based: hostile configs end in a one-line error (exit 2) or a finished run -- never a
traceback, a hang, or an unfinished directory that looks finished."""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path
import urllib.error
import urllib.request

from hypothesis import HealthCheck, given, settings, strategies as st
import pytest
import tomli_w

from trainlab.cli import main
from trainlab.config import SCHEMA, Key

# A tiny base run (a few seconds): every example mutates it.
BASE = {"seed": 0, "data": {"train": 40, "val": 20, "test": 20, "download": False},
        "model": {"hidden": [4]}, "train": {"steps": 2, "eval_every": 2, "batch_size": 20}}


def _keys(schema, prefix=""):
    for k, v in schema.items():
        if isinstance(v, dict):
            yield from _keys(v, prefix + k + ".")
        else:
            yield prefix + k, v


KEYS = dict(_keys(SCHEMA))
# Keys whose valid huge values only make a legitimately long run (not a fault): bounded here.
LONG = {"train.steps": 4, "train.epochs": 10 ** 9, "data.train": 200, "data.val": 200, "data.test": 200,
        "population.size": 4, "train.eval_every": 10 ** 9}

hostile_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**12, 10**12), st.sampled_from([0, -1, 1, 2, 10**9, 10**18]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([float("nan"), float("inf"), -0.0, 1e308]),
    st.text(max_size=12), st.sampled_from(["", "relu", "sgd", "mnist", "ünïcødé/路径", "../..", "cuda", "float16"]),
)
hostile = st.recursive(hostile_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                                 st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                       max_leaves=6)


def _valid_for(key: str, spec: Key):
    """Values of the right type and range (so some runs train)."""
    if spec.choices:
        return st.sampled_from(spec.choices)
    if spec.kind == "bool":
        return st.booleans()
    if spec.kind in ("int", "float"):
        lo = spec.low if spec.low is not None else -1e3
        hi = min(spec.high if spec.high is not None else 1e3, LONG.get(key, 1e3))
        if spec.kind == "int":
            return st.integers(int(math.ceil(lo)), int(hi))
        return st.floats(lo, hi, allow_nan=False, exclude_min=not spec.low_inclusive, exclude_max=not spec.high_inclusive)
    if spec.kind == "int_list":
        return st.lists(st.integers(1, 8), max_size=3)
    return hostile


def _set(cfg: dict, dotted: str, value) -> None:
    node = cfg
    *parents, last = dotted.split(".")
    for p in parents:
        node = node.setdefault(p, {}) if isinstance(node.get(p, {}), dict) else node
    node[last] = value


mutation = st.one_of(
    st.tuples(st.sampled_from(sorted(KEYS)), hostile),
    st.sampled_from(sorted(KEYS)).flatmap(lambda k: st.tuples(st.just(k), _valid_for(k, KEYS[k]))),
    st.tuples(st.sampled_from(["bogus", "optim.lrr", "model.layer", "train.epoch", "ünï.cødé"]), hostile),
)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*a, **k):
        raise urllib.error.URLError("no network in this test")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(mutations=st.lists(mutation, min_size=1, max_size=3), unicode_dir=st.booleans())
def test_hostile_config_is_an_error_or_a_finished_run(tmp_path_factory, mutations, unicode_dir):
    import copy

    cfg = copy.deepcopy(BASE)
    for key, value in mutations:
        _set(cfg, key, value)
    root = tmp_path_factory.mktemp("hostile")
    out = root / ("rün ✓ 路径" if unicode_dir else "run")
    path = root / "c.toml"
    try:
        path.write_text(tomli_w.dumps(cfg))
    except (TypeError, ValueError):  # not representable in TOML (None, NaN keys...): write raw text instead
        path.write_text(json.dumps(cfg, default=str))
    err, outp = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(outp):
        code = main(["train", str(path), "--out", str(out), "--quiet"])  # any exception escaping = a bug
    stderr = err.getvalue()
    assert "Traceback" not in stderr
    if code == 0:
        summary = json.loads((out / "summary.json").read_text())
        assert summary["finished"] is True
    else:
        assert code == 2, stderr
        errors = [line for line in stderr.splitlines() if line.startswith("trainlab: error: ")]
        assert len(errors) == 1, stderr
        assert not (out / "summary.json").exists()  # never mistaken for a finished run


@pytest.mark.parametrize("hidden, members", [([50_000], 64), ([1000], 4096)])
def test_absurd_width_is_a_clear_error_not_an_oom(tmp_path, hidden, members):
    path = tmp_path / "c.toml"
    cfg = {**BASE, "model": {"hidden": hidden}, "population": {"size": members}}
    path.write_text(tomli_w.dumps(cfg))
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["train", str(path), "--out", str(tmp_path / "o"), "--quiet"])
    assert code == 2
    assert "more than a quarter of this machine's" in err.getvalue()
