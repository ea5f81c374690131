"""The fla side-by-side scripts (scripts/dev/fla_model.py, scripts/gpu/fla_deltanet_train.py),
as far as they run without fla: which models they accept, and that the weight map pairs every
parameter of statetrack's paper DeltaNet once."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from repo_scripts import ROOT, load_script

from statetrack.experiment.config import load_config
from statetrack.experiment.trainer import build

fla_model = load_script("scripts/dev/fla_model.py")
PARITY = ROOT / "configs" / "chomsky" / "parity"


def paper_deltanet(*overrides: str, name: str = "deltanet_neg"):
    return load_config(PARITY / f"{name}.yaml", list(overrides))


def fla_names(n_layers: int) -> set[str]:
    """fla's parameter names as the weight map and the MLP halves give them."""
    names = set(fla_model.weight_map(n_layers))
    for i in range(n_layers):
        names |= {f"model.layers.{i}.mlp.gate_proj.weight", f"model.layers.{i}.mlp.up_proj.weight"}
    return names


def test_the_weight_map_pairs_every_parameter_of_the_paper_deltanet_once() -> None:
    config = paper_deltanet()
    _, model = build(config)
    params = dict(model.named_parameters())
    names = fla_model.weight_map(config.model["n_layers"])
    assert len(set(names.values())) == len(names)  # no statetrack tensor copied twice
    fla_model.check_covers(names, set(params), fla_names(config.model["n_layers"]))
    with pytest.raises(SystemExit, match="without a counterpart"):
        fla_model.check_covers(names, set(params) | {"blocks.0.mixer.extra.weight"},
                               fla_names(config.model["n_layers"]))
    with pytest.raises(SystemExit, match="without a counterpart"):
        fla_model.check_covers(names, set(params), fla_names(1))


def test_fla_gate_and_up_projections_are_the_halves_of_gate_up_gate_first() -> None:
    _, model = build(paper_deltanet())
    params = dict(model.named_parameters())
    names = fla_model.weight_map(2)
    gate_up = params["blocks.1.mlp.gate_up.weight"]
    gate = fla_model.counterpart("model.layers.1.mlp.gate_proj.weight", params, names)
    up = fla_model.counterpart("model.layers.1.mlp.up_proj.weight", params, names)
    assert torch.equal(torch.cat([gate, up]), gate_up) and gate.shape == up.shape
    assert fla_model.counterpart("lm_head.weight", params, names) is params["head.weight"]


@pytest.mark.parametrize("name, neg", [("deltanet", False), ("deltanet_neg", True)])
def test_table3_deltanet_configs_map_to_fla_settings(name: str, neg: bool) -> None:
    assert fla_model.paper_model_settings(paper_deltanet(name=name)) == (neg, 1e-5)
    eps = paper_deltanet("model.norm_eps=1e-6", "model.mixer_options.norm_eps=1e-6", name=name)
    assert fla_model.paper_model_settings(eps) == (neg, 1e-6)


@pytest.mark.parametrize("override, match", [
    ("model.mixer_options.unit_keys=true", "mixer_options"),
    ("model.mixer_options.conv_bias=true", "mixer_options"),
    ("model.mixer_options.eig_range=[-0.5,1]", "eig_range"),
    ("model.mlp_ratio=4.0", "model.mlp_ratio"),
    ("model.init=torch", "model.init"),
    ("model.norm_eps=1e-6", "one norm eps"),
])
def test_a_model_fla_does_not_build_is_refused(override: str, match: str) -> None:
    with pytest.raises(SystemExit, match=match):
        fla_model.paper_model_settings(paper_deltanet(override))


def test_fla_training_refuses_weight_decay_before_writing_anything(tmp_path: Path) -> None:
    train = load_script("scripts/gpu/fla_deltanet_train.py")
    config = ROOT / "configs" / "chomsky" / "mod_arith" / "deltanet_neg.yaml"  # decay 0.1
    out = tmp_path / "run"
    with pytest.raises(SystemExit, match="weight_decay"):
        train.main([str(config), "--out", str(out), "--device", "cpu"])
    assert not out.exists()


def test_the_float32_comparison_refuses_lengths_where_fla_would_run_its_chunked_kernel() -> None:
    with pytest.raises(SystemExit, match="refuses float32"):
        fla_model.compare(paper_deltanet(), batch_size=2, max_len=65)

