"""The "lanes" layout of the selective scan (``triton_lanes.py``, ``triton_lanes_bwd.py``: time
over lanes, a loop over the N states) equals the float64 token loop: y, h_T and every gradient,
for eig_range [0, 1] and [−1, 1], partial time chunks and channel blocks, and transitions
exactly −1, 0 and 1; its forward saves the same states as the chunked forward, so either
backward can follow it.

One CPU test runs the kernels under TRITON_INTERPRET=1 in a subprocess (the variable must be
set before triton is imported); the GPU tests mirror ``test_scan_triton.py``'s with the layout
switched.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch
from test_scan_triton import RANGES, TOL, needs_cuda, rel, ss_check, ss_inputs
from triton_interpreter_shim import run_interpreted

from statetrack.eig import EigRange

ti = pytest.importorskip("statetrack.ops.selective_scan.triton_impl")


def exact_transitions(inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """State 0 gets A = 0 (a = hi = 1 exactly), state 1 A = −1e6 (exp underflows to 0 in float32
    and float64: a = lo exactly, i.e. 0 for [0, 1] and −1 for [−1, 1])."""
    A = inputs[2].clone()
    A[:, 0], A[:, 1] = 0.0, -1e6
    return inputs[:2] + [A] + inputs[3:]


def optional_check(inputs: list[torch.Tensor], eig: EigRange) -> None:
    """Without D, z, dt_bias and the initial state: y, h_T and dx, ddt, dA, dB, dC (fp32)."""
    from statetrack.ops.selective_scan.reference import selective_scan_reference
    from statetrack.ops.selective_scan.triton_impl import selective_scan_triton

    low = [t.float() for t in inputs[:5]]
    ref_in = [t.double().requires_grad_() for t in low]
    tri_in = [t.clone().requires_grad_() for t in low]
    y_r, h_r = selective_scan_reference(*ref_in, None, None, None, eig, None)
    y_t, h_t = selective_scan_triton(*tri_in, None, None, None, eig, None,
                                     output_final_state=True)
    gen = torch.Generator().manual_seed(5)
    gy = torch.randn(y_r.shape, generator=gen, dtype=torch.float64).to(y_r.device)
    (y_r * gy).sum().backward()
    (y_t.double() * gy).sum().backward()
    errs = {"y": rel(y_t, y_r), "h_T": rel(h_t, h_r)}
    errs.update({f"d{n}": rel(t.grad, r.grad)
                 for n, t, r in zip(("x", "dt", "A", "B", "C"), tri_in, ref_in, strict=True)})
    bad = {k: v for k, v in errs.items() if not v <= 1e-4}
    assert not bad, f"eig_range {eig}, no D/z/bias/h0: relative errors over 1e-4: {bad}"


def test_layout_switch_reads_env_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """STATETRACK_SCAN_LAYOUT overrides the module attribute at every call; a bad value is
    named with the allowed ones."""
    monkeypatch.delenv("STATETRACK_SCAN_LAYOUT", raising=False)
    monkeypatch.setattr(ti, "LAYOUT", "chunk")
    assert ti.scan_layout() == "chunk"
    monkeypatch.setattr(ti, "LAYOUT", "lanes")
    assert ti.scan_layout() == "lanes"
    monkeypatch.setenv("STATETRACK_SCAN_LAYOUT", "chunk")
    assert ti.scan_layout() == "chunk"
    monkeypatch.setenv("STATETRACK_SCAN_LAYOUT", "rows")
    with pytest.raises(ValueError, match=r"'chunk', 'chunk_pipe', 'lanes'.*'rows'"):
        ti.scan_layout()


INTERPRETED = textwrap.dedent("""
    import math
    import torch
    import test_scan_lanes as tsl
    import test_scan_triton as tst
    from statetrack.ops.selective_scan import triton_impl as ti
    from statetrack.eig import EigRange

    empty, empty_like = torch.empty, torch.empty_like

    def nan(out):
        return out.fill_(math.nan) if out.is_floating_point() else out

    torch.empty = lambda *a, **k: nan(empty(*a, **k))  # unwritten outputs show as NaN
    torch.empty_like = lambda *a, **k: nan(empty_like(*a, **k))
    ti.LAYOUT = "lanes"
    # BT = 16: carries across chunks and a partial last chunk; Dm = 6 a partial channel block;
    # SEG = 8: two saved states per forward chunk, the backward restarting every second one
    ti.LANES_CONFIG = ti.LanesConfig(BT=16, BD=4, num_warps=1)
    ti.LANES_BWD_CONFIG = ti.LanesConfig(BT=16, BD=4, num_warps=1)
    ti.FWD_CONFIG = ti.ScanConfig(BT=4, BD=4, SEG=8, num_warps=1)
    ti.BWD_CONFIG = ti.ScanConfig(BT=2, BD=4, SEG=8, num_warps=1)
    gen = torch.Generator().manual_seed(0)
    ins = [t.float() for t in tst.ss_inputs(2, 37, 6, 3, "cpu", gen)]
    for lo in (0.0, -1.0):  # the saved states: the same in both layouts (so either backward)
        _, hT_c, hseg_c = ti._forward(*ins, lo, 1.0 - lo, True)
        _, hT_l, hseg_l = ti._forward_lanes(*ins, lo, 1.0 - lo, True)
        assert hseg_l.shape == hseg_c.shape == (2, 5, 3, 6)
        assert torch.allclose(hseg_l, hseg_c, rtol=1e-5, atol=1e-5), (hseg_l - hseg_c).abs().max()
        assert torch.allclose(hT_l, hT_c, rtol=1e-5, atol=1e-5)
    # T = 20: a carry into a partial second chunk, and restarts after each saved state; the
    # transitions at exactly lo, 0 and 1 in both ranges; the rest at [−1, 1] only (lo and
    # width are runtime scalars of one code path, and the interpreter's time grows per case)
    for T in (3, 20):
        gen = torch.Generator().manual_seed(T)
        inputs = tst.ss_inputs(2, T, 6, 3, "cpu", gen)
        for eig in (EigRange(0.0, 1.0), EigRange(-1.0, 1.0)):
            tst.ss_check(tsl.exact_transitions(inputs), eig, torch.float32, 1e-4)
        eig = EigRange(-1.0, 1.0)
        tst.ss_check(inputs, eig, torch.float32, 1e-4)
        half = [t.clamp(-4, 4) for t in inputs]  # float16-representable magnitudes
        tst.ss_check(half, eig, torch.float16, 1e-2)
        tsl.optional_check(inputs, eig)
        tst.state_only_check(inputs, eig)
    print("interpreted lanes kernels ok")
