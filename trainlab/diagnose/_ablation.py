"""Attribution by ablation: which difference from the recipe's reduced config costs the accuracy.

When the config as given does worse than it should (a step failed, or the refined grid's
best member beats it), the doctor lists every difference between the config and the
recipe's reduced version (:func:`differences`): each regularizer, dropout, noise, each
augmentation op, label smoothing, the normalization, the batch size (x4 and /4), the
preprocessing, the initialization and its scale, the learning rate (the LR range test's
value), and the planted data faults. :func:`measure` trains the config as given, the
config with each difference undone (one member each), and the config with all of them
undone, briefly and side by side with the same seed (same initial weights, same batches,
same dropout masks). Members whose undo changes only per-member keys (rates, penalties,
dropout, augmentation strengths) train as *one* population; an undo of a structural key
(batch size, normalization, preprocessing, init name, the data) cannot share a
population with the others -- a population has one batch size, one architecture and one
data set -- so each such undo is one more small run (P = 1), with the same seed and
epochs. Where no single undo recovers half of the gap, the best pairs are tried.

:func:`judge` (pure, unit-tested on plain numbers) names the difference whose removal
recovers most of the gap, or says that none recovers half and shows the table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
import itertools
import json
import math
from typing import Any

import numpy as np

from trainlab.config import SCHEMA, Key, RunConfig, get_key, per_member_keys
from trainlab.diagnose._severity import Severity
from trainlab.diagnose._findings import Finding
from trainlab.errors import TrainlabError

__all__ = ["Difference", "differences", "measure", "judge", "with_recovered", "figures", "HALF", "override_text", "AT"]

_PER_MEMBER = set(per_member_keys()) - {"regularize.max_norm"}  # None vs a number cannot share a population


class AT:
    """Thresholds of the attribution."""

    # A gap smaller than this (validation accuracy, reduced config - config as given) is
    # noise: seeds of the healthy config differ by 0.005-0.01 after 3 epochs.
    MIN_GAP = 0.02
    # A single undo that recovers at least half of the gap is *the* cause (the issue's
    # criterion); below, the doctor says no single change explains it.
    HALF = 0.5
    # A pair "interacts" when it recovers this much more than its two singles together.
    INTERACTION = 0.2


HALF = AT.HALF


@dataclass
class Difference:
    """One difference from the reduced config: a name and the overrides that undo it."""

    name: str
    overrides: dict[str, Any]
    kind: str = "setting"

    @property
    def structural(self) -> bool:
        return any(k not in _PER_MEMBER for k in self.overrides)


def override_text(key: str, value: Any) -> str:
    """``key=value`` as ``--set`` reads it (TOML literal)."""
    if isinstance(value, bool):
        return f"{key}={'true' if value else 'false'}"
    if isinstance(value, str):
        return f"{key}={json.dumps(value)}"
    if isinstance(value, float):
        return f"{key}={value!r}"
    return f"{key}={json.dumps(value)}"


def _on(v: Any) -> bool:
    if isinstance(v, list):
        return any(_on(x) for x in v)
    if isinstance(v, bool):
        return v
    return v is not None and v != 0


def differences(config: RunConfig, *, lr: float | None = None, batch_sizes: bool = True,
                extra: Sequence[Difference] = ()) -> list[Difference]:
    """Every difference between ``config`` (one member) and the recipe's reduced version.

    ``lr``: the LR range test's (or the grid's) rate, tried when it differs from the
    config's by more than 1.5x. ``extra``: further undos (the data checks' fixes).
    """
    cfg = config.to_dict()  # plain values (lists, not tuples), compared with the schema's defaults
    out: list[Difference] = []
    reg = {"optim.weight_decay": ("weight decay", 0.0), "regularize.l2": ("L2 penalty", 0.0),
           "regularize.l1": ("L1 penalty", 0.0), "regularize.max_norm": ("max-norm", None),
           "model.dropout": ("dropout", 0.0), "model.input_dropout": ("input dropout", 0.0),
           "model.input_noise": ("input noise", 0.0), "loss.label_smoothing": ("label smoothing", 0.0)}
    for key, (name, off) in reg.items():
        v = get_key(cfg, key)
        if _on(v):
            kind = "regularizer" if key.startswith(("optim", "regularize")) else "noise"
            out.append(Difference(f"{name} ({key} = {v})", {key: off if off is not None else 1e6}, kind))
    aug = SCHEMA["augment"]
    for name, k in aug.items():
        if name.endswith("_p") or name in ("force", "policy_magnitude") or not isinstance(k, Key):
            continue
        v = get_key(cfg, f"augment.{name}")
        if v != k.default and _on(v):
            out.append(Difference(f"augmentation {name} (augment.{name} = {v})", {f"augment.{name}": k.default},
                                  "augmentation"))
    m = cfg["model"]
    if m.get("norm") == "batchnorm":
        out.append(Difference("batch norm -> none", {"model.norm": "none"}, "normalization"))
        out.append(Difference("batch norm -> layer norm", {"model.norm": "layernorm"}, "normalization"))
    elif m.get("norm") == "layernorm":
        out.append(Difference("layer norm -> none", {"model.norm": "none"}, "normalization"))
    init = m.get("init")
    act = str(m.get("activation", "relu"))
    same = (init.startswith("he") and "relu" in act) or (init.startswith(("xavier", "glorot")) and act in
                                                          ("sigmoid", "tanh")) if isinstance(init, str) else False
    if isinstance(init, str) and init != "auto" and not same:  # "auto" picks He for ReLU, Xavier otherwise
        out.append(Difference(f"initialization {init} -> auto (He for ReLU, Xavier otherwise)", {"model.init": "auto"},
                              "initialization"))
    if m.get("init_scale", 1.0) != 1.0:
        out.append(Difference(f"init scale {m['init_scale']} -> 1", {"model.init_scale": 1.0}, "initialization"))
    d = cfg["data"]
    if d.get("preprocess") != "minmax":
        out.append(Difference(f"preprocessing {d.get('preprocess')} -> minmax", {"data.preprocess": "minmax"},
                              "preprocessing"))
    for key, off in (("label_noise", 0.0), ("imbalance", 1.0), ("leak", 0.0)):
        if d.get(key, off) != off:
            out.append(Difference(f"planted data fault data.{key} = {d[key]}", {f"data.{key}": off}, "data"))
    cur = float(cfg["optim"]["lr"])
    if lr is not None and math.isfinite(lr) and lr > 0 and not (cur / 1.5 <= lr <= cur * 1.5):
        out.append(Difference(f"learning rate {cur:g} -> {lr:.3g} (the LR range test's)", {"optim.lr": float(f"{lr:.3g}")},
                              "learning rate"))
    if batch_sizes:
        bs = int(cfg["train"]["batch_size"])
        out.append(Difference(f"batch size {bs} -> {bs * 4}", {"train.batch_size": bs * 4}, "batch size"))
        if bs // 4 >= 2:  # batch norm needs two examples per batch
            out.append(Difference(f"batch size {bs} -> {bs // 4}", {"train.batch_size": bs // 4}, "batch size"))
    names = {tuple(sorted(x.overrides.items(), key=str)) for x in out}
    for e in extra:
        if tuple(sorted(e.overrides.items(), key=str)) not in names:
            out.append(e)
    return out


def _reducing(diffs: Sequence[Difference]) -> dict[str, Any]:
    """The union of the undos that move towards the reduced config: regularization, augmentation and data
    faults off, default preprocessing/init/normalization -- not the batch-size probes, the remedies, or the
    range test's rate (the *largest* steady rate; with other undos it can be far off)."""
    out: dict[str, Any] = {}
    for d in diffs:
        if d.kind in ("batch size", "remedy", "learning rate") or "layernorm" in str(d.overrides.get("model.norm", "")):
            continue
        out.update(d.overrides)
    return out


