"""The typed run configuration: every example builds through it, round-trips through TOML and JSON,
cannot be edited, derives members and populations, and publishes a JSON schema the examples satisfy."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pydantic
import pytest

from trainlab.build import build_run
from trainlab.config import SCHEMA, Key, RunConfig, load_config, per_member_keys, read_toml
from trainlab.data.testing import write_cifar10
from trainlab.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p for p in (ROOT / "examples").rglob("*.toml") if "search" not in p.parts)
SEARCH_EXAMPLES = sorted((ROOT / "examples" / "search").glob("*.toml"))


def _name(p: Path) -> str:
    return str(p.relative_to(ROOT / "examples"))


@pytest.mark.parametrize("path", EXAMPLES, ids=_name)
def test_every_example_round_trips_through_toml_and_json(path):
    cfg = RunConfig.load(path)
    assert cfg.to_dict() == load_config(path)  # the typed config holds exactly the validated values
    assert RunConfig.from_toml(cfg.to_toml()) == cfg
    assert RunConfig.from_json(cfg.to_json()) == cfg
    jsonschema.validate(json.loads(cfg.to_json()), RunConfig.json_schema())


@pytest.mark.parametrize("path", SEARCH_EXAMPLES, ids=_name)
def test_search_examples_base_configs_are_run_configs(path):
    given = {k: v for k, v in read_toml(path).items() if k != "search"}
    cfg = RunConfig.from_dict(given)
    assert RunConfig.from_toml(cfg.to_toml()) == cfg


@pytest.mark.filterwarnings("ignore:train.batch_size:UserWarning", "ignore:Dropout p=0.9:UserWarning")
@pytest.mark.parametrize("path", EXAMPLES, ids=_name)
def test_every_example_builds_through_the_run_config(path, tmp_path):
    cfg = RunConfig.load(path)
    small = {"data.train": 60, "data.val": 20, "data.test": 20, "train.eval_batch_size": 20}
    if cfg.data.name == "cifar10":
        small["data.data_dir"] = str(write_cifar10(tmp_path / "cifar", train_per_batch=20, test=40))
        small["data.download"] = False
    assert cfg.data.name in ("mnist-5k", "cifar10"), "a new example data set: give it small test data here"
    run = build_run(cfg.replace(small))
    assert run.config.size == cfg.size == run.model.size
    assert run.model.num_parameters() > 0


def test_a_validated_config_cannot_be_edited():
    cfg = RunConfig.load(ROOT / "examples" / "mlp.toml")
    with pytest.raises(pydantic.ValidationError):
        cfg.optim.lr = 3.0  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        cfg.seed = 1  # type: ignore[misc]
    assert isinstance(cfg.model.hidden, tuple)  # lists are tuples: no in-place append either
    d = cfg.to_dict()
    d["optim"]["lr"] = 3.0
    assert cfg.optim.lr != 3.0  # to_dict is a copy


def test_errors_are_the_cli_one_liners():
    with pytest.raises(ConfigError, match=r"^config: optim.lr must be > 0, got -0.1$"):
        RunConfig.from_dict({"optim": {"lr": -0.1}})
    with pytest.raises(ConfigError, match="unknown key 'optim.lrr'"):
        RunConfig.from_dict({"optim": {"lrr": 0.1}})
    assert RunConfig.validate_key("optim.lr", -0.1) == "config: optim.lr must be > 0, got -0.1"
    assert RunConfig.validate_key("optim.lr", [0.1, 0.01]) is None
    assert RunConfig.validate_key("model.activation", "relu") is None
    assert "must be one of" in RunConfig.validate_key("model.activation", "relux")
    assert "unknown key 'optim.nope'" in RunConfig.validate_key("optim.nope", 1)
    with pytest.raises(ConfigError, match="invalid TOML"):
        RunConfig.from_toml("[optim\nlr = 1")
    with pytest.raises(ConfigError, match="invalid JSON"):
        RunConfig.from_json("{")


def test_member_as_population_and_stack_are_inverse():
    base = RunConfig.from_dict({"seed": 5, "optim": {"lr": 0.1}})
    pop = base.as_population({"model.init_scale": [1.0, 0.1, 0.01], "optim.lr": [0.1, 0.2, 0.3]})
    assert pop.size == 3 and pop.seeds() == [5, 5, 5]  # paired: only the listed values differ
    assert pop.model.init_scale == (1.0, 0.1, 0.01)
    m1 = pop.member(1)
    assert (m1.size, m1.model.init_scale, m1.optim.lr, m1.seeds()) == (1, 0.1, 0.2, [5])
    again = RunConfig.stack([pop.member(i) for i in range(3)], pop.seeds())
    assert again == pop
    seeded = base.as_population({"optim.lr": [0.1, 0.2]}, seeds=[7, 8])
    assert seeded.seeds() == [7, 8] and seeded.member(1).seeds() == [8]
    with pytest.raises(ConfigError, match="one value for the whole population"):
        base.as_population({"optim.name": ["sgd", "adam"]})
    with pytest.raises(ConfigError, match="one value per member"):
        base.as_population({"optim.lr": [0.1, 0.2], "model.dropout": [0.1]})
    with pytest.raises(ConfigError, match=r"member must be in \[0, 3\)"):
        pop.member(3)


def test_replace_validates_and_leaves_the_original_alone():
    base = RunConfig.default()
    new = base.replace({"optim.lr": 0.5, "model.hidden": [10]})
    assert (new.optim.lr, new.model.hidden) == (0.5, (10,))
    assert base.optim.lr == 0.01 and base.model.hidden == (100, 100)
    with pytest.raises(ConfigError, match="must be > 0"):
        base.replace({"optim.lr": 0.0})
    with pytest.raises(ConfigError, match="unknown key 'optim.lrr'"):
        base.replace({"optim.lrr": 0.5})


def test_without_regularization_and_is_on():
    cfg = RunConfig.from_dict({"population": {"size": 2}, "model": {"dropout": [0.0, 0.5]},
                               "regularize": {"l2": 1e-3, "max_norm": 3.0},
                               "augment": {"rotate": 10.0, "force": True}, "early_stopping": {"enabled": True}})
    assert cfg.is_on("model.dropout") and cfg.is_on("regularize.l2") and cfg.is_on("regularize.max_norm")
    assert not cfg.is_on("model.input_dropout") and not cfg.is_on("optim.weight_decay")
    off, changed = cfg.without_regularization()
    assert set(changed) == {"model.dropout", "regularize.l2", "regularize.max_norm", "augment.rotate",
                            "early_stopping.enabled"}
    assert not any(off.is_on(k) for k in changed)
    assert off.augment.force is False and cfg.augment.force is True  # reset too, but not reported


def test_the_same_optimizer_name_means_the_same_hyperparameters_from_toml_and_python():
    from trainlab.optim import OPTIMIZERS, optimizer_defaults

    for name, cls in OPTIMIZERS.items():
        cfg = RunConfig.from_dict({"optim": {"name": name}})
        for key, value in optimizer_defaults(cls).items():
            if key in SCHEMA["optim"]:
                assert getattr(cfg.optim, key) == value, (name, key)


def test_the_schema_describes_every_key():
    schema = RunConfig.json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)

    def walk(spec, node, prefix=""):
        assert set(node["properties"]) == set(spec)
        for name, k in spec.items():
            prop = node["properties"][name]
            if isinstance(k, dict):
                walk(k, prop, prefix + name + ".")
                continue
            assert isinstance(k, Key)
            assert prop["default"] == k.default and prop["x-per-member"] == k.per_member, prefix + name

    walk(SCHEMA, schema)
    assert {k for k in per_member_keys()} >= {"optim.lr", "model.init_scale", "model.dropout"}
    bad = RunConfig.default().to_dict()
    bad["optim"]["lr"] = -1.0
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
    bad["optim"]["lr"] = [0.1, -1.0]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
