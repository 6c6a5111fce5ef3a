"""`trainlab tune` / `python -m trainlab.search`: one-line errors with exit status 2, output, --report."""

from __future__ import annotations

import json

import pytest

from trainlab.search._cli import TuneCommand, main
from trainlab.search.testing import tiny_search_config, write_toml


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("search, message", [
    ({"space": {"optim.lr": {"type": "float", "low": 0.0, "high": 1.0, "log": True}}},
     "trainlab: error: search.space.optim.lr: log scale needs low > 0, got low=0.0"),
    ({"strategy": "simulated-annealing"}, "trainlab: error: search.strategy must be one of"),
    ({"space": {"optim.lrr": {"type": "float", "low": 0.1, "high": 1.0}}},
     "trainlab: error: search.space.optim.lrr: not a config key (did you mean 'optim.lr'?)"),
])
def test_mistakes_are_one_line_with_status_2(tmp_path, capsys, search, message):
    cfg = tiny_search_config()
    cfg["search"].update(search)
    if "space" in search:
        cfg["search"]["space"] = search["space"]
    code, out, err = run(capsys, write_toml(tmp_path / "c.toml", cfg), "--out", tmp_path / "o")
    assert code == 2 and err.startswith(message) and err.count("\n") == 1 and "Traceback" not in err


def test_missing_file_and_missing_search_table(tmp_path, capsys):
    code, _, err = run(capsys, tmp_path / "nope.toml")
    assert code == 2 and "config file not found" in err
    path = write_toml(tmp_path / "plain.toml", {"train": {"epochs": 1}})
    code, _, err = run(capsys, path)
    assert code == 2 and "no [search] table" in err


def test_tune_prints_a_summary_and_json(tmp_path, capsys):
    path = write_toml(tmp_path / "c.toml", tiny_search_config(search={"trials": 2, "population": 2}))
    code, out, err = run(capsys, path, "--out", tmp_path / "o", "--trials", 3, "--seed", 5)
    assert code == 0
    assert "study 'c' (random): 3/3 trials with a result" in out and "test split, evaluated once" in out
    assert "browse it: optuna-dashboard sqlite:///" in out
    code, out, _ = run(capsys, path, "--out", tmp_path / "o", "--trials", 3, "--seed", 5, "--json")
    s = json.loads(out)
    assert code == 0 and s["trials"]["complete"] == 3 and s["seed"] == 5 and s["finished"]
    assert s["out_dir"] == str(tmp_path / "o")  # where the study's files are (issue 17: --json names it)
    code, out, _ = run(capsys, path, "--out", tmp_path / "o", "--seed", 5, "--report", "--json")
    assert code == 0 and json.loads(out)["trials"]["complete"] == 3
    code, _, err = run(capsys, path, "--out", tmp_path / "o", "--trials", 3, "--seed", 6)
    assert code == 2 and "was created with a different setup" in err and "seed: 5 -> 6" in err


def test_registered_in_the_main_cli():
    import trainlab.cli as cli

    assert any(isinstance(c, TuneCommand) for c in cli.all_commands())
    assert cli.build_parser().parse_args(["tune", "x.toml"])._command.name == "tune"