""")


def test_lanes_kernels_interpreted_match_reference(tmp_path: Path) -> None:
    """TRITON_INTERPRET=1, tiny shapes, fp32 (and fp16 inputs with the fp32 state): y, h_T and
    all 9 gradients equal the float64 loop, with exact −1/0/1 transitions, without the optional
    inputs, with a loss on h_T alone, and NaN-poisoned outputs; the saved states equal the
    chunked forward's."""
    script = tmp_path / "interpreted_lanes.py"
    script.write_text(INTERPRETED)
    proc = run_interpreted(script)
    assert proc.returncode == 0 and "interpreted lanes kernels ok" in proc.stdout, \
        proc.stderr[-3000:]


# The compiled "lanes" kernels against the reference at every T: test_scan_triton.py's
# test_selective_scan_triton_matches_reference, parametrized over both layouts.


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("T", [63, 1000])
@pytest.mark.parametrize("eig", RANGES, ids=str)
@pytest.mark.usefixtures("nan_empty")
def test_lanes_layout_exact_transitions(T: int, eig: EigRange,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Compiled "lanes" kernels with a = 1 and a = lo exactly at every step of two states."""
    monkeypatch.delenv("STATETRACK_SCAN_LAYOUT", raising=False)
    monkeypatch.setattr(ti, "LAYOUT", "lanes")
    gen = torch.Generator().manual_seed(T)
    inputs = exact_transitions(ss_inputs(2, T, 80, 16, "cuda", gen))
    ss_check(inputs, eig, torch.float32, TOL[torch.float32])
