"""Properties of SequenceModel and the paper's seven models."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from statetrack.layers._common import NORM_TYPES
from statetrack.models import ModelConfig, SequenceModel, paper_models

VOCAB = 11
PAPER_NAMES = ["transformer", "mlstm", "slstm", "mamba", "mamba_neg", "deltanet", "deltanet_neg"]


def test_paper_models_are_the_seven_of_table_3() -> None:
    models = paper_models(VOCAB)
    assert sorted(models) == sorted(PAPER_NAMES)
    for cfg in models.values():
        assert (cfg.d_model, cfg.n_layers, cfg.vocab_size) == (128, 2, VOCAB)
    assert models["mamba_neg"].mixer_options["eig_range"] == [-1.0, 1.0]
    assert models["deltanet_neg"].mixer_options["eig_range"] == [-1.0, 1.0]
    for name in ("deltanet", "deltanet_neg"):  # fla's ShortConvolution has no bias
        assert models[name].mixer_options["conv_bias"] is False
    assert "eig_range" not in models["mamba"].mixer_options


@pytest.mark.parametrize("name", PAPER_NAMES)
def test_paper_model_trains_on_cpu(name: str) -> None:
    """Forward and backward run; every parameter gets a finite gradient; num_parameters is
    the sum of the parameters' sizes."""
    torch.manual_seed(0)
    model = SequenceModel(paper_models(VOCAB)[name])
    tokens = torch.randint(0, VOCAB, (2, 16))
    logits, state = model(tokens)
    assert logits.shape == (2, 16, VOCAB) and len(state) == 2
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens.flatten()).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    n = model.num_parameters()
    print(f"{name}: {n} parameters")
    assert n > 0 and n == sum(p.numel() for p in model.parameters())


def decay_by_id(groups: list[dict]) -> dict[int, float]:
    """Parameter id → the weight decay of the AdamW group that holds it."""
    return {id(p): g["weight_decay"] for g in groups for p in g["params"]}


@pytest.mark.parametrize("name", PAPER_NAMES)
def test_param_groups_cover_every_parameter_once(name: str) -> None:
    """Every parameter is in exactly one group; A_log, D, norm gains and biases are in the
    group without weight decay, the embedding and the head in the decayed one."""
    model = SequenceModel(paper_models(VOCAB)[name])
    groups = model.param_groups(0.1)
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())
    assert len(ids) == len(set(ids))
    wd = decay_by_id(groups)
    for mname, module in model.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            exempt = isinstance(module, NORM_TYPES) or "bias" in pname or pname in ("A_log", "D")
            assert wd[id(p)] == (0.0 if exempt else 0.1), f"{mname}.{pname}"
    assert wd[id(model.embedding.weight)] == 0.1 and wd[id(model.head.weight)] == 0.1


@pytest.mark.parametrize("name", ["deltanet_neg", "mamba_neg"])
def test_decay_norms_and_biases_leaves_only_a_log_and_d_undecayed(name: str) -> None:
    """decay_norms_and_biases (the public harness's grouping): norm gains and biases decay
    like the weights; only A_log and D, which mamba.py marks ``_no_weight_decay``, do not. A
    model with neither has an empty undecayed group."""
    model = SequenceModel(paper_models(VOCAB)[name])
    groups = model.param_groups(0.1, decay_norms_and_biases=True)
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters()) and len(ids) == len(set(ids))
    wd = decay_by_id(groups)
    names = []
    for mname, module in model.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            names.append(pname)
            assert wd[id(p)] == (0.0 if pname in ("A_log", "D") else 0.1), f"{mname}.{pname}"
    assert any(n == "A_log" for n in names) == (name == "mamba_neg")
    assert any("bias" in n for n in names) == (name == "mamba_neg")  # Δ and conv biases
    assert wd[id(model.norm.weight)] == 0.1 and wd[id(model.blocks[0].mixer_norm.weight)] == 0.1


