"""Issue 17, items 8 and 9: hints that point somewhere real, long values shortened, silent mistakes warned
about, and `reproduce --list` with measured run times (in-process CLI calls)."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainlab.cli import main

REPO = Path(__file__).resolve().parents[2]
SMALL = ["--quiet", "--set", "data.train=200", "--set", "data.val=100", "--set", "data.test=100",
         "--set", "train.epochs=1", "--set", "model.hidden=[8]"]


def test_train_has_the_data_dir_flag_the_download_hint_names(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    rc = main(["train", str(REPO / "examples" / "mlp.toml"), "--set", 'data.name="mnist"', "--data-dir", str(empty),
               "--out", str(tmp_path / "run"), *SMALL])
    err = capsys.readouterr().err
    assert rc == 2 and "unrecognized arguments" not in err and str(empty) in err, err


def test_a_100_kb_set_value_is_not_echoed_whole(tmp_path, capsys):
    rc = main(["train", str(REPO / "examples" / "mlp.toml"), "--set", "optim.name=" + "x" * 100_000,
               "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 2 and len(err) < 1000 and "characters]" in err and err.count("\n") == 1, len(err)


def test_an_empty_config_file_is_a_one_line_warning(tmp_path, capsys):
    from trainlab.config import load_config

    empty = tmp_path / "empty.toml"
    empty.write_text("# nothing yet\n")
    with pytest.warns(UserWarning, match="is empty"):
        load_config(empty)


def test_a_batch_larger_than_the_data_set_is_a_warning(tmp_path, capsys):
    from trainlab.cli import _one_line_warning

    with pytest.warns(UserWarning, match="batch_size 5000 is larger than the 200 training examples") as w:
        rc = main(["train", str(REPO / "examples" / "mlp.toml"), *SMALL, "--set", "train.batch_size=5000",
                   "--out", str(tmp_path / "r")])
    assert rc == 0
    line = _one_line_warning(w[0].message, UserWarning, "", 0)
    assert line.startswith("trainlab: warning: train.batch_size") and line.count("\n") == 1


def test_reproduce_list_gives_each_experiment_its_measured_run_time(capsys):
    from trainlab.experiments import REGISTRY
    from trainlab.report.cli import typical_run_times

    times = typical_run_times()
    assert set(times["seconds"]) == set(REGISTRY)  # measured for every experiment, none guessed
    assert main(["reproduce", "--list"]) == 0
    out = capsys.readouterr().out
    for name in REGISTRY:
        line = next(x for x in out.splitlines() if x.startswith(name + " "))
        assert " s " in line + " " or "< 1 s" in line, line
    assert f"measured {times['measured']}" in out


def test_the_readme_reproduce_example_picks_experiments_that_hold():
    import re

    from trainlab.experiments import REGISTRY

    readme = (REPO / "README.md").read_text()
    names = re.search(r"^trainlab reproduce ([a-z0-9 -]+?)\s+#", readme, re.M).group(1).split()
    assert names and all(n in REGISTRY for n in names)
    known = (REPO / "tests" / "experiments_tests" / "test_exp_quick.py").read_text()
    block = known[known.index("KNOWN_NOT_HOLDING"):known.index("}", known.index("KNOWN_NOT_HOLDING"))]
    assert not [n for n in names if f'("{n}",' in block], names  # none of them has a check known not to hold
