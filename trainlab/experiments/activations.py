"""Activation histograms: how the initial weight scale shapes every layer's outputs.

The textbook's ``weight_init_activation_histogram.py`` (Saito ch. 6.2): 1,000 random
inputs ``N(0, 1)`` of 100 features pass through 5 layers of 100 units (``z = a W``,
no bias), and each layer's outputs are histogrammed. Here the four weight scales are
the four members of one population (``init="normal"`` times a per-member
``init_scale``): std 1, std 0.01, "Xavier" in the textbook's sense (``1/sqrt(n)``,
``lecun_normal`` in trainlab) and He (``sqrt(2/n)``), with ``n = 100``; one forward
pass per activation function.

Course note 000 draws the same histograms for uniform draws as well, and for a linear
net (no activation function) next to the nonlinear ones. So a second population holds
the uniform draws of the same two variances: Xavier-uniform (``U(-a, a)``, ``a =
sqrt(6 / (n_in + n_out)) = sqrt(3/n)``, Glorot & Bengio 2010) and He-uniform (``a =
sqrt(6/n)``); and the identity is a fourth activation (the linear net).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from trainlab import nn
from trainlab.experiments._common import activation_outputs, tolist
from trainlab.experiments._core import Check, Experiment, Figure, Preset, Result
from trainlab.init import HeNormal, LecunNormal
from trainlab.population import Population

ACTIVATIONS = ("sigmoid", "tanh", "relu", "linear")
NORMAL_INITS = ("std 1", "std 0.01", "Xavier 1/sqrt(n)", "He sqrt(2/n)")
UNIFORM_INITS = ("Xavier uniform", "He uniform")
INITS = NORMAL_INITS + UNIFORM_INITS
_ACT = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU, "linear": nn.Identity}

SETTINGS = {
    "smoke": dict(inputs=200, layers=5, units=100, bins=30),
    "quick": dict(inputs=1000, layers=5, units=100, bins=30),
    "textbook": dict(inputs=1000, layers=5, units=100, bins=30),
}


def _range(act: str, values: list[torch.Tensor]) -> tuple[float, float]:
    """Histogram range that fits the activation: its image (sigmoid 0..1, tanh -1..1), or for
    ReLU 0 to the 99.5th percentile of the positive values of all layers (one weight scale)."""
    if act == "sigmoid":
        return 0.0, 1.0
    if act == "tanh":
        return -1.0, 1.0
    if act == "linear":  # symmetric, to the 99.5th percentile of |output| over the layers
        a = torch.cat([v.reshape(-1) for v in values]).double().abs()
        hi = float(torch.quantile(a[:: max(1, a.numel() // 100_000)], 0.995))
        return (-hi, hi) if hi > 0 else (-1.0, 1.0)
    pos = torch.cat([v[v > 0].reshape(-1) for v in values]).double()
    if pos.numel() == 0:
        return 0.0, 1.0
    hi = float(torch.quantile(pos[:: max(1, pos.numel() // 100_000)], 0.995))
    return 0.0, hi if hi > 0 else float(pos.max())


def run(preset: Preset) -> Result:
    s = dict(preset.pick(SETTINGS))
    n = s["units"]
    scales = [1.0, 0.01, LecunNormal().stddev((n, n)), HeNormal().stddev((n, n))]
    # U(-a, a) has std a / sqrt(3): Xavier-uniform's a = sqrt(6 / (n + n)) and He-uniform's a = sqrt(6 / n)
    bounds = [math.sqrt(6.0 / (n + n)), math.sqrt(6.0 / n)]
    g = torch.Generator().manual_seed(preset.seed)
    x = torch.randn(s["inputs"], n, generator=g)
    numbers: dict = {"init_std": dict(zip(INITS, scales + [b / math.sqrt(3.0) for b in bounds]))}
    arrays: dict = {}
    for act in ACTIVATIONS:
        parts = []
        for init, per_member in (("normal", scales), ("uniform", bounds)):
            layers = []
            for _ in range(s["layers"]):
                layers += [nn.Linear(n, n, init=init, init_scale=per_member, bias=False), _ACT[act]()]
            model = nn.Sequential(layers)
            model.build((n,), Population(len(per_member), seed=preset.seed))
            parts.append(activation_outputs(model, x))
        outs = [torch.cat(pair, dim=0) for pair in zip(*parts)]  # 5 x (P = 6, N, n)
        per = {}
        hist = np.zeros((len(INITS), s["layers"], s["bins"]))
        ranges = []
        for j, init in enumerate(INITS):
            lo, hi = _range(act, [o[j] for o in outs])
            ranges.append((lo, hi))
            rows = []
            for k, o in enumerate(outs):
                v = o[j].reshape(-1).double()
                if act == "relu":
                    zero = float((v == 0).double().mean())
                    counts = torch.histc(v[v > 0], bins=s["bins"], min=lo, max=hi) if zero < 1 else torch.zeros(s["bins"])
                    extra = {"zero_fraction": zero}
                elif act == "linear":
                    counts = torch.histc(v, bins=s["bins"], min=lo, max=hi)
                    extra = {}
                else:
                    counts = torch.histc(v, bins=s["bins"], min=lo, max=hi)
                    # within 0.02 of the asymptotes (sigmoid 0/1, tanh -1/1): derivative < ~0.04
                    edge = 0.02 if act == "sigmoid" else 0.04
                    sat = (v <= lo + edge) | (v >= hi - edge)
                    extra = {"saturated_fraction": float(sat.double().mean())}
                hist[j, k] = counts.numpy()
                rows.append({"mean": float(v.mean()), "std": float(v.std()), **extra})
            per[init] = rows
        numbers[act] = per
        arrays[act] = {"hist": hist, "ranges": ranges}

    sig, relu = numbers["sigmoid"], numbers["relu"]
    sat1 = float(np.mean([r["saturated_fraction"] for r in sig["std 1"]]))
    collapse_sig = max(r["std"] for r in sig["std 0.01"][1:])
    xavier_sig = min(r["std"] for r in sig["Xavier 1/sqrt(n)"])
    relu_small = relu["std 0.01"][-1]["std"] / relu["std 0.01"][0]["std"]
    he = relu["He sqrt(2/n)"]
    he_ratio = [r["std"] / he[0]["std"] for r in he]
    he_min, he_max = min(he_ratio), max(he_ratio)
    xav = relu["Xavier 1/sqrt(n)"]
    xavier_relu_last = xav[-1]["std"] / xav[0]["std"]
    he_zero = max(r["zero_fraction"] for r in he)
    numbers.update(sigmoid_std1_saturated=sat1, sigmoid_std001_max_std=collapse_sig,
                   sigmoid_xavier_min_std=xavier_sig, relu_std001_last_over_first=relu_small,
                   relu_he_std_ratio=he_ratio, relu_xavier_last_over_first=xavier_relu_last,
                   relu_he_max_zero_fraction=he_zero)
    checks = [
        # Half of all outputs within 0.02 of 0 or 1 is far from any spread-out
        # distribution (a uniform spread over (0, 1) puts 4% there); measured ~0.7.
        Check("sigmoid, std 1: outputs saturate at 0 and 1",
              "With weights of std 1, sigmoid outputs pile up at 0 and 1, where its derivative vanishes.",
              sat1, 0.5, ">=",
              f"Fraction of sigmoid outputs within 0.02 of 0 or 1, averaged over the 5 layers: {sat1:.2f} "
              f"(a uniform spread over (0, 1) would give 0.04). Gradients through these units are ~0."),
        # Layers 2-5: an std below 0.02 means every unit outputs 0.5 +- a few hundredths,
        # for every input; Xavier keeps an std of ~0.2. Measured ~0.013.
        Check("sigmoid, std 0.01: outputs collapse to 0.5",
              "With weights of std 0.01, every unit outputs almost the same value (0.5): the layers lose "
              "their expressive power.",
              collapse_sig, 0.02, "<=",
              f"Largest std of sigmoid outputs in layers 2-5: {collapse_sig:.4f}; the Xavier row keeps at least "
              f"{xavier_sig:.3f}. Units that all say 0.5 cannot tell inputs apart."),
        # He init is derived so that the variance of ReLU outputs stays constant from
        # layer to layer (factor 1 in expectation); 0.5..2 allows sampling noise of one
        # draw of 5 x 100 x 100 weights, while Xavier (1/sqrt(n)) halves the variance per
        # layer (std ratio 0.25 at layer 5) and std 0.01 divides the std by ~14 per layer.
        Check("ReLU, He: activations keep their spread in every layer",
              "He initialization keeps ReLU activations spread out in every layer.",
              he_min, (0.5, 2.0), "between",
              f"std of layer k / std of layer 1 under He: {', '.join(f'{r:.2f}' for r in he_ratio)} "
              f"(max {he_max:.2f}); at most {he_zero:.0%} of the outputs are exactly 0 in any layer. "
              f"Under Xavier (1/sqrt(n)) the ratio falls to {xavier_relu_last:.2f} at layer 5, and under std 0.01 "
              f"to {relu_small:.1e}."),
    ]
    # ---- note 000: the uniform draws and the linear net
    heu = relu["He uniform"]
    heu_ratio = [r["std"] / heu[0]["std"] for r in heu]
    tanh = numbers["tanh"]
    xu_over_xn = [u["std"] / v["std"] for u, v in zip(tanh["Xavier uniform"], tanh["Xavier 1/sqrt(n)"])]
    lin = numbers["linear"]
    lin_x = [r["std"] / lin["Xavier 1/sqrt(n)"][0]["std"] for r in lin["Xavier 1/sqrt(n)"]]
    lin_1 = lin["std 1"][-1]["std"] / lin["std 1"][0]["std"]
    lin_001 = lin["std 0.01"][-1]["std"] / lin["std 0.01"][0]["std"]
    numbers.update(relu_he_uniform_std_ratio=heu_ratio, tanh_xavier_uniform_over_normal_std=xu_over_xn,
                   linear_xavier_std_ratio=lin_x, linear_std1_last_over_first=lin_1,
                   linear_std001_last_over_first=lin_001)
    checks += [
        # Only the variance of the draw enters the forward pass's variance rule, so He-uniform must keep the
        # spread exactly as He-normal does (same 0.5-2 band).
        Check("ReLU, He uniform: activations keep their spread too",
              "He initialization drawn from a uniform distribution (a = sqrt(6/n), the same variance) keeps ReLU "
              "activations spread in every layer, like the normal draw.",
              min(heu_ratio) if max(heu_ratio) <= 2.0 else max(heu_ratio), (0.5, 2.0), "between",
              f"std of layer k / std of layer 1 under He uniform: {', '.join(f'{r:.2f}' for r in heu_ratio)} "
              f"(He normal: {', '.join(f'{r:.2f}' for r in he_ratio)})."),
        # Same variance, same layer-by-layer std: uniform / normal within +-20% in every layer (one draw of
        # 100 x 100 weights per layer; measured within a few percent).
        Check("tanh, Xavier uniform spreads like Xavier normal",
              "Xavier initialization drawn from a uniform distribution spreads tanh activations as well as the "
              "normal draw does.",
              min(xu_over_xn) if max(xu_over_xn) <= 1.25 else max(xu_over_xn), (0.8, 1.25), "between",
              f"std of each tanh layer, Xavier uniform / Xavier normal: {', '.join(f'{r:.2f}' for r in xu_over_xn)}."),
        # A linear layer multiplies the variance by n * Var(w): exactly 1 for Xavier's 1/sqrt(n), so the spread
        # is kept (0.5-2 for one draw); std 1 multiplies the std by ~10 per layer and std 0.01 divides it by ~10.
        Check("linear net, Xavier: the spread is kept in every layer",
              "In a linear net (no activation function), Xavier's 1/sqrt(n) keeps the outputs of every layer as "
              "spread as the first; larger weights blow them up and smaller ones shrink them layer after layer.",
              min(lin_x) if max(lin_x) <= 2.0 else max(lin_x), (0.5, 2.0), "between",
              f"std of layer k / std of layer 1, linear net, Xavier: {', '.join(f'{r:.2f}' for r in lin_x)}; "
              f"std 1: layer 5 / layer 1 = {lin_1:.3g}; std 0.01: {lin_001:.3g}."),
    ]
    if he_max > 2.0:  # the check's measured value is the minimum; the maximum must not explode either
        checks[2] = Check(checks[2].name, checks[2].claim, he_max, (0.5, 2.0), "between", checks[2].explanation)
    return Result(name="activations", preset=preset.name, settings={**s, "init_std": numbers["init_std"],
                                                                   "activations": list(ACTIVATIONS)},
                  numbers=_json(numbers), checks=checks, arrays=arrays,
                  summary=f"sigmoid std 1: {sat1:.0%} saturated; std 0.01: std {collapse_sig:.3f}; "
                          f"He/ReLU layer-std ratio {he_min:.2f}-{he_max:.2f}")


def _json(numbers: dict) -> dict:
    return {k: tolist(v) if not isinstance(v, dict) else {kk: tolist(vv) for kk, vv in v.items()}
            for k, v in numbers.items()}


def plot(result: Result) -> list[Figure]:
    import matplotlib.pyplot as plt

    figs = []
    captions = {
        "sigmoid": "Each row is one weight scale, each column one of the 5 layers; bars count the 1,000 x 100 "
                   "outputs of that layer. With std 1 (top) sigmoid outputs crowd at 0 and 1 (saturation: the "
                   "slope there is ~0, so little gradient flows back). With std 0.01 they all sit at 0.5: every "
                   "unit says the same thing. Xavier's 1/sqrt(n) keeps them spread in every layer.",
        "tanh": "The same for tanh (range -1 to 1). std 1 saturates at -1 and 1; std 0.01 shrinks outputs toward 0 "
                "layer after layer; Xavier keeps them spread, since tanh is nearly linear near 0.",
        "relu": "The same for ReLU, counting only positive outputs (each panel prints the share of exact zeros) and "
                "with one x-range per row (printed at the left), since the scales differ by orders of magnitude. "
                "With std 1 the outputs grow about 7-fold per layer; with std 0.01 they shrink about 14-fold per "
                "layer and pile up at 0; Xavier's 1/sqrt(n) halves the variance at every layer. He's sqrt(2/n) "
                "compensates for the half of the units ReLU zeroes, so the spread stays the same in all 5 layers.",
    }
    captions["linear"] = ("The same for a linear net (no activation function, note 000's first set of figures): "
                          "each layer only multiplies the variance by n Var(w). std 1 multiplies the spread by ~10 "
                          "per layer, std 0.01 divides it by ~10; Xavier's 1/sqrt(n) (normal or uniform) keeps it "
                          "the same in every layer, and He's sqrt(2/n) doubles the variance per layer, since no "
                          "ReLU halves it.")
    uniform = (" The last two rows draw the weights from uniform distributions of the same variances (Xavier uniform "
               "a = sqrt(6/(n_in + n_out)), He uniform a = sqrt(6/n)): they look like the normal rows above them, "
               "since only the variance enters.")
    for act in ACTIVATIONS:
        hist, ranges = result.arrays[act]["hist"], result.arrays[act]["ranges"]
        stats = result.numbers[act]
        n_init, n_layers, bins = hist.shape
        fig, axes = plt.subplots(n_init, n_layers, figsize=(11, 9.5), sharey="row", squeeze=False)
        for j in range(n_init):
            lo, hi = ranges[j]
            edges = np.linspace(lo, hi, bins + 1)
            for k in range(n_layers):
                ax = axes[j, k]
                ax.stairs(hist[j, k], edges, fill=True, color="C0")
                ax.set_xlim(lo, hi)
                if act == "relu":
                    ax.text(0.97, 0.88, f"zeros {stats[INITS[j]][k]['zero_fraction']:.0%}", transform=ax.transAxes,
                            ha="right", fontsize=7)
                ax.tick_params(labelsize=7)
                if j == 0:
                    ax.set_title(f"layer {k + 1}", fontsize=9)
                if k == 0:
                    ax.set_ylabel(INITS[j] if act != "relu" else f"{INITS[j]}\n(x: 0..{hi:.2g})", fontsize=8)
        fig.suptitle(f"{act}: outputs of each layer for four initial weight scales", fontsize=11)
        fig.tight_layout()
        figs.append(Figure(fig, f"{act} activations", captions[act] + uniform))
    return figs


EXPERIMENT = Experiment(
    name="activations",
    title="Weight scale and activation histograms",
    claim="The initial weight scale decides how activations are spread: with sigmoid, std 1 saturates at 0 and 1, "
          "std 0.01 collapses every unit to the same value, Xavier (1/sqrt(n)) keeps them spread; with ReLU, He "
          "(sqrt(2/n)) keeps the spread in every layer.",
    source="course note 000 (weight initialization: zero, normal, Xavier, He; activation distributions); "
           "Saito ch. 6.2, weight_init_activation_histogram.py",
    docs="init",
    run=run,
    plot=plot,
)
