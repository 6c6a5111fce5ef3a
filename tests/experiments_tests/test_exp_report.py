"""reproduce(): results.json against its documented schema, the HTML page, the CLI command."""

from __future__ import annotations

import argparse
import copy
import json
import re
from pathlib import Path

import pytest
import torch

from trainlab.errors import TrainlabError
from trainlab.experiments import REGISTRY, Experiment
from trainlab.report import (
    RESULTS_SCHEMA,
    consistency_errors,
    docs_link,
    reproduce,
    resolve_preset,
    schema_errors,
    validate_results,
)
from trainlab.report.cli import ReproduceCommand

REPO = Path(__file__).resolve().parents[2]
# Every built-in experiment has landed; two stand-ins registered here exercise the "not available" path.
PENDING = ["pending-a", "pending-b"]
NAMES = ["zero-init", "l1-vs-l2", "augmentation", "search", *PENDING]


def _pending(name):
    return Experiment(name=name, title=f"Stand-in {name}", claim="c", source="s", docs="engine", run=None, plot=None,
                      available=lambda: (False, f"{name}: its technique has not landed in trainlab yet"))


def _register_pending(mp):
    for name in PENDING:
        mp.setitem(REGISTRY._specs, name, _pending(name))  # appended: the report lists them last


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.MonkeyPatch.context() as mp:
            _register_pending(mp)
            out = tmp_path_factory.mktemp("reproduce")
            events = []
            rep = reproduce(NAMES, preset="smoke", out=out, progress=events.append)
    finally:
        torch.set_num_threads(before)
    rep.events = events
    return rep


@pytest.fixture
def results(report):
    return json.loads(report.json_path.read_text())


def test_results_json_follows_the_documented_schema(results):
    validate_results(results)
    assert schema_errors(results) == [] and consistency_errors(results) == []
    assert results["preset"] == "smoke" and results["data"] == "mnist-5k" and results["complete"] is True
    assert [e["name"] for e in results["experiments"]] == NAMES
    s = results["summary"]
    assert s["experiments"] == len(NAMES) and s["not_available"] == len(PENDING)
    assert s["checks"] == sum(len(e["checks"]) for e in results["experiments"])


def test_each_check_records_name_threshold_measured_and_verdict(results):
    for e in results["experiments"]:
        if e["status"] in ("held", "did not hold"):
            assert e["seconds"] > 0 and e["settings"]["preset"] == "smoke" and e["numbers"]
            for c in e["checks"]:
                assert set(c) == {"name", "claim", "op", "threshold", "measured", "passed", "explanation", "unit"}
        else:
            assert e["status"] == "not available" and e["reason"] and e["checks"] == []


def test_the_documented_schema_is_the_one_in_the_code():
    """docs/results-schema.md shows the schema; it must be the code's, field for field."""
    doc = (REPO / "docs" / "results-schema.md").read_text()
    block = re.search(r"```json\n(.*?)\n```", doc, re.S)
    assert block, "docs/results-schema.md must contain the JSON schema in a ```json block"
    assert json.loads(block.group(1)) == json.loads(json.dumps(RESULTS_SCHEMA))


@pytest.mark.parametrize("mutate, problem", [
    (lambda r: r.pop("preset"), "missing required field 'preset'"),
    (lambda r: r.update(preset="fast"), "must be one of"),
    (lambda r: r["experiments"][0].update(status="passed"), "must be one of"),
    (lambda r: r["experiments"][0]["checks"][0].update(measured="0.5"), "must be of type number or null"),
    (lambda r: r["experiments"][0]["checks"][0].update(extra=1), "unexpected field 'extra'"),
    (lambda r: r["experiments"][0].pop("checks"), "missing required field 'checks'"),
    (lambda r: r.update(seconds=-1), "must be >= 0"),
])
def test_schema_violations_are_reported(results, mutate, problem):
    bad = copy.deepcopy(results)
    mutate(bad)
    errors = schema_errors(bad)
    assert any(problem in e for e in errors), errors
    with pytest.raises(ValueError, match="does not follow the schema"):
        validate_results(bad)


def test_inconsistent_verdicts_are_reported(results):
    bad = copy.deepcopy(results)
    c = bad["experiments"][0]["checks"][0]
    c["passed"] = not c["passed"]
    assert any("does not follow from measured" in e for e in consistency_errors(bad))
    bad = copy.deepcopy(results)
    bad["summary"]["held"] += 1
    assert any("$.summary.held" in e for e in consistency_errors(bad))