@pytest.mark.parametrize("name", ["deltanet_neg", "mamba_neg"])
def test_token_by_token_equals_whole_sequence(name: str) -> None:
    """The model fed one token at a time with its state carried gives the logits of the whole
    sequence at once (float64), under eig_range [-1, 1]."""
    torch.manual_seed(0)
    cfg = dataclasses.replace(paper_models(VOCAB)[name], d_model=32)
    model = SequenceModel(cfg).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    assert_token_by_token_equals_whole(model, torch.randint(0, VOCAB, (2, 12)))


def assert_token_by_token_equals_whole(model: SequenceModel, tokens: torch.Tensor) -> None:
    """Feeding ``tokens`` one at a time with the state carried gives the logits of the whole
    sequence at once (float64 models: to 1e-8)."""
    whole, _ = model(tokens)
    state, steps = None, []
    for t in range(tokens.shape[1]):
        logits, state = model(tokens[:, t:t + 1], state)
        steps.append(logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), whole, rtol=0, atol=1e-8)


@pytest.mark.parametrize("changes, key", [
    ({"vocab_size": 0}, "model.vocab_size"),
    ({"n_layers": 0}, "model.n_layers"),
    ({"mlp": "relu"}, "model.mlp"),
    ({"mixer": "rnn"}, "model.mixer"),
    ({"d_model": 30}, "model.mixer_options.num_heads"),
    ({"mixer": "attention", "mixer_options": {"eig_range": [-1, 1]}},
     "model.mixer_options.eig_range"),
    ({"mixer_options": {"num_head": 4}}, "model.mixer_options"),
    ({"init": "xavier"}, "model.init"),
    ({"mixer": "mamba", "init": "fla"}, "model.init"),
    ({"mixer": "mlstm", "init": "paper"}, "model.init"),
    ({"mixer": "deltanet", "init": "xlstm"}, "model.init"),
    ({"norm": "batch"}, "model.norm"),
    ({"final_norm": "no"}, "model.final_norm"),
    ({"embedding_std": 0.0}, "model.embedding_std"),
    ({"embedding_std": True}, "model.embedding_std"),
    ({"init": "fla", "embedding_std": 1.0}, "model.embedding_std"),
])
def test_bad_config_names_the_key(changes: dict, key: str) -> None:
    cfg = dataclasses.replace(ModelConfig(vocab_size=VOCAB, d_model=32), **changes)
    with pytest.raises(ValueError, match=rf"^{key}\b"):
        SequenceModel(cfg)


def assert_init(model: SequenceModel, want_std) -> None:
    """Biases zero, norm gains one, and every other parameter drawn around 0 with the standard
    deviation ``want_std(name, p)`` gives."""
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            assert torch.count_nonzero(p) == 0, name
        elif "norm" in name:
            assert torch.equal(p, torch.ones_like(p)), name
        else:
            want = want_std(name, p)
            assert abs(p.mean().item()) < 0.2 * want, name
            assert p.std().item() == pytest.approx(want, rel=0.15), name


@pytest.mark.parametrize("n_layers", [1, 2, 3])
def test_fla_init_draws_weights_at_std_002_and_scales_the_residual_writes(n_layers: int) -> None:
    """init: fla: every Linear, Conv1d and embedding weight ~ N(0, 0.02²), biases 0, the two
    residual writes per block (mixer o_proj, MLP down) at 0.02 / √(2 · n_layers); norm gains
    stay 1. The default keeps PyTorch's wider init (the conv taps above all)."""
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=VOCAB, d_model=128, n_layers=n_layers, mlp_ratio=6.0,
                      init="fla", mixer_options={"eig_range": [-1, 1]})
    scaled = 0.02 / (2 * n_layers) ** 0.5
    assert_init(SequenceModel(cfg), lambda name, p: scaled if name.endswith(
        ("o_proj.weight", "mlp.down.weight")) else 0.02)
    torch.manual_seed(0)
    default = SequenceModel(dataclasses.replace(cfg, init="torch"))
    conv = default.blocks[0].mixer.k_conv.conv.weight
    assert conv.std().item() > 10 * 0.02  # uniform in ±4^-½: std 0.29