def measure(cfg: RunConfig, diffs: Sequence[Difference], *, train: Callable[[RunConfig, Any], np.ndarray],
            load: Callable[[RunConfig], Any], pairs: bool = True) -> dict[str, Any]:
    """Train the ablation and return its table (plain numbers).

    ``train(cfg, splits) -> scores`` trains a population config briefly and returns each
    member's score (best validation accuracy; NaN when it diverged); ``load(cfg)`` loads
    a config's data (called once per distinct ``[data]`` table).
    """
    members: list[tuple[str, dict[str, Any]]] = [("as given", {})]
    members += [(d.name, dict(d.overrides)) for d in diffs]
    union = _reducing(diffs)
    if union:
        members.append(("all undone (the reduced config)", union))
    cache: dict[str, Any] = {}  # data table -> splits, loaded once for the singles and the pairs
    scores = _run_members(cfg, members, train, load, cache)
    rows: list[dict[str, Any]] = [{"name": n, "overrides": [override_text(k, v) for k, v in o.items()], "score": s}
            for (n, o), s in zip(members, scores)]
    data: dict[str, Any] = {"rows": rows, "pairs": []}
    base = scores[0]
    top = max((s for s in scores[1:] if math.isfinite(s)), default=math.nan)
    data["as_given"] = base
    data["reduced"] = scores[-1] if union else math.nan
    ref = max(x for x in (data["reduced"], top) if math.isfinite(x)) if (math.isfinite(top) or
                                                                            math.isfinite(data["reduced"])) else math.nan
    data["reference"] = ref
    gap = ref - base if math.isfinite(ref) and math.isfinite(base) else (ref if math.isfinite(ref) else math.nan)
    data["gap"] = gap
    singles = [(r, d) for r, d in zip(rows[1:1 + len(diffs)], diffs)]
    if pairs and math.isfinite(gap) and gap > AT.MIN_GAP:
        best_rec = max(((r["score"] - (base if math.isfinite(base) else 0.0)) / gap for r, _ in singles
                        if math.isfinite(r["score"])), default=-math.inf)
        if best_rec < AT.HALF:
            # candidates: every undo but the batch-size probes and the remedies, best first (at most 5:
            # 10 pairs); ties keep the order of :func:`differences`
            ranked = sorted([(r, d) for r, d in singles if d.kind not in ("batch size", "remedy")],
                            key=lambda t: -(t[0]["score"] if math.isfinite(t[0]["score"]) else -1.0))[:5]
            combos = [(a, b) for a, b in itertools.combinations(ranked, 2)
                      if not set(a[1].overrides) & set(b[1].overrides)]
            if combos:
                pm = [(f"{a[1].name} + {b[1].name}", {**a[1].overrides, **b[1].overrides}) for a, b in combos]
                ps = _run_members(cfg, pm, train, load, cache)
                data["pairs"] = [{"name": n, "members": [a[0]["name"], b[0]["name"]],
                                  "overrides": [override_text(k, v) for k, v in o.items()], "score": s}
                                 for (n, o), s, (a, b) in zip(pm, ps, combos)]
    return data


