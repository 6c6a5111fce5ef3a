"""trainlab.metrics against sklearn.metrics (member by member) and hand-computed cases, and
``trainlab evaluate --metrics``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from trainlab.errors import ConfigError
from trainlab.metrics import (
    compute_metrics,
    confusion_matrix,
    macro_f1,
    parse_metrics,
    per_class_accuracy,
    plot_confusion,
    top_k_accuracy,
)

sk = pytest.importorskip("sklearn.metrics")

P, N, C = 3, 200, 6


def _scores(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, C, (N,), generator=g)
    y[y == 5] = 4  # class 5 never occurs in the labels ...
    s = torch.randn(P, N, C, generator=g, dtype=torch.float64)
    s[1] += 2.5 * torch.nn.functional.one_hot(y, C)  # members of different quality
    s[2] += 0.8 * torch.nn.functional.one_hot(y, C)
    return s, y


def test_confusion_matrix_matches_sklearn() -> None:
    s, y = _scores()
    cm = confusion_matrix(s, y, C)
    assert cm.shape == (P, C, C) and cm.dtype == torch.int64
    for i in range(P):
        ref = sk.confusion_matrix(y.numpy(), s[i].argmax(-1).numpy(), labels=list(range(C)))
        assert cm[i].tolist() == ref.tolist()
    assert torch.equal(confusion_matrix(s.argmax(-1), y, C), cm)  # labels in, same counts out


def test_per_class_accuracy_and_macro_f1_match_sklearn() -> None:
    s, y = _scores()
    cm = confusion_matrix(s, y, C)
    rec, f1 = per_class_accuracy(cm), macro_f1(cm)
    for i in range(P):
        pred = s[i].argmax(-1).numpy()
        ref_rec = sk.recall_score(y.numpy(), pred, labels=list(range(C)), average=None, zero_division=float("nan"))
        for a, b in zip(rec[i].tolist(), ref_rec.tolist()):
            assert (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-12)
        assert math.isnan(rec[i, 5])  # no examples of class 5
        assert math.isclose(float(f1[i]), sk.f1_score(y.numpy(), pred, average="macro"), rel_tol=1e-12)


@pytest.mark.parametrize("k", [1, 2, 5])
def test_top_k_matches_sklearn(k: int) -> None:
    s, y = _scores(1)
    acc = top_k_accuracy(s, y, k)
    for i in range(P):
        ref = sk.top_k_accuracy_score(y.numpy(), s[i].numpy(), k=k, labels=list(range(C)))
        assert math.isclose(float(acc[i]), ref, rel_tol=1e-12)
    assert torch.equal(top_k_accuracy(s, y, 1), (s.argmax(-1) == y).double().mean(1))


def test_hand_computed_case_and_per_member_labels() -> None:
    # 3 classes, 5 examples. truth 0 0 1 2 2, predictions 0 1 1 2 0.
    # TP = (1, 1, 1); FP = (1, 1, 0); FN = (1, 0, 1) -> F1 = 2/4, 2/3, 2/3 -> macro 11/18.
    pred = torch.tensor([[0, 1, 1, 2, 0]])
    y = torch.tensor([0, 0, 1, 2, 2])
    cm = confusion_matrix(pred, y, 3)
    assert cm[0].tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]
    assert math.isclose(float(macro_f1(cm)[0]), 11 / 18, rel_tol=1e-15)
    assert per_class_accuracy(cm)[0].tolist() == [0.5, 1.0, 0.5]
    both = confusion_matrix(torch.tensor([[0, 1, 1, 2, 0], [0, 0, 1, 2, 2]]), torch.stack([y, y]), 3)
    assert both[1].trace() == 5 and torch.equal(both[0], cm[0])


def test_parse_metrics_and_errors() -> None:
    spec = parse_metrics("top5, f1,confusion,top1")
    assert spec.top_k == (1, 5) and spec.f1 and spec.confusion and not spec.per_class
    with pytest.raises(ConfigError, match=r"--metrics: unknown metric 'f2' \(allowed: acc, topK"):
        parse_metrics("top5,f2")
    with pytest.raises(ConfigError, match="needs 1 <= k <= 6"):
        compute_metrics(*_scores(), parse_metrics("top7"))
    out = compute_metrics(*_scores(), parse_metrics("top2,per_class"))
    assert len(out["top2_acc"]) == P and out["per_class_acc"][0][5] is None


def test_confusion_figure() -> None:
    s, y = _scores()
    fig = plot_confusion(confusion_matrix(s, y, C))
    assert len([ax for ax in fig.axes if ax.get_title().startswith("member")]) == P


def test_evaluate_metrics_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from trainlab.cli import main
    from trainlab.config import load_config
    from trainlab.run import train_run

    run = tmp_path / "run"
    cfg = load_config(Path(__file__).resolve().parents[2] / "examples" / "mlp.toml",
                      ["train.epochs=1", "population.size=2", "model.hidden=[32]", "data.train=1000"])
    train_run(cfg, run, progress=False)
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json", "--metrics", "top5,f1,per_class,confusion"]) == 0
    res = json.loads(capsys.readouterr().out)
    rows = res["members"]
    assert len(rows) == 2 and all({"acc", "loss", "macro_f1", "member", "top5_acc"} <= set(row) for row in rows)
    for m, row in enumerate(rows):
        cm = torch.tensor(res["confusion"][m])
        assert int(cm.sum()) == res["examples"]
        assert math.isclose(float(cm.trace()) / res["examples"], row["acc"], rel_tol=1e-12)
        assert math.isclose(float(macro_f1(cm.unsqueeze(0))[0]), row["macro_f1"], rel_tol=1e-12)
        assert row["top5_acc"] >= row["acc"]
    assert Path(res["figure"]) == run / "confusion_test.png" and Path(res["figure"]).stat().st_size > 1000
    assert main(["evaluate", str(run), "--metrics", "top5,bogus"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "trainlab: error: --metrics: unknown metric 'bogus' (allowed: acc, topK (e.g. top5), f1, per_class, confusion)"]