@pytest.mark.parametrize("n_layers", [1, 2])
def test_paper_init_keeps_the_layers_own_draws_where_the_papers_code_did(n_layers: int) -> None:
    """init: paper: the DeltaNet projections Xavier-uniform with gain 2^-2.5 (o_proj not
    divided), the short convolutions' taps PyTorch's uniform in ±kernel^-½ with zero bias, and
    init: fla's draws for the embedding, MLP (down divided by √(2 · n_layers)) and head."""
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=VOCAB, d_model=128, n_layers=n_layers, mlp_ratio=6.0,
                      init="paper", mixer_options={"eig_range": [-1, 1]})

    def want_std(name: str, p: torch.Tensor) -> float:
        module = name.split(".")[-2]
        if module in ("q_proj", "k_proj", "v_proj", "b_proj", "o_proj"):
            bound = 2 ** -2.5 * (6 / sum(p.shape)) ** 0.5  # Xavier-uniform's
            assert p.abs().max().item() <= bound, name
            return bound / 3 ** 0.5
        if module == "conv":
            assert p.abs().max().item() <= 4 ** -0.5, name
            return 4 ** -0.5 / 3 ** 0.5  # uniform in ±½
        if name.endswith("mlp.down.weight"):
            return 0.02 / (2 * n_layers) ** 0.5
        return 0.02  # embedding, MLP gate and up, head

    assert_init(SequenceModel(cfg), want_std)


def test_model_without_final_norm_feeds_the_residual_stream_to_the_head() -> None:
    """final_norm: false (the public harness's Mamba): no final RMSNorm, the logits are the
    head applied to the last block's output, and token by token still equals the whole
    sequence; the default model differs from it only by that norm."""
    torch.manual_seed(0)
    cfg = dataclasses.replace(paper_models(VOCAB)["mamba_neg"], d_model=32, final_norm=False)
    model = SequenceModel(cfg).double()
    assert model.norm is None and not any(n.startswith("norm.") for n, _ in
                                          model.named_parameters())
    tokens = torch.randint(0, VOCAB, (2, 10))
    x = model.embedding(tokens)
    for block in model.blocks:
        x, _ = block(x)
    logits, _ = model(tokens)
    torch.testing.assert_close(logits, model.head(x), rtol=0, atol=0)
    with_norm = SequenceModel(dataclasses.replace(cfg, final_norm=True)).double()
    missing = with_norm.load_state_dict(model.state_dict(), strict=False).missing_keys
    assert missing == ["norm.weight"]
    torch.testing.assert_close(with_norm(tokens)[0], model.head(with_norm.norm(x)))
    assert_token_by_token_equals_whole(model, tokens)


@pytest.mark.parametrize("std", [0.02, 1.0])
def test_embedding_std_sets_the_embeddings_spread(std: float) -> None:
    """embedding_std draws the embedding from N(0, std²): 0.02 by default, 1.0 is PyTorch's
    own default for nn.Embedding (the public harness's Mamba); the rest of the model is
    untouched by it (same seed, same draws)."""
    torch.manual_seed(0)
    cfg = dataclasses.replace(ModelConfig(vocab_size=200, d_model=64, mixer="mamba",
                                          mlp="none"), embedding_std=std)
    model = SequenceModel(cfg)
    w = model.embedding.weight
    assert abs(w.mean().item()) < 0.05 * std and w.std().item() == pytest.approx(std, rel=0.05)
    torch.manual_seed(0)
    other = SequenceModel(dataclasses.replace(cfg, embedding_std=0.5 * std))
    torch.testing.assert_close(other.embedding.weight, 0.5 * w)
    for (name, p), (_, q) in zip(model.named_parameters(), other.named_parameters(),
                                 strict=True):
        if not name.startswith("embedding."):
            assert torch.equal(p, q), name


