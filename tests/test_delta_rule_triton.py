"""The delta rule's Triton backend equals the float64 token-loop reference: outputs, final state
and every gradient (q, k, v, β, gate, S_0), for β ∈ (0, 2), signed gates (with exact zeros and
±1) and any T. GPU tests run the compiled kernels on CUDA; one CPU test runs the same kernels
under ``TRITON_INTERPRET=1`` in a subprocess (the variable must be set before Triton loads).
"""

from __future__ import annotations

import pytest
import torch
from repo_scripts import ROOT, load_script
from triton_interpreter_shim import run_interpreted

CHECK_SCRIPT = ROOT / "scripts" / "gpu" / "check_delta_rule_triton.py"

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _load_checker():
    return load_script("scripts/gpu/check_delta_rule_triton.py")


def _tolerance(dtype: torch.dtype) -> float:
    # fp32 1e-4, fp16 3e-3, bf16 1e-2 (why: the checker's TOLERANCE)
    return _load_checker().TOLERANCE[dtype]


@pytest.fixture
def poisoned(monkeypatch):
    """Every kernel output starts as NaN, so an element no kernel wrote fails the comparison."""
    from statetrack.ops.delta_rule import triton_impl

    monkeypatch.setattr(triton_impl, "POISON", True)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("T", [1, 63, 64, 65, 1000, 4096])
def test_triton_equals_reference_gated(poisoned, T: int, dtype: torch.dtype) -> None:
    """Gated (negative gates, zeros, ±1), β up to 2, with an initial state: all errors small."""
    B = 1 if T > 1000 else 2
    errs = _load_checker().check(B, T, 2, 32, 48, 2.0, True, dtype, "cuda", seed=T)
    bad = {n: e for n, e in errs.items() if not e <= _tolerance(dtype)}
    assert not bad, f"relative errors above {_tolerance(dtype)}: {bad} (all: {errs})"


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize(("K", "T"), [(32, 65), (32, 4096), (128, 1000)])
def test_triton_fp16_within_fp16_tolerance(poisoned, K: int, T: int) -> None:
    """fp16 inputs (16-bit intermediates, no overflow at T = 4096): errors within 3e-3."""
    errs = _load_checker().check(1, T, 2, K, K, 2.0, True, torch.float16, "cuda", seed=T + 1)
    bad = {n: e for n, e in errs.items() if not e <= _tolerance(torch.float16)}
    assert not bad, f"relative errors above {_tolerance(torch.float16)}: {bad} (all: {errs})"


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize(("K", "V", "T", "gated", "with_h0"), [
    (64, 64, 300, True, True),
    (128, 128, 200, True, False),
    (256, 256, 70, True, True),
    (100, 36, 130, False, False),
])
def test_triton_equals_reference_head_dims(poisoned, K: int, V: int, T: int, gated: bool,
                                           with_h0: bool, dtype: torch.dtype) -> None:
    """Head dims up to 256 (and not powers of two), with and without gate or initial state."""
    errs = _load_checker().check(1, T, 2, K, V, 2.0, gated, dtype, "cuda", seed=K + T,
                                 with_h0=with_h0)
    bad = {n: e for n, e in errs.items() if not e <= _tolerance(dtype)}
    assert not bad, f"relative errors above {_tolerance(dtype)}: {bad} (all: {errs})"


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("uses", ["o", "S"])
@pytest.mark.parametrize("K", [32, 128])
def test_triton_loss_of_one_output(poisoned, K: int, uses: str) -> None:
    """A loss of o alone (S_T not requested, so no dS_T reaches the backward) or of S_T alone
    (no dO): the gradients still equal the reference, and q's is exactly zero for S_T alone."""
    errs = _load_checker().check(2, 130, 2, K, K, 2.0, True, torch.float32, "cuda", seed=K,
                                 uses=uses)
    bad = {n: e for n, e in errs.items() if not e <= _tolerance(torch.float32)}
    assert not bad, f"relative errors above {_tolerance(torch.float32)}: {bad} (all: {errs})"


@pytest.mark.gpu
@needs_cuda
def test_public_dispatch_reaches_triton() -> None:
    """delta_rule(backend='triton') returns v's dtype, a float32 state, and matches torch."""
    from statetrack.ops.delta_rule import delta_rule

    g = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(2, 100, 2, 32, device="cuda", generator=g)
    k = torch.nn.functional.normalize(torch.randn_like(q), dim=-1)
    v = torch.randn(2, 100, 2, 16, device="cuda", generator=g)
    beta = 2 * torch.rand(2, 100, 2, device="cuda", generator=g)
    gate = 2 * torch.rand(2, 100, 2, device="cuda", generator=g) - 1
    o, S = delta_rule(q, k, v, beta, gate=gate, output_final_state=True, backend="triton")
    o_r, S_r = delta_rule(q.double(), k.double(), v.double(), beta.double(), gate=gate.double(),
                          output_final_state=True, backend="reference")
    assert o.dtype == v.dtype and S.dtype == torch.float32
    assert ((o - o_r).norm() / o_r.norm()).item() < 1e-4
    assert ((S - S_r).norm() / S_r.norm()).item() < 1e-4


