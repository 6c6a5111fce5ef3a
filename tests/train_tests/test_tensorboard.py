"""--tensorboard: event files read back with TensorBoard's own reader equal metrics.jsonl, the probe and the config."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("tensorboard")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.plugins.hparams import metadata as hp_metadata  # noqa: E402
from tensorboard.plugins.hparams.api_pb2 import Status  # noqa: E402

from trainlab import nn  # noqa: E402
from trainlab.cli import main  # noqa: E402
from trainlab.optim import SGD  # noqa: E402
from trainlab.population import Population  # noqa: E402
from trainlab.train import LayerProbe, Trainer  # noqa: E402
from trainlab.train._tensorboard import TensorBoardSink, metric_tag, safe_name  # noqa: E402

TINY = """seed = 0
[data]
train = 200
val = 100
test = 100
[model]
hidden = [16, 16]
activation = "tanh"
init_scale = [1.0, 0.1]
[optim]
lr = [0.1, 0.05]
[population]
size = 2
[train]
epochs = 3
batch_size = 50
"""


def load(d: Path) -> EventAccumulator:
    acc = EventAccumulator(str(d), size_guidance={"scalars": 0, "histograms": 0, "tensors": 0})
    acc.Reload()
    return acc


def hparams_of(acc: EventAccumulator) -> tuple[dict, list[str], int]:
    content = acc.PluginTagToContent("hparams")
    start = hp_metadata.parse_session_start_info_plugin_data(content[hp_metadata.SESSION_START_INFO_TAG])
    exp = hp_metadata.parse_experiment_plugin_data(content[hp_metadata.EXPERIMENT_TAG])
    end = hp_metadata.parse_session_end_info_plugin_data(content[hp_metadata.SESSION_END_INFO_TAG])
    hp = {}
    for k, v in start.hparams.items():
        kind = v.WhichOneof("kind")
        hp[k] = getattr(v, kind)
    return hp, [m.name.tag for m in exp.metric_infos], end.status


def test_train_writes_what_metrics_jsonl_holds(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY)
    tb = tmp_path / "tb"
    code = main(["train", str(cfg), "--out", str(tmp_path / "run"), "--tensorboard", str(tb), "--quiet"])
    assert code == 0, capsys.readouterr().err
    dirs = sorted(p for p in tb.iterdir())
    assert [p.name for p in dirs] == ["m00_init_scale=1,lr=0.1", "m01_init_scale=0.1,lr=0.05"]
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows
    for m, d in enumerate(dirs):
        acc = load(d)
        mine = [r for r in rows if r["member"] == m]
        for key in ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "batch_loss"):
            got = [(e.step, e.value) for e in acc.Scalars(metric_tag(key))]
            want = [(r["step"], r[key]) for r in mine]
            assert [s for s, _ in got] == [s for s, _ in want], key
            for (_, g), (_, w) in zip(got, want):
                assert g == pytest.approx(w, rel=1e-6, abs=1e-7), key  # float32 in the event file
        lrs = [e.value for e in acc.Scalars("lr")]
        assert lrs == pytest.approx([[0.1, 0.05][m]] * len(mine))
        hp, metrics, status = hparams_of(acc)
        assert hp["model.init_scale"] == pytest.approx([1.0, 0.1][m])
        assert hp["optim.lr"] == pytest.approx([0.1, 0.05][m])
        assert hp["seed"] == m  # population seeds: seed + member index
        assert {"val/acc", "val/loss", "train/loss"} <= set(metrics)
        assert status == Status.Value("STATUS_SUCCESS")
        tags = acc.Tags()
        assert {"weights/0.Linear", "activations/1.Tanh", "weights/4.Linear"} <= set(tags["histograms"])
        assert "grad_norm/0.Linear" in tags["scalars"] and "saturated/1.Tanh" in tags["scalars"]
        steps = [e.step for e in acc.Histograms("weights/0.Linear")]
        assert steps == [0, 12]  # step 0 and the end (12 steps < every=50)


def test_histograms_equal_the_probe_records(tmp_path):
    m = nn.Sequential([nn.Linear(None, 8), nn.ReLU(), nn.Linear(None, 3)])
    m.build((5,), Population(2, seed=0))
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(80, 5, generator=g), torch.randint(0, 3, (80,), generator=g)
    sink = TensorBoardSink(tmp_path, hparams=[{"a": 1}, {"a": 2}])
    probe = LayerProbe(every=3, batch=40, bins=7, sinks=[sink.probe])
    tr = Trainer(m, nn.SoftmaxCrossEntropy(), SGD(m.parameters(), lr=0.1), steps=7, batch_size=20,
                 sinks=[sink, probe], labels=["a=1", "a=2"])  # the probe after the sink: still complete
    tr.fit((x, y))
    records = list(probe.records)
    assert [r["step"] for r in records] == [0, 3, 6, 7]
    for k, name in enumerate(["m00_a=1", "m01_a=2"]):
        acc = load(tmp_path / name)
        for tag, idx, part in (("weights/0.Linear", 0, "weight"), ("activations/1.ReLU", 1, "act")):
            events = acc.Histograms(tag)
            assert [e.step for e in events] == [0, 3, 6]  # the end record came after the sink closed
            for e, r in zip(events, records):
                ent = r["layers"][idx][part]
                h = e.histogram_value
                assert list(h.bucket) == ent["hist"][k]
                assert list(h.bucket_limit) == pytest.approx(ent["edges"][1:])
                assert h.num == sum(ent["hist"][k])
                assert h.sum == pytest.approx(ent["mean"][k] * h.num, rel=1e-9, abs=1e-12)
        dead = [e.value for e in acc.Scalars("dead/1.ReLU")]
        assert dead == pytest.approx([r["layers"][1]["act"]["dead"][k] for r in records[:3]])


def test_a_diverged_member_ends_its_session_with_failure(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY.replace("lr = [0.1, 0.05]", "lr = [0.1, 1e6]").replace('activation = "tanh"',
                                                                                 'activation = "relu"'))
    tb = tmp_path / "tb"
    code = main(["train", str(cfg), "--out", str(tmp_path / "run"), "--tensorboard", str(tb), "--quiet"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["members"][1]["diverged"]
    statuses = [hparams_of(load(d))[2] for d in sorted(tb.iterdir())]
    assert statuses == [Status.Value("STATUS_SUCCESS"), Status.Value("STATUS_FAILURE")]


def test_missing_tensorboard_is_one_line_with_status_2(tmp_path, capsys, monkeypatch):
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY)
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard -> ImportError
    code = main(["train", str(cfg), "--out", str(tmp_path / "run"), "--tensorboard", str(tmp_path / "tb"),
                 "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "--tensorboard needs the 'tensorboard' package" in err and "pip install" in err
    assert not (tmp_path / "run").exists() and not (tmp_path / "tb").exists()
    from trainlab.search._cli import main as tune_main
    from trainlab.search.testing import tiny_search_config, write_toml

    path = write_toml(tmp_path / "s.toml", tiny_search_config(search={"trials": 1}))
    code = tune_main([str(path), "--out", str(tmp_path / "o"), "--quiet", "--tensorboard", str(tmp_path / "tb")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--tensorboard needs the 'tensorboard' package" in err
    assert not (tmp_path / "o").exists()


def test_a_file_as_dir_is_one_line_with_status_2(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY)
    (tmp_path / "tb").write_text("x")
    code = main(["train", str(cfg), "--out", str(tmp_path / "run"), "--tensorboard", str(tmp_path / "tb"),
                 "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "that is a file; give a folder" in err
    assert not (tmp_path / "run").exists()


def test_tune_writes_one_run_per_trial(tmp_path, capsys):
    from trainlab.search._cli import main as tune_main
    from trainlab.search.testing import tiny_search_config, write_toml

    path = write_toml(tmp_path / "s.toml", tiny_search_config(search={"trials": 3, "population": 3}))
    tb = tmp_path / "tb"
    code = tune_main([str(path), "--out", str(tmp_path / "o"), "--quiet", "--tensorboard", str(tb)])
    assert code == 0, capsys.readouterr().err
    import optuna

    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'o' / 'study.db'}")
    trials = {t.number: t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE}
    assert sorted(p.name for p in tb.iterdir()) == [f"trial-{n:04d}" for n in sorted(trials)]
    for n, t in trials.items():
        acc = load(tb / f"trial-{n:04d}")
        obj = acc.Scalars("objective")
        assert len(obj) == 1 and obj[0].value == pytest.approx(t.value, rel=1e-6)
        hp, metrics, status = hparams_of(acc)
        assert "objective" in metrics and status == Status.Value("STATUS_SUCCESS")
        for k, v in t.params.items():
            assert hp[k] == pytest.approx(v) if isinstance(v, float) else hp[k] == v
        curve = t.user_attrs["curves"]["val_acc"]
        assert [e.value for e in acc.Scalars("val/acc")] == pytest.approx(curve, rel=1e-5)


def test_safe_names():
    assert safe_name("lr=0.01, dropout=0.5") == "lr=0.01,dropout=0.5"
    assert safe_name("../x y/z") == ".._x_y_z"  # no separator: the member folder stays inside DIR
    assert metric_tag("val_acc") == "val/acc" and metric_tag("batch_loss") == "train/batch_loss"


def test_resume_writes_on_without_repeating_steps(tmp_path, capsys, monkeypatch):
    from trainlab.errors import Interrupted

    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY)
    tb, out = tmp_path / "tb", tmp_path / "run"
    real = Trainer.train_step

    def stop_at_6(self, xb, yb):
        loss = real(self, xb, yb)
        if self.step == 6:
            self.interrupt_requested = True  # like Ctrl-C: checkpoint at step 6, then stop
        return loss

    monkeypatch.setattr(Trainer, "train_step", stop_at_6)
    code = main(["train", str(cfg), "--out", str(out), "--tensorboard", str(tb), "--quiet"])
    assert code == 130, capsys.readouterr().err
    monkeypatch.undo()
    # TensorBoard reads a folder's event files in name order: <seconds>.<host>.<pid>.<counter>. A resume in
    # the same process and second would sort by the counter as text (".12" before ".8"); a real resume is a
    # later process, so let a second pass.
    time.sleep(1.1)
    code = main(["train", "--resume", str(out), "--tensorboard", str(tb), "--quiet"])
    assert code == 0, capsys.readouterr().err
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    for m, d in enumerate(sorted(tb.iterdir())):
        acc = load(d)
        got = [(e.step, e.value) for e in acc.Scalars("val/acc")]
        want = [(r["step"], r["val_acc"]) for r in rows if r["member"] == m]
        assert [s for s, _ in got] == [4, 8, 12] == [s for s, _ in want]
        assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-6)
        assert [e.step for e in acc.Histograms("weights/0.Linear")] == [0, 12]
        assert hparams_of(acc)[2] == Status.Value("STATUS_SUCCESS")


def test_member_hparams_are_what_differs_or_is_on():
    from trainlab.config import RunConfig
    from trainlab.train import member_hparams

    cfg = RunConfig.from_dict({"population": {"size": 2}, "seed": 7, "optim": {"name": "momentum", "lr": [0.1, 0.01]},
                               "model": {"dropout": [0.0, 0.5]}})
    hp = member_hparams(cfg)
    assert hp[0]["optim.lr"] == 0.1 and hp[1]["optim.lr"] == 0.01
    assert hp[0]["model.dropout"] == 0.0 and hp[1]["model.dropout"] == 0.5  # differs: shown for both
    assert hp[0]["optim.momentum"] == hp[1]["optim.momentum"] > 0  # on for everyone
    assert "augment.cutmix" not in hp[0] and "regularize.l1" not in hp[0]  # off for everyone
    assert [h["seed"] for h in hp] == [7, 8]
    assert member_hparams(cfg.to_dict()) == hp
