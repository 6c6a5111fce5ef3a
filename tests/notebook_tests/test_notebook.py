"""Jupyter: examples/quickstart.ipynb runs top to bottom in a headless kernel, and the views it
shows (live curves, History and TuneResult as HTML) are there; the views work outside a kernel too."""

from __future__ import annotations

import json
import os
from pathlib import Path
import sys

import pytest
import torch

from trainlab import Population, nn
from trainlab.optim import SGD
from trainlab.train import Trainer

ROOT = Path(__file__).resolve().parents[2]


def _kernel(tmp_path: Path, monkeypatch) -> str:
    """A kernelspec for *this* interpreter (the venv's), found first through JUPYTER_PATH.

    Without it, ``python3`` could resolve to a system-wide kernelspec with another Python."""
    spec = tmp_path / "jupyter" / "kernels" / "trainlab-test"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "trainlab test", "language": "python",
        "env": {"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
                "MPLBACKEND": "module://matplotlib_inline.backend_inline"}}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return "trainlab-test"


@pytest.mark.slow
def test_quickstart_notebook_runs_headless(tmp_path, monkeypatch):
    # in the dev extra (scripts/setup.sh installs them): a missing one is a set-up error, not a skip
    import nbclient
    import nbformat
    name = _kernel(tmp_path, monkeypatch)
    nb = nbformat.read(ROOT / "examples" / "quickstart.ipynb", as_version=4)
    client = nbclient.NotebookClient(nb, timeout=240, kernel_name=name,
                                     resources={"metadata": {"path": str(ROOT / "examples")}})
    client.execute()  # raises CellExecutionError, with the traceback, if any cell fails
    code = [c for c in nb.cells if c.cell_type == "code"]
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    # 1. training with live=True: a notebook progress bar (a widget) and the curves, redrawn in place
    train = code[0].outputs
    kinds = [set(o.get("data", {})) for o in train]
    assert any("application/vnd.jupyter.widget-view+json" in k for k in kinds), kinds
    assert any("image/png" in k for k in kinds), kinds
    # 2. the History as a table naming the members by their learning rates
    html = code[1].outputs[0]["data"]["text/html"]
    assert "<table" in html and all(f"lr={v}" in html for v in ("0.005", "0.05", "0.5"))
    # 3. the figure
    assert any("image/png" in o.get("data", {}) for o in code[2].outputs)
    # 4. the search result: the top trials and the scatter
    html = code[3].outputs[0]["data"]["text/html"]
    assert "<table" in html and "val_acc" in html and "data:image/png;base64," in html


def _trainer(**kw) -> Trainer:
    model = nn.Sequential([nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2)])
    model.build((4,), Population(2, seed=0))
    return Trainer(model, nn.SoftmaxCrossEntropy(), SGD(model.parameters(), lr=[0.1, 0.3]), epochs=2, batch_size=20,
                   labels=["lr=0.1", "lr=0.3"], **kw)


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(80, 4, generator=g)
    return x, (x[:, 0] > 0).long()


def test_live_curves_outside_jupyter_writes_the_figure_file(tmp_path):
    from trainlab.notebook import LiveCurves

    live = LiveCurves(path=tmp_path / "live.png")
    _trainer(sinks=[live]).fit(_data(), val=_data())
    assert live.redraws == 2 and (tmp_path / "live.png").read_bytes()[:4] == b"\x89PNG"


def test_live_true_outside_jupyter_falls_back_to_console_lines(capsys):
    _trainer(live=True).fit(_data(), val=_data())
    out = capsys.readouterr().out
    assert out.count("epoch ") == 2 and "lr=0.3" in out


def test_history_html_tables():
    h = _trainer().fit(_data(), val=_data())
    html = h._repr_html_()
    assert html.count("<tr>") == 3 and "lr=0.1" in html and "best_epoch" in html  # a head row + one per member
    one = Trainer(*_single(), epochs=3, batch_size=20).fit(_data(), val=_data())
    html = one._repr_html_()
    assert html.count("<tr>") == 4 and "val_acc" in html  # a head row + one per epoch
    assert "<tr><td>1</td><td>4</td>" in html and "<td>3</td>" in html  # epochs (and steps) are integers


def _single():
    model = nn.Sequential([nn.Linear(4, 2)])
    model.build((4,), Population(1, seed=0))
    return model, nn.SoftmaxCrossEntropy(), SGD(model.parameters(), lr=0.1)


def test_tune_result_html_without_files():
    from trainlab.notebook import tune_result_html
    from trainlab.search._tuner import TuneResult

    trials = [{"number": i, "state": "COMPLETE", "value": 0.5 + 0.1 * i, "optim.lr": 10.0 ** -i,
               "optim.weight_decay": 1e-5 * (i + 1), "counts": True} for i in range(4)]
    top = [{"number": t["number"], "value": t["value"], "params": {"optim.lr": t["optim.lr"]}}
           for t in sorted(trials, key=lambda t: -t["value"])]
    r = TuneResult(study="s", storage="memory", finished=True, best=None, test=None, counts={},
                   summary={"study": "s", "metric": "val_acc", "direction": "maximize", "top": top,
                            "trials": {"complete": 4}}, trials=trials)
    html = tune_result_html(r, k=2)
    assert r._repr_html_().count("<tr>") == 5  # all 4 within the default top 10
    assert html.count("<tr>") == 3 and "data:image/png;base64," in html and "optim.lr" in html