def test_triton_kernels_under_interpreter() -> None:
    """The same kernels, interpreted on CPU (tiny shapes, two chunks, V-tiles with a ragged
    edge, gated and not), match the float64 reference in every output: to 1e-4 in float32, and
    to 3e-3 in fp16, which takes the 16-bit path (16-bit intermediates and dots; the
    interpreter computes bf16 wrongly, fp16 correctly)."""
    proc = run_interpreted(
        CHECK_SCRIPT, "--device", "cpu", "--T", "3", "70",
        "--dims", "1", "2", "16", "--V", "24", "--dtypes", "fp32", "fp16",
        env={"STATETRACK_TRITON_POISON": "1"}, timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("fp32", "fp16"):
        assert f"{name}: worst relative error" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.parametrize("split", ["0", "1"], ids=["fused", "split"])
def test_loss_of_one_output_under_interpreter(split: str) -> None:
    """Interpreted, float32: a loss of o alone (the state kernel's path without dS_T) and of
    S_T alone (a zero dO) match the reference, with the fused and the split backward."""
    proc = run_interpreted(
        CHECK_SCRIPT, "--device", "cpu", "--T", "70", "--dims", "1", "2", "16", "--V", "24",
        "--dtypes", "fp32", "--uses", "o", "S",
        env={"STATETRACK_TRITON_POISON": "1", "STATETRACK_TRITON_SPLIT_GRAD": split},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "loss of o" in proc.stdout and "loss of S" in proc.stdout, proc.stdout
    assert "fp32: worst relative error" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.parametrize(("K", "V", "bkt"), [(24, 40, "16"), (128, 72, "64"), (128, 72, None),
                                             (200, 24, "64")],
                         ids=["K24-2tiles-ragged", "K128-2tiles", "K128-default-1tile",
                              "K200-BT32-4tiles"])
def test_split_backward_under_interpreter(K: int, V: int, bkt: str | None) -> None:
    """The split local backward (chunk_dqk_kernel + chunk_wy_bwd_kernel, forced on with
    STATETRACK_TRITON_SPLIT_GRAD=1) matches the float64 reference like the fused kernel: 1e-4
    in float32, 3e-3 in fp16, gated (negative, zero, ±1) and not, β up to 2, a partial last
    chunk, ragged V-tiles, and K cut into NK = BK / BKT ≥ 2 tiles (the last one partly past K
    at K = 24 and K = 200; BT = 32 at K = 200). Outputs and scratch are poisoned."""
    proc = run_interpreted(
        CHECK_SCRIPT, "--device", "cpu", "--T", "3", "70",
        "--dims", "1", "2", str(K), "--V", str(V), "--dtypes", "fp32", "fp16",
        env={"STATETRACK_TRITON_POISON": "1", "STATETRACK_TRITON_SPLIT_GRAD": "1",
             **({} if bkt is None else {"STATETRACK_TRITON_SPLIT_BKT": bkt})}, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("fp32", "fp16"):
        assert f"{name}: worst relative error" in proc.stdout, proc.stdout + proc.stderr
    assert "dgate=" in proc.stdout  # the gated runs took the gate branch


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize(("K", "V", "T"), [(32, 48, 1000), (64, 64, 300), (128, 128, 200),
                                           (256, 256, 70), (100, 36, 130)])
def test_split_backward_equals_reference(poisoned, monkeypatch, K: int, V: int, T: int,
                                         dtype: torch.dtype) -> None:
    """The split local backward (forced on for every key width) on the GPU, gated, β up to 2."""
    from statetrack.ops.delta_rule import triton_impl

    monkeypatch.setattr(triton_impl, "SPLIT_FORCED", True)
    errs = _load_checker().check(1, T, 2, K, V, 2.0, True, dtype, "cuda", seed=K + T)
    bad = {n: e for n, e in errs.items() if not e <= _tolerance(dtype)}
    assert not bad, f"relative errors above {_tolerance(dtype)}: {bad} (all: {errs})"


@pytest.mark.parametrize(("qk_dtype", "warns"), [(torch.float32, True), (torch.bfloat16, False)])
def test_mixed_dtypes_on_the_triton_path_warn(monkeypatch, qk_dtype: torch.dtype,
                                              warns: bool) -> None:
    """float32 q, k with bf16 v would silently take the slow exact-float32 kernels: the op
    warns, naming the dtypes; matching dtypes pass quietly. (The kernels are replaced by a stub:
    this checks the dispatch, on any machine.)"""
    import warnings

    from statetrack.ops import delta_rule
    from statetrack.ops.delta_rule import triton_impl

    calls = []

    def stub(q, k, v, beta, gate, h0, final):
        calls.append(q.dtype)
        return torch.zeros_like(v), None
    monkeypatch.setattr(triton_impl, "delta_rule_triton", stub)
    q, k = (torch.randn(1, 3, 2, 8).to(qk_dtype) for _ in range(2))
    v, beta = torch.randn(1, 3, 2, 8).to(torch.bfloat16), torch.rand(1, 3, 2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        delta_rule(q, k, v, beta, backend="triton")
    mixed = [w for w in caught if "differ" in str(w.message)]
    assert calls == [qk_dtype]
    assert len(mixed) == int(warns), [str(w.message) for w in caught]
    if warns:
        assert "torch.float32" in str(mixed[0].message) and "torch.bfloat16" in str(
            mixed[0].message)
