"""The experiment config: strict validation, overrides, the schedule and the shipped configs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from statetrack.cli import main
from statetrack.experiment.config import ConfigError, load_config, validate
from statetrack.experiment.paper import TABLE3, paper_value
from statetrack.experiment.schedule import learning_rate

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "name": "tiny",
    "task": {"name": "parity"},
    "model": {"d_model": 16, "n_layers": 1, "mixer": "deltanet",
              "mixer_options": {"num_heads": 2, "eig_range": [-1, 1]}},
    "training": {"steps": 4, "batch_size": 4, "max_len": 10, "log_every": 2,
                 "checkpoint_every": 0, "val_every": 0, "device": "cpu"},
    "evaluation": {"min_len": 10, "max_len": 20, "n": 16},
}


def write(tmp_path: Path, raw: dict, name: str = "x.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return path


def changed(section: str, key: str, value: object) -> dict:
    raw = yaml.safe_load(yaml.safe_dump(TINY))
    raw.setdefault(section, {})[key] = value
    return raw


@pytest.mark.parametrize("section, key, value, words", [
    ("training", "lrr", 1e-3, ["training.lrr", "unknown key", "training.lr"]),
    ("model", "d_modle", 16, ["model.d_modle", "model.d_model"]),
    ("task", "option", {}, ["task.option", "options"]),
    ("training", "steps", "many", ["training.steps", "int"]),
    ("training", "lr", True, ["training.lr", "float"]),
    ("model", "n_layers", 1.5, ["model.n_layers", "int"]),
    ("training", "device", "gpu", ["training.device", "auto, cpu, cuda"]),
    ("model", "mlp", "relu", ["model.mlp", "swiglu"]),
    ("model", "init", "xavier", ["model.init", "torch, fla"]),
    ("training", "warmup_steps", 99, ["training.warmup_steps", "training.steps"]),
    ("model", "mixer", "rnn", ["model.mixer", "deltanet", "mamba"]),
])
def test_a_bad_key_or_value_is_an_error_naming_key_file_and_allowed(
        tmp_path: Path, section: str, key: str, value: object, words: list[str]) -> None:
    path = write(tmp_path, changed(section, key, value))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    for word in [*words, str(path)]:
        assert word in str(err.value)


def test_a_bad_eig_range_names_the_key_and_the_rule(tmp_path: Path) -> None:
    raw = changed("model", "mixer_options", {"eig_range": [0, 2]})
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, raw))
    assert "model.mixer_options.eig_range" in str(err.value)
    assert "-1 <= lo < hi <= 1" in str(err.value)


def test_an_unknown_mixer_or_task_option_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="model.mixer_options.num_haeds"):
        load_config(write(tmp_path, changed("model", "mixer_options", {"num_haeds": 2})))
    with pytest.raises(ConfigError, match="task.options.modulo"):
        load_config(write(tmp_path, {**TINY, "task": {"name": "mod_arith",
                                                      "options": {"modulo": 5}}}))


@pytest.mark.parametrize("section, key, value, words", [
    ("training", "lrr", 1e-3, ["training.lrr"]),
    ("training", "steps", "many", ["training.steps"]),
    ("model", "mixer_options", {"eig_range": [0, 2]}, ["model.mixer_options.eig_range"]),
    ("training", "min_len", 1, ["training.min_len"]),  # parity needs at least one bit
])
def test_cli_config_errors_exit_2_before_any_work(
        tmp_path: Path, capsys: pytest.CaptureFixture, section: str, key: str, value: object,
        words: list[str]) -> None:
    path = write(tmp_path, changed(section, key, value))
    out = tmp_path / "run"
    code = main(["train", str(path), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    for word in [*words, str(path)]:
        assert word in err
    assert not (out / "summary.json").exists()
    assert not out.exists()  # no run directory at all


def test_set_overrides_read_values_as_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, TINY)
    config = load_config(path, ["training.lr=3e-4", "model.mixer_options.eig_range=[0, 1]",
                                "training.grad_clip=1", "name=other"])
    assert config.training.lr == pytest.approx(3e-4) and isinstance(config.training.lr, float)
    assert config.model["mixer_options"]["eig_range"] == [0.0, 1.0]
    assert config.training.grad_clip == 1.0
    assert config.name == "other"
    with pytest.raises(ConfigError, match="training.lrr"):
        load_config(path, ["training.lrr=3e-4"])
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(path, ["training.lr"])


def test_the_resolved_config_is_complete_and_a_fixed_point(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, TINY))
    resolved = yaml.safe_load(config.to_yaml())
    # every mixer option is spelled out, defaults included, and data_seed is resolved
    assert {"num_heads", "conv_kernel", "eig_range"} <= set(resolved["model"]["mixer_options"])
    assert resolved["training"]["data_seed"] == resolved["training"]["seed"]
    assert validate(resolved).to_dict() == config.to_dict()


def test_floats_accept_ints_and_yaml_1_1_exponents(tmp_path: Path) -> None:
    raw = changed("training", "lr", "1e-3")
    raw["training"]["weight_decay"] = 0
    config = load_config(write(tmp_path, raw))
    assert config.training.lr == 1e-3 and config.training.weight_decay == 0.0


@settings(max_examples=60, deadline=None)
@given(steps=st.integers(2, 500), warmup_frac=st.floats(0, 1), lr=st.floats(1e-5, 1.0),
       final=st.floats(0, 1))
def test_schedule_warms_up_linearly_then_decays_to_the_floor(steps: int, warmup_frac: float,
                                                             lr: float, final: float) -> None:
    warmup = int(warmup_frac * (steps - 1))
    rates = [learning_rate(s, lr=lr, steps=steps, warmup_steps=warmup, final_lr_factor=final)
             for s in range(steps)]
    for s in range(warmup):
        assert rates[s] == pytest.approx(lr * (s + 1) / warmup)
    decay = rates[warmup:]
    assert decay[0] == pytest.approx(lr)
    assert all(b <= a * (1 + 1e-12) for a, b in zip(decay, decay[1:], strict=False))
    if len(decay) > 1:
        assert decay[-1] == pytest.approx(lr * final, rel=1e-9, abs=1e-15)
    assert all(math.isfinite(r) and r >= 0 for r in rates)


CHOMSKY = sorted((ROOT / "configs" / "chomsky").glob("*/*.yaml"))


def test_the_paper_configs_are_all_there() -> None:
    names = {(p.parent.name, p.stem) for p in CHOMSKY}
    assert names == {(task, model) for model, row in TABLE3.items() for task in row}


@pytest.mark.parametrize("path", CHOMSKY, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_each_paper_config_is_valid_and_recognised_as_the_papers(path: Path) -> None:
    config = load_config(path)
    assert config.task.name == path.parent.name and config.name == path.stem
    assert paper_value(config.to_dict()) == TABLE3[path.stem][path.parent.name]
    # a changed protocol is no longer the paper's; another kernel for the same model still is
    assert paper_value(load_config(path, ["training.lr=0.01"]).to_dict()) is None
    if config.model["mixer"] in ("slstm", "mamba", "deltanet"):  # mixers with a backend
        torch_loop = load_config(path, ["model.mixer_options.backend=torch"]).to_dict()
        assert paper_value(torch_loop) == TABLE3[path.stem][path.parent.name]
    # a config.yaml written before a mixer option existed (it lacks the option's default) is
    # still the paper's; the option set away from its default is not (DeltaNet's unit_keys)
    older = config.to_dict()
    dropped = older["model"]["mixer_options"].pop("unit_keys", None)
    assert paper_value(older) == TABLE3[path.stem][path.parent.name]
    if dropped is not None:
        unit = load_config(path, ["model.mixer_options.unit_keys=true"]).to_dict()
        assert paper_value(unit) is None


def test_the_transformer_has_the_width_and_depth_of_the_others() -> None:
    for task in {p.parent.name for p in CHOMSKY}:
        shapes = {(c.model["d_model"], c.model["n_layers"])
                  for c in map(load_config, (ROOT / "configs/chomsky" / task).glob("*.yaml"))}
        assert len(shapes) == 1


def test_the_demo_configs_differ_only_in_eig_range() -> None:
    neg = load_config(ROOT / "configs/demo/parity_deltanet_neg.yaml").to_dict()
    pos = load_config(ROOT / "configs/demo/parity_deltanet.yaml").to_dict()
    assert neg["model"]["mixer_options"].pop("eig_range") == [-1.0, 1.0]
    assert pos["model"]["mixer_options"].pop("eig_range") == [0.0, 1.0]
    neg.pop("name"), pos.pop("name")
    assert neg == pos
