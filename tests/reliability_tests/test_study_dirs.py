"""Issue 17, item 1 for ``tune``: a study's ``--out`` must not mix into a train run.

``trainlab tune CFG --out DIR`` writes ``summary.json``, ``curves.png``, ``trials.csv``, ``best/`` ...
into DIR. Pointed at a finished ``train`` run it overwrote that run's ``summary.json`` and
``curves.png`` and left a study beside the run's model (found auditing issue 17; exit 0). Now it is
one line, exit 2, the run untouched; an existing study directory is still rerun (the resume of a study).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainlab.cli import main
from trainlab.search.testing import tiny_search_config, write_toml

REPO = Path(__file__).resolve().parents[2]
SMALL = ["--quiet", "--set", "data.train=100", "--set", "data.val=100", "--set", "data.test=100",
         "--set", "train.epochs=1", "--set", "model.hidden=[8]"]


def _snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def train_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("t") / "run"
    assert main(["train", str(REPO / "examples" / "mlp.toml"), *SMALL, "--out", str(run)]) == 0
    return run


@pytest.fixture(autouse=True)
def _no_study_figures(monkeypatch):
    """The study's figures are most of a tiny study's time and not what is tested here."""
    from trainlab.search import _plots

    monkeypatch.setattr(_plots, "draw_all", lambda *a, **k: {})


@pytest.fixture(scope="module")
def tune_cfg(tmp_path_factory) -> Path:
    cfg = tiny_search_config(search={"trials": 2, "population": 2})
    cfg["train"]["epochs"] = 1
    return write_toml(tmp_path_factory.mktemp("c") / "tune.toml", cfg)


@pytest.mark.parametrize("report", [False, True], ids=["tune", "tune --report"])
def test_tune_into_a_train_run_is_refused_and_the_run_is_untouched(train_run, tune_cfg, capsys, report):
    before = _snapshot(train_run)
    rc = main(["tune", str(tune_cfg), "--out", str(train_run), "--quiet", *(["--report", "--trials", "2"]
                                                                            if report else [])])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1, err
    assert err.startswith("trainlab: error: ") and str(train_run) in err and "train run" in err, err
    assert _snapshot(train_run) == before, "tune wrote into the train run"


def test_tune_into_a_foreign_summary_is_refused(tmp_path, tune_cfg, capsys):
    d = tmp_path / "mine"
    d.mkdir()
    (d / "summary.json").write_text('{"my": "numbers"}')
    assert main(["tune", str(tune_cfg), "--out", str(d), "--quiet"]) == 2
    assert "summary.json" in capsys.readouterr().err
    assert (d / "summary.json").read_text() == '{"my": "numbers"}' and not (d / "study.db").exists()


def test_a_study_directory_is_still_rerun_and_train_refuses_it(tmp_path, tune_cfg, capsys):
    out = tmp_path / "study"
    assert main(["tune", str(tune_cfg), "--out", str(out), "--quiet"]) == 0
    assert main(["tune", str(tune_cfg), "--out", str(out), "--quiet"]) == 0  # a rerun: the same study
    assert json.loads((out / "summary.json").read_text())["trials"]["complete"] == 2
    capsys.readouterr()
    assert main(["train", str(REPO / "examples" / "mlp.toml"), *SMALL, "--out", str(out)]) == 2
    assert str(out) in capsys.readouterr().err