def _run_members(cfg: RunConfig, members: Sequence[tuple[str, dict[str, Any]]],
                 train: Callable[[RunConfig, Any], np.ndarray], load: Callable[[RunConfig], Any],
                 splits_cache: dict[str, Any]) -> list[float]:
    groups: dict[str, list[int]] = {}
    for i, (_, o) in enumerate(members):
        struct = {k: v for k, v in o.items() if k not in _PER_MEMBER}
        groups.setdefault(json.dumps(struct, sort_keys=True, default=str), []).append(i)
    scores = [math.nan] * len(members)
    for sig, idx in groups.items():
        struct = json.loads(sig)
        base = cfg.replace(struct)
        keys = sorted({k for i in idx for k in members[i][1] if k in _PER_MEMBER})
        values = {k: [members[i][1].get(k, base.get(k)) for i in idx] for k in keys}
        pop = base.as_population(values, size=len(idx))
        dkey = json.dumps(base.data.as_dict(), sort_keys=True, default=str)
        if dkey not in splits_cache:
            splits_cache[dkey] = load(base)
        try:
            s = train(pop, splits_cache[dkey])
        except TrainlabError:  # an undo the engine refuses (e.g. a batch too small for BN): no score
            s = np.full(len(idx), math.nan)
        for j, i in enumerate(idx):
            scores[i] = float(s[j])
    return scores