def test_report_html_is_one_self_contained_file(report, results):
    text = report.html_path.read_text()
    assert text.startswith("<!doctype html>")
    assert '<meta name="viewport"' in text
    assert "<script" not in text
    # no external resource: every src is inline data, no stylesheet link
    assert all(src.startswith("data:") for src in re.findall(r'src="([^"]*)"', text))
    assert '<link rel="stylesheet"' not in text and "@import" not in text
    n_fig = sum(len(e["figures"]) for e in results["experiments"])
    assert text.count('<img src="data:image/png;base64,') == n_fig > 0
    assert text.count('<a class="more" href="') == n_fig  # every caption links to its technique's docs page
    # the summary table comes first: one row per experiment, with its verdict and key number
    assert text.index('id="summary"') < text.index('class="exp"')
    for e in results["experiments"]:
        assert f'href="#{e["name"]}"' in text and f'id="{e["name"]}"' in text
    assert text.count("not available") >= 2
    # every figure's caption is on the page
    for e in results["experiments"]:
        for f in e["figures"]:
            assert f["caption"][:60].replace("'", "&#x27;").replace('"', "&quot;") in text


def test_docs_links_point_at_the_technique_pages(results, report, tmp_path):
    for e in results["experiments"]:
        target = (report.html_path.parent / e["docs"]).resolve()
        assert target.parent == (REPO / "docs").resolve() and target.suffix == ".md"
    assert docs_link("init", tmp_path, "https://example.org/trainlab/docs/") == \
        "https://example.org/trainlab/docs/init.md"


def test_progress_reports_every_experiment(report):
    kinds = [(ev.kind, ev.name) for ev in report.events]
    assert ("skip", "pending-a") in kinds and ("skip", "pending-b") in kinds
    assert ("start", "zero-init") in kinds and ("done", "zero-init") in kinds
    assert ("done", "augmentation") in kinds and ("done", "search") in kinds
    done = [ev for ev in report.events if ev.kind == "done"]
    assert all(ev.total == len(NAMES) and ev.seconds > 0 for ev in done)


def test_textbook_preset_falls_back_to_the_embedded_digits_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINLAB_CACHE", str(tmp_path))  # no cached full MNIST
    p = resolve_preset("textbook", data_dir=str(tmp_path))
    assert p.data == "mnist-5k" and "full MNIST is not available" in p.note
    assert resolve_preset("quick").data == "mnist-5k"
    with pytest.raises(TrainlabError, match="unknown"):
        resolve_preset("quick", data="mnist-7k")


def _parse(argv):
    cmd = ReproduceCommand()
    parser = argparse.ArgumentParser(prog="trainlab reproduce")
    cmd.add_arguments(parser)
    return cmd, parser.parse_args(argv)


def test_cli_unknown_name_is_one_line_listing_the_names(tmp_path):
    cmd, args = _parse(["batch-norm", "--out", str(tmp_path)])
    with pytest.raises(TrainlabError) as e:
        cmd.run(args)
    assert "\n" not in str(e.value) and "'batch-norm'" in str(e.value) and "batchnorm" in str(e.value)
    assert not (tmp_path / "results.json").exists()


def test_cli_runs_and_writes_both_files(tmp_path, capsys):
    before = torch.get_num_threads()
    try:
        cmd, args = _parse(["augmentation", "zero-init", "--preset", "smoke", "--out", str(tmp_path), "--json",
                            "--threads", "1"])
        assert cmd.run(args) == 0
    finally:
        torch.set_num_threads(before)
    out = json.loads(capsys.readouterr().out)
    assert out["summary"]["experiments"] == 2
    validate_results(json.loads((tmp_path / "results.json").read_text()))
    assert (tmp_path / "report.html").stat().st_size > 10_000


def test_cli_list(capsys, monkeypatch):
    _register_pending(monkeypatch)
    cmd, args = _parse(["--list"])
    assert cmd.run(args) == 0
    header, *lines = capsys.readouterr().out.splitlines()
    assert header.startswith("experiment") and "typical time" in header  # the measured run times' column
    assert len(lines) == len(REGISTRY) and lines[0].startswith("activations")
    assert [n for n in PENDING if any(line.startswith(n) and "not available" in line for line in lines)] == PENDING


def test_cli_is_registered_in_the_main_parser(capsys):
    """ReproduceCommand is registered in trainlab.cli: `trainlab reproduce` works end to end."""
    from trainlab import cli

    assert cli.main(["reproduce", "--list"]) == 0
    assert cli.main(["reproduce", "no-such-experiment"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("trainlab: error: unknown experiment 'no-such-experiment'")
