"""Every command is reachable from the one `trainlab` entry point, and bad input to each gets one line, exit 2."""

from __future__ import annotations

import pytest

from trainlab import cli


def test_all_commands_are_registered():
    names = [c.name for c in cli.all_commands()]
    assert names == ["train", "evaluate", "doctor", "tune", "reproduce", "lab"]


@pytest.mark.parametrize("argv", [
    ["train", "no/such/config.toml"],
    ["doctor", "no/such/config.toml"],
    ["tune", "no/such/search.toml"],
    ["reproduce", "no-such-experiment"],
    ["evaluate", "no/such/run"],
])
def test_bad_input_is_one_line_and_exit_2(argv, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("trainlab: error:"), err
