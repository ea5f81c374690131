"""Properties of the token mixers: state passing, eigenvalue ranges, option errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from statetrack.layers import MIXERS, build_mixer, mixer_options
from statetrack.layers.mlstm import mlstm_parallel, mlstm_recurrent

D_MODEL = 16
NEG = [-1.0, 1.0]
POS = [0.0, 1.0]
NO_EIG = ("attention", "lstm", "mlstm", "slstm")

# (mixer, options) pairs covering every mixer and every structural option.
CASES = [
    ("mamba", {}),
    ("mamba", {"conv_kernel": 1, "d_state": 4}),
    ("deltanet", {}),
    ("deltanet", {"num_householder": 2}),
    ("deltanet", {"use_gate": True}),
    ("deltanet", {"num_householder": 3, "use_gate": True}),
    ("deltanet", {"unit_keys": True}),
    ("mlstm", {}),
    ("slstm", {}),
    ("lstm", {}),
    ("attention", {}),
]


def make(name: str, options: dict, seed: int = 0) -> torch.nn.Module:
    """A float64 mixer with every parameter perturbed, so that zero-initialised pieces
    (sLSTM's R, mLSTM's gate weights) take part."""
    torch.manual_seed(seed)
    mixer = build_mixer(name, D_MODEL, options).double()
    with torch.no_grad():
        for p in mixer.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return mixer


def random_pieces(T: int, rng: np.random.Generator) -> list[int]:
    """A random partition of T into lengths >= 1, including some single tokens."""
    cuts = sorted(rng.choice(np.arange(1, T), size=rng.integers(1, T - 1), replace=False))
    bounds = [0, *cuts, T]
    return [b - a for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def run_in_pieces(mixer: torch.nn.Module, x: torch.Tensor, pieces: list[int]) -> torch.Tensor:
    state, ys, t = None, [], 0
    for n in pieces:
        y, state = mixer(x[:, t:t + n], state)
        ys.append(y)
        t += n
    return torch.cat(ys, dim=1)


def expand_cases() -> list:
    out = []
    for name, opts in CASES:
        ranges = [POS, NEG] if "eig_range" in mixer_options(name) and name not in NO_EIG else [POS]
        backends = ["reference", "auto"] if "backend" in mixer_options(name) else [None]
        for rng in ranges:
            for backend in backends:
                o = dict(opts, eig_range=rng)
                if backend is not None:
                    o["backend"] = backend
                out.append(pytest.param(name, o, id=f"{name}-{opts}-{rng}-{backend}"))
    return out


@pytest.mark.parametrize("name, options", expand_cases())
def test_pieces_with_state_equal_whole_sequence(name: str, options: dict) -> None:
    """Running a sequence at once equals running it in random pieces, and one token at a
    time, carrying the state (float64, 1e-8): the inference path is the training path."""
    mixer = make(name, options)
    rng = np.random.default_rng(1)
    T = 13
    x = torch.randn(2, T, D_MODEL, dtype=torch.float64)
    whole, _ = mixer(x)
    assert whole.shape == x.shape and torch.isfinite(whole).all()
    for pieces in (random_pieces(T, rng), random_pieces(T, rng), [1] * T):
        torch.testing.assert_close(run_in_pieces(mixer, x, pieces), whole, rtol=0, atol=1e-8)


@pytest.mark.parametrize("name, options", [
    ("mamba", {}), ("deltanet", {}), ("deltanet", {"num_householder": 2, "use_gate": True}),
])
def test_negative_eigenvalues_only_with_extended_range(name: str, options: dict) -> None:
    """With eig_range [-1, 1] the transitions the layer applies to random inputs include
    negative eigenvalues; with [0, 1] none is negative; all lie in [lo, hi]."""
    x = torch.randn(4, 32, D_MODEL, dtype=torch.float64)
    for rng, expect_negative in ((NEG, True), (POS, False)):
        torch.manual_seed(0)
        mixer = build_mixer(name, D_MODEL, dict(options, eig_range=rng, backend="reference"))
        lam = mixer.double().transition_eigenvalues(x)
        assert torch.isfinite(lam).all()
        assert bool((lam < 0).any()) == expect_negative, (rng, lam.min().item())
        assert lam.min() >= rng[0] - 1e-12 and lam.max() <= rng[1] + 1e-12


@pytest.mark.parametrize("name", ["mamba", "deltanet"])
def test_eig_range_reaches_the_output(name: str) -> None:
    """The same weights with [0, 1] and [-1, 1] give different outputs (far beyond float64
    rounding): the range reaches the forward pass."""
    x = torch.randn(2, 8, D_MODEL, dtype=torch.float64)
    outs = []
    for rng in (POS, NEG):
        torch.manual_seed(0)
        outs.append(build_mixer(name, D_MODEL, {"eig_range": rng}).double()(x)[0])
    assert (outs[0] - outs[1]).abs().max() > 1e-8 * outs[0].abs().max()


@pytest.mark.parametrize("name", NO_EIG)
def test_mixers_without_eigenvalues_reject_extended_range(name: str) -> None:
    """attention, lstm, mlstm and slstm refuse [-1, 1] with an error naming the mixer and the
    allowed value, and accept the default."""
    with pytest.raises(ValueError, match=rf"eig_range: mixer '{name}' .*allowed: \[0, 1\]"):
        build_mixer(name, D_MODEL, {"eig_range": NEG})
    build_mixer(name, D_MODEL, {"eig_range": POS})


@pytest.mark.parametrize("name", sorted(MIXERS))
def test_bad_eig_range_and_unknown_option_are_named(name: str) -> None:
    """[0, 2] raises naming the allowed range; a misspelt option raises naming it."""
    with pytest.raises(ValueError, match=r"eig_range: expected \[lo, hi\] with -1 <= lo < hi <= 1"):
        build_mixer(name, D_MODEL, {"eig_range": [0, 2]})
    with pytest.raises(ValueError, match=r"unknown option\(s\) eig_rnage"):
        build_mixer(name, D_MODEL, {"eig_rnage": NEG})


@pytest.mark.parametrize("name, options, key", [
    ("deltanet", {"num_heads": 3}, "num_heads"),
    ("attention", {"num_heads": 5}, "num_heads"),
    ("mamba", {"d_state": 0}, "d_state"),
    ("mamba", {"dt_rank": "big"}, "dt_rank"),
    ("deltanet", {"num_householder": 0}, "num_householder"),
    ("deltanet", {"backend": "cuda"}, "backend"),
    ("slstm", {"conv_kernel": 0}, "conv_kernel"),
    ("slstm", {"forget_init": "zeros"}, "forget_init"),
])
def test_bad_option_values_are_named(name: str, options: dict, key: str) -> None:
    with pytest.raises(ValueError, match=rf"^{key}: expected"):
        build_mixer(name, D_MODEL, options)


@pytest.mark.parametrize("n_layers", [1, 3])
def test_slstm_forget_bias_follows_its_block(n_layers: int) -> None:
    """sLSTM's forget-gate bias: "linspace" is 3 → 6 in every block; "powerlaw" (xLSTM's
    powerlaw_blockdependent) falls from +5 to −7 over each head's channels, the same in every
    head, with more long-memory (positive) channels the deeper the block."""
    from statetrack.models import SequenceModel
    from statetrack.models.config import ModelConfig

    def forget_biases(forget_init: str) -> list[torch.Tensor]:
        cfg = ModelConfig(vocab_size=3, d_model=32, n_layers=n_layers, mixer="slstm",
                          mixer_options={"num_heads": 2, "forget_init": forget_init})
        return [block.mixer.bias[1].detach() for block in SequenceModel(cfg).blocks]

    for b in forget_biases("linspace"):
        torch.testing.assert_close(b, torch.linspace(3.0, 6.0, 16).expand(2, 16))
    powerlaw = forget_biases("powerlaw")
    positive = []
    for b in powerlaw:
        torch.testing.assert_close(b[0], b[1])
        assert b[0, 0].item() == pytest.approx(5.0) and b[0, -1].item() == pytest.approx(-7.0)
        assert (b[0, 1:] < b[0, :-1]).all()
        positive.append(int((b[0] > 0).sum()))
    assert positive == sorted(positive) and (n_layers == 1 or positive[0] < positive[-1])


def test_mlstm_parallel_equals_recurrent() -> None:
    """The mLSTM cell's parallel form equals its token loop, from a zero state and continuing
    from a carried state, with gate pre-activations large enough to need the stabiliser."""
    torch.manual_seed(0)
    B, H, T, D = 2, 3, 11, 5
    q, k, v = (torch.randn(B, H, 2 * T, D, dtype=torch.float64) for _ in range(3))
    i = 8.0 * torch.randn(B, H, 2 * T, dtype=torch.float64)
    f = 4.0 * torch.randn(B, H, 2 * T, dtype=torch.float64)
    first, second = slice(0, T), slice(T, 2 * T)
    h_par, s_par = mlstm_parallel(q[:, :, first], k[:, :, first], v[:, :, first],
                                  i[:, :, first], f[:, :, first])
    h_rec, s_rec = mlstm_recurrent(q[:, :, first], k[:, :, first], v[:, :, first],
                                   i[:, :, first], f[:, :, first])
    torch.testing.assert_close(h_par, h_rec, rtol=1e-10, atol=1e-10)
    for a, b in zip(s_par, s_rec, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    h_par2, _ = mlstm_parallel(q[:, :, second], k[:, :, second], v[:, :, second],
                               i[:, :, second], f[:, :, second], s_par)
    h_rec2, _ = mlstm_recurrent(q[:, :, second], k[:, :, second], v[:, :, second],
                                i[:, :, second], f[:, :, second], s_rec)
    torch.testing.assert_close(h_par2, h_rec2, rtol=1e-10, atol=1e-10)
    h_all, _ = mlstm_recurrent(q, k, v, i, f)
    torch.testing.assert_close(h_par2, h_all[:, :, second], rtol=1e-10, atol=1e-10)


def test_deltaproduct_forget_gate_acts_once_per_token() -> None:
    """With use_gate and n Householder factors, only the first factor of a token is scaled by
    the forget gate α ∈ (0, 1): the eigenvalue along k_j is α(1 − β_1) for j = 1 and 1 − β_j
    after, as the forward pass applies them (measured through the op)."""
    torch.manual_seed(0)
    layer = build_mixer("deltanet", 16, {"num_householder": 3, "use_gate": True,
                                         "eig_range": [-1, 1], "num_heads": 2}).double()
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    lam = layer.transition_eigenvalues(x)  # [B, T, n, H]
    _, _, _, beta, alpha, *_ = layer._features(x, None)
    assert torch.all((alpha[:, :, 0] > 0) & (alpha[:, :, 0] < 1))
    torch.testing.assert_close(lam[:, :, 0], alpha[:, :, 0] * (1 - beta[:, :, 0]))
    torch.testing.assert_close(lam[:, :, 1:], 1 - beta[:, :, 1:])


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_deltanet_feeds_the_op_one_dtype_under_autocast(
    device: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under bf16 autocast q, k and v reach the delta rule in bf16. CUDA autocast runs
    F.normalize in float32 (float32 q would put the Triton kernels on their exact-float32
    path); CPU autocast does not, so here normalize returns float32 on every device, as CUDA's
    does, and the test fails on a CPU too if the layer stops casting."""
    import statetrack.layers.deltanet as deltanet

    seen: dict[str, torch.dtype] = {}
    op = deltanet.delta_rule
    normalize = torch.nn.functional.normalize
    monkeypatch.setattr(torch.nn.functional, "normalize",
                        lambda *args, **kwargs: normalize(*args, **kwargs).float())

    def spy(q, k, v, beta, **kwargs):  # noqa: ANN001, ANN003, ANN202 (mirrors delta_rule)
        seen.update(q=q.dtype, k=k.dtype, v=v.dtype)
        return op(q, k, v, beta, **kwargs)

    monkeypatch.setattr(deltanet, "delta_rule", spy)
    layer = build_mixer("deltanet", 64, {"num_heads": 2, "eig_range": [-1, 1]}).to(device)
    with torch.autocast(device, dtype=torch.bfloat16):
        layer(torch.randn(2, 7, 64, device=device))
    assert seen == {"q": torch.bfloat16, "k": torch.bfloat16, "v": torch.bfloat16}


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_deltanet_unit_keys_keep_bf16_eigenvalues_in_range(device: str) -> None:
    """Under bf16 autocast k reaches the op in bf16 with ‖k‖² ≠ 1, so at β = 2 the eigenvalue
    1 − β‖k‖² falls below −1; ``unit_keys`` puts it back at 1 − β ∈ [−1, 1] (up to float32),
    and through a whole bf16 forward and backward."""
    torch.manual_seed(0)
    layers = {}
    for unit in (False, True):
        torch.manual_seed(0)
        layer = build_mixer("deltanet", 128, {"num_heads": 4, "eig_range": [-1, 1],
                                              "unit_keys": unit}).to(device)
        with torch.no_grad():  # g = sigmoid(b_proj(x)) rounds to 1 in bf16: β = 2 everywhere
            layer.b_proj.weight.fill_(1.0)
        layers[unit] = layer
    x = torch.randn(4, 64, 128, device=device).abs()
    lam = {}
    for unit, layer in layers.items():
        with torch.autocast(device, dtype=torch.bfloat16):
            _, k, _, beta, *_ = layer._features(x, None)
        assert k.dtype == torch.bfloat16
        lam[unit] = 1 - beta.double() * k.double().square().sum(-1)
    assert lam[False].min() < -1 - 1e-3  # the rounding this option exists for
    assert lam[True].min() >= -1 - 1e-6 and lam[True].max() <= 1 + 1e-6
    layer = layers[True]
    with torch.autocast(device, dtype=torch.bfloat16):
        y, _ = layer(x)
    y.float().square().mean().backward()
    assert torch.isfinite(y).all() and torch.isfinite(layer.b_proj.weight.grad).all()


def test_deltanet_unit_keys_change_nothing_at_exact_keys() -> None:
    """In float64 ‖k‖ = 1 to rounding, so ``unit_keys`` gives the same output and state."""
    x = torch.randn(2, 9, D_MODEL, dtype=torch.float64)
    outs = []
    for unit in (False, True):
        mixer = make("deltanet", {"eig_range": NEG, "unit_keys": unit})
        y, state = mixer(x)
        outs.append((y, state[3]))
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-12, atol=1e-12)
