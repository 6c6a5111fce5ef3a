"""The lab's form: fields from the schema, the CLI's messages, comparisons as one population, TOML round trip,
the memory estimate (no server, no training)."""

from __future__ import annotations

import pytest

from trainlab.config import SCHEMA, RunConfig, resolve_config
from trainlab.errors import ConfigError
from trainlab.lab._form import (LabInputError, check_memory, compose, form_schema, given_to_toml, member_cfg,
                                toml_to_fields, validate_field)
from trainlab.labels import member_labels


def _all_keys(schema, prefix=""):
    from trainlab.config import Key

    for name, spec in schema.items():
        if isinstance(spec, Key):
            yield prefix + name
        else:
            yield from _all_keys(spec, prefix + name + ".")


def test_every_config_key_is_a_field_except_server_paths():
    fields = {f["key"]: f for t in form_schema() for f in t["fields"]}
    assert set(fields) == set(_all_keys(SCHEMA)) - {"data.data_dir", "data.cache_dir"}
    lr = fields["optim.lr"]
    assert lr["per_member"] and lr["low"] == 0 and lr["low_inclusive"] is False
    assert fields["model.activation"]["choices"][0] == "relu"


@pytest.mark.parametrize("key,text", [("optim.lr", "-0.1"), ("model.dropout", "1.5"), ("train.batch_size", "0"),
                                      ("model.activation", '"relu7"'), ("optim.name", '"sgdd"'),
                                      ("train.steps", '"ten"')])
def test_field_messages_are_the_cli_messages(key, text):
    from trainlab.config import parse_override, set_key

    given: dict = {}
    set_key(given, key, parse_override(f"{key}={text}")[1], where=key)
    with pytest.raises(ConfigError) as cli:
        resolve_config(given)
    assert validate_field(key, text) == str(cli.value)


def test_valid_and_empty_fields_have_no_message():
    assert validate_field("optim.lr", "0.1") is None
    assert validate_field("optim.lr", "") is None
    assert validate_field("model.init_scale", "[1, 0.1]") is None  # a per-member list (its length: on compose)
    assert "unknown key" in validate_field("optim.lrr", "1")
    assert "set when the lab starts" in validate_field("data.data_dir", '"/etc"')


def test_compare_builds_one_population_labelled_by_settings():
    given, cfg = compose({"train.steps": "10"}, [{"key": "model.init_scale", "values": "1, 0.1, 0.01"}])
    assert cfg.size == 3
    assert member_labels(cfg) == ["init_scale=1", "init_scale=0.1", "init_scale=0.01"]
    # two settings x two seeds: the first varies slowest, the seeds are shared by the combinations
    given, cfg = compose({}, [{"key": "model.dropout", "values": "0, 0.5"}, {"key": "optim.lr", "values": "[0.1, 0.01]"}],
                         seeds=2)
    assert cfg.size == 8
    assert cfg.model.dropout == (0, 0, 0, 0, 0.5, 0.5, 0.5, 0.5)
    assert cfg.optim.lr == (0.1, 0.1, 0.01, 0.01) * 2
    assert cfg.population.seeds == (0, 1) * 4
    assert member_labels(cfg)[2] == "dropout=0, lr=0.01"


@pytest.mark.parametrize("compare,seeds,needle", [
    ([{"key": "model.hidden", "values": "[10], [20]"}], 1, "same for every member"),
    ([{"key": "optim.lr", "values": ""}], 1, "give the values"),
    ([{"key": "optim.lr", "values": "0.1"}, {"key": "optim.lr", "values": "0.2"}], 1, "chosen twice"),
    ([{"key": "optim.lr", "values": "0.1"}] * 3, 1, "at most two"),
    ([{"key": "optim.lr", "values": "-1, 0.1"}], 1, r"optim.lr\[0\] must be > 0"),
    ([], 0, "seeds per combination"),
    ([], "x", "seeds per combination"),
    ("optim.lr", 1, "at most two settings"),
])
def test_bad_comparisons_are_refused_with_a_message(compare, seeds, needle):
    with pytest.raises(LabInputError, match=needle):
        compose({}, compare, seeds)


