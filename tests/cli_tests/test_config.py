"""Config validation: every mistake is one line naming the key and what is allowed."""

from __future__ import annotations

import pytest

from trainlab.config import SCHEMA, load_config, parse_override, resolve_config
from trainlab.errors import ConfigError


def test_defaults_are_complete():
    cfg = resolve_config({})
    assert cfg["optim"]["lr"] == 0.01 and cfg["population"]["size"] == 1 and cfg["data"]["name"] == "mnist-5k"
    assert set(cfg) == set(SCHEMA)


@pytest.mark.parametrize("given, message", [
    ({"optim": {"lrr": 0.1}}, "config: unknown key 'optim.lrr' (allowed in [optim]: alpha, beta1, beta2, centered, clip_norm, "
                                  "clip_value, decoupled, eps, history, lookahead_alpha, lookahead_k, lr, max_iter, momentum, "
                                  "momentum_decay, name, rho, swa_every, swa_start, weight_decay)"),
    ({"bogus": 1}, "config: unknown key 'bogus' (allowed at the top level:"),
    ({"optim": {"lr": -0.1}}, "config: optim.lr must be > 0, got -0.1"),
    ({"optim": {"lr": "fast"}}, "config: optim.lr must be a number or a list with one per member, got 'fast'"),
    ({"optim": {"lr": float("nan")}}, "config: optim.lr must be a finite number, got nan"),
    ({"optim": {"lr": float("inf")}}, "config: optim.lr must be a finite number, got inf"),
    ({"optim": {"name": "sgdd"}}, "config: optim.name must be one of 'sgd', 'momentum', 'nesterov', 'adagrad', 'rmsprop', 'adam', 'adamw', "
                                   "'nadam', 'radam', 'adamax', 'adadelta', 'lbfgs', got 'sgdd'"),
    ({"train": {"epochs": 0}}, "config: train.epochs must be >= 1, got 0"),
    ({"train": {"epochs": 2.5}}, "config: train.epochs must be an integer, got 2.5"),
    ({"train": {"batch_size": True}}, "config: train.batch_size must be an integer, got True"),
    ({"model": {"hidden": [100, -3]}}, "config: model.hidden[1] must be >= 1, got -3"),
    ({"model": {"hidden": "100"}}, "config: model.hidden must be a list of integers, got '100'"),
    ({"optim": {"momentum": 1.0}}, "config: optim.momentum must be < 1, got 1.0"),
    ({"optim": {"lr": [0.1, 0.2]}}, "config: optim.lr lists 2 values but population.size is 1; give one number or exactly 1"),
    ({"optim": {"lr": []}}, "config: optim.lr is an empty list; give a number or one per member"),
    ({"population": {"size": 2, "seeds": [1]}}, "config: population.seeds lists 1 seeds but population.size is 2"),
    ({"optim": 3}, "config: optim must be a table ([optim]), got 3"),
    ({"model": {"type": "sequential"}}, "config: model.type = 'sequential' needs a non-empty [[model.layers]] list"),
    ({"data": {"download": "yes"}}, "config: data.download must be true or false, got 'yes'"),
])
def test_bad_values_give_one_line_naming_the_key(given, message):
    with pytest.raises(ConfigError) as e:
        resolve_config(given)
    assert str(e.value).startswith(message)
    assert "\n" not in str(e.value)


def test_per_member_lists():
    cfg = resolve_config({"population": {"size": 3}, "optim": {"lr": [0.1, 0.01, 0.001]}})
    assert cfg["optim"]["lr"] == [0.1, 0.01, 0.001]


def test_overrides_and_files(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[optim]\nlr = 0.5\n[model]\nhidden = [10]\n')
    cfg = load_config(p, ["optim.lr=0.25", "model.activation=tanh", "population.size=2", "optim.weight_decay=[0.1, 0.2]"])
    assert cfg["optim"]["lr"] == 0.25 and cfg["model"]["activation"] == "tanh"
    assert cfg["optim"]["weight_decay"] == [0.1, 0.2]
    assert parse_override("data.name=mnist") == (["data", "name"], "mnist")
    with pytest.raises(ConfigError, match="--set expects key=value"):
        parse_override("optim.lr")
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[optim\nlr=1")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(bad)


def test_layers_table(tmp_path):
    from trainlab.build import build_model

    cfg = resolve_config({"model": {"type": "sequential", "layers": [
        {"type": "linear", "out": 20, "init": "he_normal"}, {"type": "leaky_relu", "slope": 0.1},
        {"type": "linear", "out": 10}]}})
    m = build_model(cfg["model"], 10)
    m.build((784,), 1)
    assert m.output_shape == (10,)
    bad = resolve_config({"model": {"type": "sequential", "layers": [{"type": "linear", "out": 5, "widht": 3}]}})
    with pytest.raises(ConfigError, match=r"unknown key 'model.layers\[0\].widht' for a linear layer \(allowed: out, init, init_scale, bias\)"):
        build_model(bad["model"], 10)
    bad = resolve_config({"model": {"type": "sequential", "layers": [{"type": "conv9"}]}})
    with pytest.raises(ConfigError, match=r"model.layers\[0\].type must be one of"):
        build_model(bad["model"], 10)


def test_every_key_is_documented():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "training.md").read_text()

    def keys(schema, prefix=""):
        for k, v in schema.items():
            if isinstance(v, dict):
                yield from keys(v, prefix + k + ".")
            else:
                yield prefix + k

    missing = [k for k in keys(SCHEMA) if f"`{k}`" not in doc]
    assert not missing, f"docs/training.md does not document {missing}"
