"""Members named by their settings (trainlab.labels) in every output: summary.json, metrics.jsonl,
history.json, the curves' legend, evaluate/ensemble output; figures: integer epoch ticks, one colour
per member, a colour key on every multi-series panel, titles that fit."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest

from trainlab.config import load_config
from trainlab.labels import _short_names, member_colors, member_labels
from trainlab.train import History

ROOT = Path(__file__).resolve().parents[2]


def cfg(*overrides: str):
    return load_config(ROOT / "examples" / "mlp.toml", list(overrides))


def test_labels_name_the_differing_settings():
    assert member_labels(cfg("population.size=3", "model.init_scale=[1, 0.1, 0.01]")) == [
        "init_scale=1", "init_scale=0.1", "init_scale=0.01"]
    assert member_labels(cfg("population.size=2", "optim.lr=[0.01, 0.1]", "model.dropout=[0.5, 0.5]")) == [
        "lr=0.01", "lr=0.1"]  # a per-member list whose values are all equal does not name anyone
    assert member_labels(cfg("population.size=2", "optim.lr=[0.01, 0.1]", "model.dropout=[0.5, 0.2]")) == [
        "dropout=0.5, lr=0.01", "dropout=0.2, lr=0.1"]
    assert member_labels(cfg("population.size=2", "optim.weight_decay=[0, 1e-5]")) == [
        "weight_decay=0", "weight_decay=1e-05"]


def test_labels_fall_back_to_seeds_then_to_the_index():
    assert member_labels(cfg("population.size=3", "seed=5")) == ["seed=5", "seed=6", "seed=7"]
    assert member_labels(cfg("population.size=2", "population.seeds=[3, 9]")) == ["seed=3", "seed=9"]
    assert member_labels(cfg("population.size=2", "population.seeds=[4, 4]")) == ["member 0", "member 1"]
    assert member_labels(cfg()) == ["seed=0"]


def test_short_names_grow_where_the_last_part_is_ambiguous():
    assert _short_names(["optim.lr", "model.dropout"]) == {"optim.lr": "lr", "model.dropout": "dropout"}
    assert _short_names(["a.noise", "b.noise"]) == {"a.noise": "a.noise", "b.noise": "b.noise"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    from trainlab.run import train_run

    out = tmp_path_factory.mktemp("labels") / "run"
    c = cfg("data.train=300", "data.val=100", "data.test=100", "train.epochs=3", "model.hidden=[16]",
            "population.size=3", "model.init_scale=[1, 0.1, 0.01]")
    train_run(c, out)
    return out


LABELS = ["init_scale=1", "init_scale=0.1", "init_scale=0.01"]


def test_every_output_file_names_the_members(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["member_labels"] == LABELS
    assert [m["member_label"] for m in summary["members"]] == LABELS
    assert all(isinstance(m["best_epoch"], int) for m in summary["members"])  # 3, not 3.0
    rows = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 9 and [r["member_label"] for r in rows[:3]] == LABELS
    assert all(r["member_label"] == LABELS[r["member"]] for r in rows)
    assert History.load(run_dir / "history.json").labels == LABELS


def test_evaluate_and_ensemble_output_name_the_members(run_dir):
    from trainlab.evaluate import evaluate_saved

    r = evaluate_saved(run_dir, split="test", ensemble="mean", members=[0, 1])
    assert [m["member_label"] for m in r["members"]] == LABELS
    assert r["ensemble"]["member_labels"] == LABELS[:2]


def _legend_texts(ax) -> list[str]:
    leg = ax.get_legend()
    return [t.get_text() for t in leg.get_texts()] if leg else []


def test_curves_legend_colours_and_integer_ticks(run_dir):
    h = History.load(run_dir / "history.json")
    fig = h.plot()
    ax_l, ax_a = fig.axes
    assert _legend_texts(ax_a) == [*LABELS, "train", "val"]
    colors = member_colors(3)
    lines = [l for l in ax_l.get_lines()]
    assert [tuple(l.get_color()) for l in lines[::2]] == [tuple(c) for c in colors]  # train, val per member
    fig.canvas.draw()
    for ax in (ax_l, ax_a):
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
    plt.close(fig)
    # one member alone keeps its colour and gets its name in the title
    fig = h.plot(members=[2])
    assert tuple(fig.axes[0].get_lines()[0].get_color()) == tuple(colors[2])
    assert "init_scale=0.01" in fig._suptitle.get_text()
    plt.close(fig)


def test_colours_are_fixed_per_member():
    assert member_colors(3) == member_colors(10)[:3]
    many = member_colors(32)
    assert len(set(many)) == 32


def test_lr_range_panel_has_a_colour_key_even_with_many_rates():
    from trainlab.diagnose._plots import plot_lr_range

    for n in (6, 30):
        lrs = np.logspace(-4, 0, n)
        T = 20
        S = np.linspace(2.3, 1.0, T)[:, None] * np.ones(n)
        res = SimpleNamespace(lrs=lrs, smoothed=S, losses=S, status=["steady"] * n, suggestion=1e-2)
        fig = plot_lr_range(res)
        ax_curves = fig.axes[0]
        has_legend = ax_curves.get_legend() is not None
        has_colorbar = any(ax.get_label() == "<colorbar>" for ax in fig.axes)
        assert has_legend or has_colorbar, n
        plt.close(fig)


def test_search_importance_title_fits():
    from trainlab.search._plots import importance

    imp = {"method": "fanova", "trials": 40, "importance": {
        "optim.lr": 0.6, "regularize.weight_decay_for_every_layer": 0.3, "model.init_scale": 0.1}}
    fig = importance(imp)
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    box = fig._suptitle.get_window_extent(r)
    W, H = fig.bbox.width, fig.bbox.height
    assert box.x0 >= 0 and box.x1 <= W and box.y1 <= H
    plt.close(fig)