def test_toml_export_round_trips_with_trainlab_train(tmp_path):
    given, cfg = compose({"train.steps": "25", "model.hidden": "[32, 16]", "optim.name": '"adam"'},
                         [{"key": "model.init_scale", "values": "1, 0.5"}])
    path = tmp_path / "lab.toml"
    path.write_text(given_to_toml(given))
    assert RunConfig.load(path) == cfg  # what `trainlab train lab.toml` trains
    fields = toml_to_fields(path.read_text())  # import into the form, and compose again
    assert compose(fields)[1] == cfg
    with pytest.raises(LabInputError, match="not valid TOML"):
        toml_to_fields("[optim\nlr = ")
    with pytest.raises(LabInputError, match="optim.lr must be > 0"):
        toml_to_fields("[optim]\nlr = -1\n")


def test_member_config_is_the_member_alone():
    _, cfg = compose({}, [{"key": "model.init_scale", "values": "1, 0.1, 0.01"}], seeds=2)
    one = member_cfg(cfg, 3)
    assert one.size == 1 and one.seeds() == [1]
    assert one.model.init_scale == 0.1


def test_too_large_population_is_refused_up_front_with_an_estimate():
    _, cfg = compose({"model.hidden": "[4000, 4000]"},
                     [{"key": "model.init_scale", "values": ", ".join(["1"] * 64)}], seeds=64)
    with pytest.raises(LabInputError, match=r"population of 4096 members needs about [\d.]+ GiB .* available here"):
        check_memory(cfg)
    _, small = compose({}, [{"key": "model.init_scale", "values": "1, 0.1"}])
    est = check_memory(small)
    # 784*100 + 100 + 100*100 + 100 + 100*10 + 10 parameters per member
    assert est["parameters_per_member"] == 89610 and est["fits"]


@pytest.mark.parametrize("model", [{}, {"hidden": [50, 30], "norm": "batchnorm", "dropout": 0.5, "input_dropout": 0.2},
                                   {"hidden": [40], "activation": "maxout", "maxout_pieces": 3, "norm": "layernorm"},
                                   {"hidden": [20, 20], "activation": "prelu"},
                                   {"hidden": [20], "activation": "prelu", "prelu_shared": True, "input_noise": 0.1}])
def test_mlp_counts_match_the_built_model(model):
    """The mlp's parameters are counted from its widths (nothing allocated); they equal the built model's."""
    from trainlab.lab._form import _built_counts, _mlp_counts

    cfg = RunConfig.from_dict({"model": model})
    assert _mlp_counts(cfg.model, 784, 10)[0] == _built_counts(cfg.model, (784,), 10)[0]


@pytest.mark.parametrize("argv,needle", [(["--port", "70000"], "--port must be 0 to 65535"),
                                         (["--max-parallel", "0"], "--max-parallel must be >= 1"),
                                         (["--host", "0.0.0.0", "--token", "short"], "at least 8 characters"),
                                         (["--probe-every", "-1"], "--probe-every must be >= 0")])
def test_lab_command_refuses_bad_options_in_one_line(argv, needle, capsys, tmp_path):
    from trainlab.cli import main

    assert main(["lab", "--root", str(tmp_path / "lab"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1


def test_probe_records_in_memory_are_thinned_but_span_the_run(tmp_path):
    from trainlab.lab._runs import MAX_PROBES, RunState

    st = RunState("r", tmp_path, "running")
    for step in range(3 * MAX_PROBES):
        st.publish({"type": "probe", "record": {"step": step}})
        st.publish({"type": "progress", "step": step})
    probes = [e["record"]["step"] for e in st.events if e["type"] == "probe"]
    assert len(probes) <= MAX_PROBES and probes[0] == 0 and probes[-1] == 3 * MAX_PROBES - 1
    assert probes == sorted(probes) and sum(e["type"] == "progress" for e in st.events) == 3 * MAX_PROBES
    seqs = [e["seq"] for e in st.events]
    assert seqs == sorted(seqs)  # a reconnecting page still resumes by sequence number