def test_deltanet_without_conv_bias_has_none_and_runs_token_by_token() -> None:
    """conv_bias: false (the paper's model, Table 3's since session 24): no short-convolution
    bias anywhere, init: paper still draws the taps, and the model fed one token at a time gives
    the whole sequence's logits (float64). A value that is not a boolean names the key."""
    torch.manual_seed(0)
    cfg = dataclasses.replace(paper_models(VOCAB)["deltanet_neg"], d_model=32)
    assert cfg.mixer_options["conv_bias"] is False
    model = SequenceModel(cfg).double()
    names = [name for name, _ in model.named_parameters()]
    assert any(".q_conv.conv.weight" in n for n in names)
    assert not any("_conv.conv.bias" in n for n in names)
    taps = model.blocks[0].mixer.k_conv.conv.weight
    assert taps.abs().max().item() <= 0.5 and taps.std().item() > 0.2  # PyTorch's, ±4^-½
    assert_token_by_token_equals_whole(model, torch.randint(0, VOCAB, (2, 10)))
    bad = dataclasses.replace(cfg, mixer_options={**cfg.mixer_options, "conv_bias": "no"})
    with pytest.raises(ValueError, match=r"^model\.mixer_options\.conv_bias"):
        SequenceModel(bad)


def test_xlstm_init_draws_small_init_and_wang_init_where_xlstm_does() -> None:
    """init: xlstm on the paper's sLSTM (d 128, 2 blocks): embedding, head, gate projections W
    and feed-forward up projections from N(0, 2 / (5 · 128)), down projections from
    N(0, (2 / (2 √128))²); R stays zero and the biases (the forget gate's by block), the
    convolutions and the norm gains stay as the default model has them."""
    cfg = paper_models(VOCAB)["slstm"]
    torch.manual_seed(0)
    default = SequenceModel(cfg)
    torch.manual_seed(0)
    model = SequenceModel(dataclasses.replace(cfg, init="xlstm"))
    small, wang = (2 / (5 * 128)) ** 0.5, 2 / 2 / 128 ** 0.5
    drawn = {"embedding.weight": small, "head.weight": small}
    for i, block in enumerate(model.blocks):
        drawn |= {f"blocks.{i}.mixer.W": small, f"blocks.{i}.mlp.gate_up.weight": small,
                  f"blocks.{i}.mlp.down.weight": wang}
        assert torch.count_nonzero(block.mixer.R) == 0
    kept = dict(default.named_parameters())
    for name, p in model.named_parameters():
        if name in drawn:
            assert abs(p.mean().item()) < 0.1 * drawn[name], name
            assert p.std().item() == pytest.approx(drawn[name], rel=0.1), name
        else:
            assert torch.equal(p, kept[name]), name
    assert len(drawn) == 2 + 3 * len(model.blocks)


def test_layer_norm_blocks_and_the_embedding_left_undecayed() -> None:
    """norm: layer gives LayerNorms without a bias in every block and before the head, and the
    model still gives the whole sequence's logits token by token; decay_embedding=False moves
    only the embedding into the undecayed group."""
    torch.manual_seed(0)
    cfg = dataclasses.replace(paper_models(VOCAB)["slstm"], d_model=32, norm="layer")
    model = SequenceModel(cfg).double()
    norms = [model.norm] + [n for b in model.blocks for n in (b.mixer_norm, b.mlp_norm)]
    assert all(type(n) is torch.nn.LayerNorm and n.bias is None for n in norms)
    x = torch.randn(3, 32, dtype=torch.float64) + 5.0  # LayerNorm removes the mean, RMSNorm not
    torch.testing.assert_close(model.norm(x), (x - x.mean(-1, keepdim=True))
                               / (x.var(-1, unbiased=False, keepdim=True) + 1e-5).sqrt())
    assert_token_by_token_equals_whole(model, torch.randint(0, VOCAB, (2, 10)))
    wd = decay_by_id(model.param_groups(0.1, decay_embedding=False))
    base = decay_by_id(model.param_groups(0.1))
    changed = [n for n, p in model.named_parameters() if wd[id(p)] != base[id(p)]]
    assert changed == ["embedding.weight"] and wd[id(model.embedding.weight)] == 0.0