def judge(data: Mapping[str, Any]) -> list[Finding]:
    """The cause (the undo that recovers most of the gap), or an honest "no single change" with the table."""
    rows = data["rows"]
    base, gap = data["as_given"], data["gap"]
    f: list[Finding] = []
    if not math.isfinite(gap) or gap <= AT.MIN_GAP:
        f.append(Finding("no_gap", Severity.INFO,
                         f"the ablation finds no gap to explain: the config as given scores {_a(base)}, the best undo "
                         f"{_a(data['reference'])}"))
        return f
    scored = with_recovered(data)
    rows = scored["rows"]
    singles = [r for r in rows[1:] if not r["name"].startswith("all undone")]
    ranked = sorted([r for r in singles if r["recovered"] is not None], key=lambda r: -r["recovered"])
    table = "; ".join(f"{r['name']}: {_a(r['score'])}" for r in ranked[:6])
    best = ranked[0] if ranked else None
    if best is not None and best["recovered"] >= AT.HALF:
        f.append(Finding("cause", Severity.FAIL,
                         f"the cause: {best['name']}. Undoing it alone takes the validation accuracy from {_a(base)} to "
                         f"{_a(best['score'])}, {best['recovered']:.0%} of the gap to {_a(data['reference'])} "
                         f"(all differences undone: {_a(data['reduced'])}; trained side by side, same seed)",
                         f"apply: {', '.join(best['overrides'])}",
                         {"recovered": best["recovered"], "score": best["score"], "as_given": base},
                         fix=_fixd(best, base)))
        for r in ranked[1:]:
            if r["recovered"] >= AT.HALF / 2:
                f.append(Finding("contributes", Severity.WARN,
                                 f"also: {r['name']} -- undoing it alone gives {_a(r['score'])} "
                                 f"({r['recovered']:.0%} of the gap)", f"apply: {', '.join(r['overrides'])}",
                                 {"recovered": r["recovered"], "score": r["score"]}, fix=_fixd(r, base)))
        return f
    pairs = sorted([p for p in scored["pairs"] if p["recovered"] is not None], key=lambda p: -p["recovered"])
    pr = pairs[0] if pairs else None
    if pr is not None and pr["recovered"] >= AT.HALF:
        singles_sum = sum(next((r["recovered"] or 0.0) for r in rows if r["name"] == n) for n in pr["members"])
        f.append(Finding("interacting_pair", Severity.FAIL,
                         f"no single change recovers half of the gap (best: {best['name'] if best else 'none'}, "
                         f"{(best['recovered'] if best else 0):.0%}), but undoing two together does: {pr['name']} takes "
                         f"the validation accuracy from {_a(base)} to {_a(pr['score'])} ({pr['recovered']:.0%} of the "
                         f"gap; the two alone: {singles_sum:.0%} together) -- each fault masks the other",
                         f"apply both: {', '.join(pr['overrides'])}",
                         {"recovered": pr["recovered"], "singles_recovered": singles_sum, "score": pr["score"],
                          "interaction": pr["recovered"] - singles_sum, "table": table},
                         fix=_fixd(pr, base)))
        return f
    f.append(Finding("no_single_cause", Severity.WARN,
                     f"no single change recovers half of the {gap:.3f} gap between the config as given ({_a(base)}) and "
                     f"the reduced config ({_a(data['reduced'])}); the ablation table (validation accuracy per undo): "
                     f"{table}" + (f"; best pair {pr['name']}: {_a(pr['score'])}" if pr else ""),
                     "the cause is spread over several settings: start from the reduced config and add them back one "
                     "at a time",
                     {"table": table},
                     fix=_fixd({"overrides": [r["overrides"] for r in rows if r["name"].startswith("all undone")][0],
                                "score": data["reduced"]}, base) if math.isfinite(data["reduced"]) else None))
    return f


def with_recovered(data: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of :func:`measure`'s table with each row's and pair's ``recovered`` share of the gap (``None``
    for a diverged row; no column when there is no gap to recover)."""
    out = dict(data)
    gap, base = data["gap"], data["as_given"]
    if not math.isfinite(gap) or gap <= AT.MIN_GAP:
        return out
    b0 = base if math.isfinite(base) else 0.0

    def rec(r: Mapping[str, Any]) -> dict[str, Any]:
        return {**r, "recovered": (r["score"] - b0) / gap if math.isfinite(r["score"]) else None}

    out["rows"] = [rec(r) for r in data["rows"]]
    out["pairs"] = [rec(p) for p in data.get("pairs", [])]
    return out


def _a(v: float | None) -> str:
    return "n/a (diverged)" if v is None or not math.isfinite(v) else f"{v:.3f}"


def _fixd(r: Mapping[str, Any], base: float) -> dict[str, Any]:
    # a config as given that diverged scores nothing: its gain is measured from 0
    return {"overrides": list(r["overrides"]), "val_acc": r["score"] if math.isfinite(r["score"]) else None,
            "baseline_val_acc": base if math.isfinite(base) else 0.0, "measured_by": "ablation"}


def figures(data: Mapping[str, Any]) -> dict[str, tuple[Any, str]]:
    """The ablation table as horizontal bars (validation accuracy per undo; the config as given dashed)."""
    import matplotlib.pyplot as plt

    rows = list(data["rows"]) + list(data.get("pairs", []))
    names = [r["name"][:60] for r in rows]
    vals = [r["score"] if math.isfinite(r["score"]) else 0.0 for r in rows]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(rows) + 1.2))
    ax.barh(range(len(rows)), vals, color=["0.5"] + ["C0"] * (len(rows) - 1))
    ax.set_yticks(range(len(rows)), names, fontsize=7)
    ax.invert_yaxis()
    if math.isfinite(data["as_given"]):
        ax.axvline(data["as_given"], ls="--", c="k", lw=0.8)
    ax.set_xlabel("best validation accuracy (brief training)")
    fig.tight_layout()
    return {"ablation": (fig, "Ablation: each bar is the config with one difference undone (all trained side by "
                         "side, same seed); grey: the config as given (dashed line).")}
