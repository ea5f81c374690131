"""The Triton scans (selective_scan, linear_scan) equal the float64 token loops: outputs, final
state and every gradient, for eig_range [0, 1] and [−1, 1] and transitions exactly −1, 0, 1.

GPU tests run the compiled kernels; one CPU test runs them under TRITON_INTERPRET=1 on tiny
shapes in a subprocess (the variable must be set before triton is imported).
"""

from __future__ import annotations

import dataclasses
import importlib
import textwrap
from pathlib import Path

import pytest
import torch
from triton_interpreter_shim import run_interpreted

from statetrack.eig import EigRange
from statetrack.ops.linear_scan.reference import linear_scan_reference
from statetrack.ops.selective_scan.reference import selective_scan_reference

RANGES = [EigRange(0.0, 1.0), EigRange(-1.0, 1.0)]
TOL = {torch.float32: 1e-4, torch.bfloat16: 1e-2}
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
SS_NAMES = ("x", "dt", "A", "B", "C", "D", "z", "dt_bias", "initial_state")


def rel(x: torch.Tensor, y: torch.Tensor) -> float:
    """‖x − y‖ / ‖y‖, NaN-propagating (a NaN anywhere makes the check fail)."""
    x, y = x.double(), y.double()
    return ((x - y).norm() / y.norm().clamp_min(1e-30)).item()


def ss_inputs(Bsz: int, T: int, Dm: int, N: int, device: str, gen: torch.Generator
              ) -> list[torch.Tensor]:
    """float64 inputs: A < 0 spread over two decades, dt around softplus's bend."""
    def g(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, dtype=torch.float64).to(device)
    A = -torch.exp(torch.randn(Dm, N, generator=gen, dtype=torch.float64)).to(device)
    return [g(Bsz, T, Dm), g(Bsz, T, Dm) - 1, A, g(Bsz, T, N), g(Bsz, T, N), g(Dm),
            g(Bsz, T, Dm), 0.5 * g(Dm), g(Bsz, Dm, N)]


def ss_check(inputs: list[torch.Tensor], eig: EigRange, dtype: torch.dtype, tol: float) -> None:
    """Triton (inputs cast to dtype) vs the float64 loop on the same cast values."""
    from statetrack.ops.selective_scan.triton_impl import selective_scan_triton

    low = [t.to(dtype) for t in inputs]
    ref_in = [t.double().requires_grad_() for t in low]
    tri_in = [t.clone().requires_grad_() for t in low]
    y_r, h_r = selective_scan_reference(*ref_in[:8], eig, ref_in[8])
    y_t, h_t = selective_scan_triton(*tri_in[:8], eig, tri_in[8], output_final_state=True)
    gen = torch.Generator().manual_seed(7)
    gy = torch.randn(y_r.shape, generator=gen, dtype=torch.float64).to(y_r.device)
    gh = torch.randn(h_r.shape, generator=gen, dtype=torch.float64).to(y_r.device)
    ((y_r * gy).sum() + (h_r * gh).sum()).backward()
    ((y_t.double() * gy).sum() + (h_t.double() * gh).sum()).backward()
    assert y_t.dtype == dtype and h_t.dtype == torch.float32
    errs = {"y": rel(y_t, y_r), "h_T": rel(h_t, h_r)}
    pairs = zip(SS_NAMES, tri_in, ref_in, strict=True)
    errs.update({f"d{n}": rel(t.grad, r.grad) for n, t, r in pairs})
    bad = {k: v for k, v in errs.items() if not v <= tol}
    assert not bad, f"eig_range {eig}, {dtype}: relative errors over {tol}: {bad}"


def state_only_check(inputs: list[torch.Tensor], eig: EigRange) -> None:
    """Only h_T carries a gradient (y unused, so its gradient reaches the backward as None):
    the gradients of what h_T depends on match the float64 loop (fp32), and those of C, D and
    z, which only y depends on, are zero."""
    from statetrack.ops.selective_scan.triton_impl import selective_scan_triton

    low = [t.float() for t in inputs]
    ref_in = [t.double().requires_grad_() for t in low]
    tri_in = [t.clone().requires_grad_() for t in low]
    h_r = selective_scan_reference(*ref_in[:8], eig, ref_in[8])[1]
    h_t = selective_scan_triton(*tri_in[:8], eig, tri_in[8], output_final_state=True)[1]
    gen = torch.Generator().manual_seed(9)
    gh = torch.randn(h_r.shape, generator=gen, dtype=torch.float64).to(h_r.device)
    (h_r * gh).sum().backward()
    (h_t.double() * gh).sum().backward()
    pairs = zip(SS_NAMES, tri_in, ref_in, strict=True)
    errs = {f"d{n}": rel(t.grad, r.grad) for n, t, r in pairs if r.grad is not None}
    assert set(errs) == {"dx", "ddt", "dA", "dB", "ddt_bias", "dinitial_state"}
    bad = {k: v for k, v in errs.items() if not v <= 1e-4}
    assert not bad, f"eig_range {eig}, h_T only: relative errors over 1e-4: {bad}"
    for name, t in zip(SS_NAMES, tri_in, strict=True):
        if name in ("C", "D", "z"):
            assert t.grad is None or not t.grad.any(), name


def signed_factors(shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    """a in [−1, 1] with exact −1, 0 and 1 at many places, and runs of each."""
    a = torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1
    u = torch.rand(shape, generator=gen, dtype=torch.float64)
    a[u < 0.1] = 0.0
    a[(u >= 0.1) & (u < 0.2)] = -1.0
    a[(u >= 0.2) & (u < 0.3)] = 1.0
    T = shape[1]
    a[:, T // 3: T // 3 + 4] = -1.0
    a[:, T // 2: T // 2 + 3] = 0.0
    return a


def ls_check(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor, dtype: torch.dtype,
             tol: float) -> None:
    linear_scan_triton = importlib.import_module(
        "statetrack.ops.linear_scan.triton_impl").linear_scan_triton

    low = [t.to(dtype) for t in (a, b, h0)]
    ref_in = [t.double().requires_grad_() for t in low]
    tri_in = [t.clone().requires_grad_() for t in low]
    h_r, hT_r = linear_scan_reference(*ref_in)
    h_t, hT_t = linear_scan_triton(*tri_in)
    gen = torch.Generator().manual_seed(3)
    gh = torch.randn(h_r.shape, generator=gen, dtype=torch.float64).to(a.device)
    gT = torch.randn(hT_r.shape, generator=gen, dtype=torch.float64).to(a.device)
    ((h_r * gh).sum() + (hT_r * gT).sum()).backward()
    ((h_t.double() * gh).sum() + (hT_t.double() * gT).sum()).backward()
    errs = {"h": rel(h_t, h_r), "h_T": rel(hT_t, hT_r)}
    pairs = zip(("da", "db", "dh0"), tri_in, ref_in, strict=True)
    errs.update({n: rel(t.grad, r.grad) for n, t, r in pairs})
    bad = {k: v for k, v in errs.items() if not v <= tol}
    assert not bad, f"{dtype}: relative errors over {tol}: {bad}"


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("T", [1, 63, 64, 65, 1000, 4096])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("eig", RANGES, ids=str)
@pytest.mark.parametrize("layout", ["chunk", "chunk_pipe", "lanes"])  # triton_impl.LAYOUTS
@pytest.mark.usefixtures("nan_empty")
def test_selective_scan_triton_matches_reference(T: int, dtype: torch.dtype, eig: EigRange,
                                                 layout: str, monkeypatch: pytest.MonkeyPatch
                                                 ) -> None:
    """Compiled kernels of each layout: outputs, h_T and all 9 gradients within 1e-4 (fp32) /
    1e-2 (bf16)."""
    from statetrack.ops.selective_scan import triton_impl as ti

    monkeypatch.delenv("STATETRACK_SCAN_LAYOUT", raising=False)
    monkeypatch.setattr(ti, "LAYOUT", layout)
    gen = torch.Generator().manual_seed(T)
    inputs = ss_inputs(2, T, 80, 16, "cuda", gen)  # Dm = 80: a partial channel block
    ss_check(inputs, eig, dtype, TOL[dtype])


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("T", [65, 1000])
@pytest.mark.parametrize("layout", ["chunk", "chunk_pipe", "lanes"])
@pytest.mark.usefixtures("nan_empty")
def test_selective_scan_triton_one_output_gradient(T: int, layout: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Compiled kernels of each layout with only h_T in the loss, then only y (without D, z,
    dt_bias and h0): the unused output's gradient arrives as None, and no zeros stand in."""
    import test_scan_lanes as tsl

    from statetrack.ops.selective_scan import triton_impl as ti

    monkeypatch.delenv("STATETRACK_SCAN_LAYOUT", raising=False)
    monkeypatch.setattr(ti, "LAYOUT", layout)
    inputs = ss_inputs(2, T, 80, 16, "cuda", torch.Generator().manual_seed(T))
    state_only_check(inputs, EigRange(-1.0, 1.0))
    tsl.optional_check(inputs, EigRange(-1.0, 1.0))


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("T", [1, 63, 64, 65, 1000, 4096])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.usefixtures("nan_empty")
def test_linear_scan_triton_exact_signs(T: int, dtype: torch.dtype) -> None:
    """Compiled kernels with a ∈ {−1, 0, 1} at many steps: h, h_T, da, db, dh0 match."""
    gen = torch.Generator().manual_seed(T)
    a = signed_factors((2, T, 3, 50), gen).cuda()
    b = torch.randn(2, T, 3, 50, generator=gen, dtype=torch.float64).cuda()
    h0 = torch.randn(2, 3, 50, generator=gen, dtype=torch.float64).cuda()
    ls_check(a, b, h0, dtype, TOL[dtype])


def record_launches(monkeypatch: pytest.MonkeyPatch, *keys: str) -> list[tuple]:
    """Replace the selective scan's forward and backward kernels by recorders: each launch
    appends ("fwd" or "bwd", its keyword arguments named by ``keys``) to the returned list."""
    from statetrack.ops.selective_scan import triton_impl as ti

    launched: list[tuple] = []

    class Recorder:
        def __init__(self, name: str) -> None:
            self.name = name

        def __getitem__(self, grid):
            return lambda *args, **kw: launched.append((self.name, *(kw[k] for k in keys)))

    monkeypatch.setattr(ti, "ss_fwd_kernel", Recorder("fwd"))
    monkeypatch.setattr(ti, "ss_bwd_kernel", Recorder("bwd"))
    return launched


def test_pipe_tiles_choice() -> None:
    """chunk_pipe takes "few" for T up to short_T; past it "many" from many_per_sm programs per
    multiprocessor (a CPU counts as one), "fewest" below fewest_per_sm and "few" between; the
    defaults keep each set's forward and backward on one SEG."""
    import dataclasses

    from statetrack.ops.selective_scan import triton_impl as ti

    cpu = torch.device("cpu")
    tiles = dataclasses.replace(ti.PIPE_TILES, many_per_sm=4, short_T=64, fewest_per_sm=2)
    bd = tiles.many[0].BD
    assert len({tiles.many, tiles.few, tiles.fewest}) == 3
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ti, "PIPE_TILES", tiles)
        assert ti.pipe_tiles(4, 65, bd, cpu) == tiles.many  # 4 programs, T past short_T
        assert ti.pipe_tiles(3, 65, bd, cpu) == tiles.few  # 3 programs
        assert ti.pipe_tiles(2, 65, bd, cpu) == tiles.few  # 2: not below fewest_per_sm
        assert ti.pipe_tiles(1, 65, bd, cpu) == tiles.fewest  # 1 program
        assert ti.pipe_tiles(1, 65, 4 * bd, cpu) == tiles.many  # programs also over channels
        assert ti.pipe_tiles(1, 65, 3 * bd + 1, cpu) == tiles.many  # a partial block counts
        assert ti.pipe_tiles(1, 65, bd + 1, cpu) == tiles.few  # 2 programs
        assert ti.pipe_tiles(4, 64, bd, cpu) == tiles.few  # T = short_T
        assert ti.pipe_tiles(1, 64, bd, cpu) == tiles.few  # short T wins over a small grid
        mp.setattr(ti, "PIPE_TILES", dataclasses.replace(tiles, fewest=None))
        assert ti.pipe_tiles(1, 65, bd, cpu) == tiles.few  # no "fewest" set: "few"
    for f, b in ti.PIPE_TILES.sets().values():
        assert f.SEG == b.SEG and f.SEG % f.BT == 0 and b.SEG % b.BT == 0


def test_pipe_tiles_dense_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    """The dense set (the default's SEG equals its backward's BT) is taken only when the
    forward saves states, the grid is not below fewest_per_sm and its saved states fit
    dense_max_bytes or STATETRACK_SCAN_DENSE_MIB (0: off; anything but a non-negative integer
    refused); otherwise the choice is the recomputing sets' as before. A dense set whose SEG
    is not its backward's BT is refused."""
    import dataclasses

    from statetrack.ops.selective_scan import triton_impl as ti

    cpu = torch.device("cpu")
    dense = ti.PIPE_TILES.dense
    assert dense is not None and dense[0].SEG == dense[1].SEG == dense[1].BT
    # 4 programs of BD channels; the saved states of (B, T = 64, N = 16, Dm = BD) in bytes
    tiles = dataclasses.replace(ti.PIPE_TILES, many_per_sm=4, short_T=0, fewest_per_sm=2)
    bd = tiles.many[0].BD
    size = lambda B: 4 * B * (64 // dense[0].SEG) * 16 * bd  # noqa: E731
    monkeypatch.setattr(ti, "PIPE_TILES", dataclasses.replace(tiles, dense_max_bytes=size(4)))
    monkeypatch.delenv(ti.DENSE_ENV, raising=False)
    choose = lambda B, save=True: ti.pipe_tiles(B, 64, bd, cpu, N=16, save=save)  # noqa: E731
    assert choose(4) == dense and choose(2) == dense  # fits; 2 programs: not below 2 per SM
    assert choose(4, save=False) == tiles.many  # inference saves nothing
    assert choose(1) == tiles.fewest  # a grid below fewest_per_sm
    assert choose(8) == tiles.many  # twice the limit
    monkeypatch.setenv(ti.DENSE_ENV, str(size(8) // 2**20 + 1))
    assert choose(8) == dense
    monkeypatch.setenv(ti.DENSE_ENV, "0")
    assert choose(4) == tiles.many and choose(2) == tiles.few
    for bad in ("-1", "1.5", "lots"):
        monkeypatch.setenv(ti.DENSE_ENV, bad)
        with pytest.raises(ValueError, match="STATETRACK_SCAN_DENSE_MIB: expected a non-neg"):
            choose(4)
    monkeypatch.delenv(ti.DENSE_ENV)
    f, b = dense
    monkeypatch.setattr(ti, "PIPE_TILES", dataclasses.replace(
        tiles, dense=(dataclasses.replace(f, SEG=8), dataclasses.replace(b, SEG=8))))
    with pytest.raises(ValueError, match="PIPE_TILES.dense needs SEG = the backward's BT"):
        choose(4)


def test_backward_takes_the_forward_tiles(monkeypatch: pytest.MonkeyPatch) -> None:
    """The backward launches the tile paired with the one its forward took (whose SEG spaced
    the saved states), even when PIPE_TILES or the dense limit change in between."""
    import dataclasses

    from statetrack.ops.selective_scan import selective_scan
    from statetrack.ops.selective_scan import triton_impl as ti

    launched = record_launches(monkeypatch, "BT", "SEG")
    monkeypatch.delenv("STATETRACK_SCAN_LAYOUT", raising=False)
    monkeypatch.delenv(ti.DENSE_ENV, raising=False)
    monkeypatch.setattr(ti, "LAYOUT", "chunk_pipe")
    dense = (ti.ScanConfig(BT=2, BD=4, SEG=2), ti.ScanConfig(BT=2, BD=4, SEG=2))
    other = (ti.ScanConfig(BT=4, BD=4, SEG=8), ti.ScanConfig(BT=4, BD=4, SEG=8))
    monkeypatch.setattr(ti, "PIPE_TILES", ti.PipeTiles(many=other, few=other, dense=dense))
    ins = [t.float().requires_grad_()
           for t in ss_inputs(1, 10, 4, 2, "cpu", torch.Generator().manual_seed(0))[:8]]
    y, _ = selective_scan(*ins[:5], D=ins[5], z=ins[6], dt_bias=ins[7], backend="triton")
    monkeypatch.setenv(ti.DENSE_ENV, "0")  # would now choose "many"
    torch.autograd.grad(y, ins, torch.ones_like(y))
    assert launched == [("fwd", 2, 2), ("bwd", 2, 2)]
    launched.clear()
    y, _ = selective_scan(*ins[:5], D=ins[5], z=ins[6], dt_bias=ins[7], backend="triton")
    third = (ti.ScanConfig(BT=1, BD=4, SEG=8), ti.ScanConfig(BT=1, BD=4, SEG=8))
    ti.PIPE_TILES = dataclasses.replace(ti.PIPE_TILES, many=third, few=third)
    torch.autograd.grad(y, ins, torch.ones_like(y))
    assert launched == [("fwd", 4, 8), ("bwd", 4, 8)]


def test_launched_tiles_follow_the_settings_in_force_at_each_call(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The chunk_pipe tiles are remembered per shape, yet every forward+backward launches those
    of the PIPE_TILES, LAYOUT and STATETRACK_SCAN_LAYOUT in force at its call: tiles replaced
    between calls of one shape (each old object freed, so a new one may take its id), tiles put
    back, a switch to "chunk" (FWD_CONFIG, BWD_CONFIG) and back by the variable; a set whose
    forward and backward SEG differ is refused at every call, not only the first."""
    from statetrack.ops.selective_scan import selective_scan
    from statetrack.ops.selective_scan import triton_impl as ti

    launched = record_launches(monkeypatch, "BT", "BD")
    monkeypatch.delenv("STATETRACK_SCAN_LAYOUT", raising=False)
    monkeypatch.setattr(ti, "LAYOUT", "chunk_pipe")
    ins = [t.float().requires_grad_()
           for t in ss_inputs(1, 10, 4, 2, "cpu", torch.Generator().manual_seed(0))[:8]]

    def launch() -> list[tuple[str, int, int]]:
        launched.clear()
        y, _ = selective_scan(*ins[:5], D=ins[5], z=ins[6], dt_bias=ins[7], backend="triton")
        torch.autograd.grad(y, ins, torch.ones_like(y))
        return launched

    pair = (ti.ScanConfig(BT=4, BD=4, SEG=8), ti.ScanConfig(BT=2, BD=4, SEG=8))
    first = ti.PipeTiles(many=pair, few=pair)
    monkeypatch.setattr(ti, "PIPE_TILES", first)  # restored at the end
    for bt, bd in [(8, 4), (4, 8), (8, 8), (2, 4), (8, 4), (4, 4)]:
        pair = (ti.ScanConfig(BT=bt, BD=bd, SEG=8), ti.ScanConfig(BT=bt // 2, BD=bd, SEG=8))
        ti.PIPE_TILES = None  # frees the last set: the next object may take its id
        ti.PIPE_TILES = ti.PipeTiles(many=pair, few=pair)
        assert launch() == [("fwd", bt, bd), ("bwd", bt // 2, bd)]
    ti.PIPE_TILES = first
    assert launch() == [("fwd", 4, 4), ("bwd", 2, 4)]
    monkeypatch.setattr(ti, "LAYOUT", "chunk")
    monkeypatch.setattr(ti, "FWD_CONFIG", ti.ScanConfig(BT=2, BD=2, SEG=8))
    monkeypatch.setattr(ti, "BWD_CONFIG", ti.ScanConfig(BT=1, BD=2, SEG=8))
    assert launch() == [("fwd", 2, 2), ("bwd", 1, 2)]
    monkeypatch.setenv("STATETRACK_SCAN_LAYOUT", "chunk_pipe")
    assert launch() == [("fwd", 4, 4), ("bwd", 2, 4)]
    f, b = first.few
    monkeypatch.setattr(ti, "PIPE_TILES", dataclasses.replace(
        first, few=(f, dataclasses.replace(b, SEG=16))))
    for _ in range(2):
        with pytest.raises(ValueError, match="PIPE_TILES.few has forward SEG = 8"):
            launch()


def test_host_integer_helpers_equal_triton() -> None:
    """The host's cdiv and next_power_of_2 (plain Python, for launch overhead) equal Triton's."""
    import triton

    from statetrack.ops.selective_scan import triton_impl as ti

    for n in range(0, 5000):
        assert ti._next_power_of_2(n) == triton.next_power_of_2(n), n
        for d in (1, 2, 3, 4, 8, 16, 64, 100):
            assert ti._cdiv(n, d) == triton.cdiv(n, d), (n, d)


def test_grad_buffers_keep_parameter_sums_apart_from_dB_dC() -> None:
    """The backward's atomic sums start at zero, and dA, dD and d dt_bias share no storage with
    the [2, B, T, N] buffer of dB and dC: a parameter's gradient kept in ``.grad`` (they are
    returned as views) holds only the Dm·N + 2·Dm floats of its own sums."""
    from statetrack.ops.selective_scan import triton_impl as ti

    Bsz, T, Dm, N = 3, 50, 6, 4
    x = torch.randn(Bsz, T, Dm)
    grads, dBC = ti._grad_buffers(x, x, None, N)
    dx, ddt, dz, dB, dC, dA, dD, dbias, dh0 = grads
    assert dz is None and dA.shape == (Dm, N) and dD.shape == dbias.shape == (Dm,)
    assert dB.shape == dC.shape == (Bsz, T, N) and dBC.shape == (2, Bsz, T, N)
    for t in (dB, dC, dA, dD, dbias):
        assert t.dtype == torch.float32 and not t.any()
    params = {t.untyped_storage().data_ptr() for t in (dA, dD, dbias)}
    assert len(params) == 1 and dBC.untyped_storage().data_ptr() not in params
    assert dA.untyped_storage().nbytes() == 4 * (Dm * N + 2 * Dm)


def test_recompute_chunk_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    """``ScanConfig.SEG`` must be a multiple of BT, ``RBT`` a multiple of BT that divides SEG,
    and only chunk_pipe's backward takes an RBT other than BT (refused before any kernel
    runs)."""
    from statetrack.ops.selective_scan import triton_impl as ti

    ti.ScanConfig(BT=4, SEG=64, RBT=16)
    ti.ScanConfig(BT=4, SEG=4)  # dense: a state saved at every chunk
    for seg in (2, 6, 66):
        with pytest.raises(ValueError, match="ScanConfig.SEG: expected a multiple of BT = 4"):
            ti.ScanConfig(BT=4, SEG=seg)
    for rbt in (6, 128, 24):
        with pytest.raises(ValueError, match="ScanConfig.RBT"):
            ti.ScanConfig(BT=4, SEG=64, RBT=rbt)
    monkeypatch.setattr(ti, "BWD_CONFIG", ti.ScanConfig(BT=4, BD=8, SEG=64, RBT=16))
    x = torch.zeros(1, 4, 8)
    with pytest.raises(ValueError, match="needs the chunk_pipe layout"):
        ti._backward(x, x, torch.zeros(8, 2), torch.zeros(1, 4, 2), torch.zeros(1, 4, 2),
                     None, None, None, None, x, None, -1.0, 2.0, pipe=False)


def test_time_parts_are_whole_segments_and_never_empty() -> None:
    """A backward split in time gets at most the parts asked for, whole segments each, none
    empty (T = 37 with SEG = 8: 5 segments)."""
    from statetrack.ops.selective_scan import triton_impl as ti

    cfg = ti.ScanConfig(BT=2, BD=4, SEG=8)
    got = {k: ti._time_parts(dataclasses.replace(cfg, parts=k), 37) for k in (1, 2, 3, 4, 5, 9)}
    assert got == {1: (1, 5), 2: (2, 3), 3: (3, 2), 4: (3, 2), 5: (5, 1), 9: (5, 1)}
    assert ti._time_parts(dataclasses.replace(cfg, parts=4), 1) == (1, 1)
    for parts, per_part in got.values():
        assert (parts - 1) * per_part < 5 <= parts * per_part


def test_pipe_tiles_register_cap_reaches_the_launch(monkeypatch: pytest.MonkeyPatch) -> None:
    """A tile's maxnreg is passed to its kernel's launch (forward and backward), and a tile
    without one passes None, which Triton ignores."""
    import dataclasses

    from statetrack.ops.selective_scan import triton_impl as ti

    launches: dict[str, dict] = {}

    class Recorder:
        def __init__(self, name: str) -> None:
            self.name = name

        def __getitem__(self, grid):
            return lambda *args, **kwargs: launches.__setitem__(self.name, kwargs)

    monkeypatch.setattr(ti, "ss_fwd_kernel", Recorder("fwd"))
    monkeypatch.setattr(ti, "ss_bwd_kernel", Recorder("bwd"))
    f, b = ti.ScanConfig(BT=4, BD=4, SEG=8, maxnreg=168), ti.ScanConfig(BT=2, BD=4, SEG=8)
    monkeypatch.setattr(ti, "PIPE_TILES", dataclasses.replace(ti.PIPE_TILES, many=(f, b),
                                                              few=(f, b), dense=None))
    ins = [t.float() for t in ss_inputs(1, 10, 4, 2, "cpu", torch.Generator().manual_seed(0))]
    _, _, hseg = ti._forward(*ins, 0.0, 1.0, True, pipe=True)
    ti._backward(*ins[:8], hseg, torch.zeros(1, 10, 4), None, 0.0, 1.0, pipe=True)
    assert launches["fwd"]["maxnreg"] == 168 and launches["bwd"]["maxnreg"] is None


INTERPRETED = textwrap.dedent("""
    import dataclasses
    import importlib
    import torch
    import test_scan_lanes as tsl
    import test_scan_triton as tst
    from statetrack.ops.selective_scan import triton_impl as ti
    from statetrack.eig import EigRange
    # tiny tiles so chunk carries, segment restarts and partial blocks are all exercised
    ti.FWD_CONFIG = ti.ScanConfig(BT=4, BD=4, SEG=8, num_warps=1)
    ti.BWD_CONFIG = ti.ScanConfig(BT=2, BD=4, SEG=8, num_warps=1)
    # chunk_pipe: "many" (2 programs per multiprocessor; the CPU counts as 1) or "few" tiles
    ti.PIPE_TILES = ti.PipeTiles(
        many=(ti.ScanConfig(BT=2, BD=4, SEG=8, num_warps=1), ti.ScanConfig(BT=2, BD=4, SEG=8)),
        few=(ti.ScanConfig(BT=4, BD=4, SEG=8, num_warps=1), ti.ScanConfig(BT=4, BD=4, SEG=8)))
    tiles_at_start = {"many": ti.PIPE_TILES.many}
    # (layout, many_per_sm): the grid here has 4 programs, so 1 picks "many" and 100 "few"
    CASES = {"chunk": ("chunk", 1), "chunk_pipe": ("chunk_pipe", 1),
             "chunk_pipe_few": ("chunk_pipe", 100)}

    def use(case):
        ti.LAYOUT, per_sm = CASES[case]
        ti.PIPE_TILES = dataclasses.replace(ti.PIPE_TILES, many_per_sm=per_sm)
    li = importlib.import_module("statetrack.ops.linear_scan.triton_impl")
    li.BT, li.BF = 4, 8
    # lo and width are the kernels' runtime scalars: one code path for both ranges, so [0, 1]
    # once (the default layout) and [−1, 1] in each layout; the interpreter's time grows with
    # every case (session 15: 273 s for this script on a slow 2-core machine, now about half)
    signed, unsigned = EigRange(-1.0, 1.0), EigRange(0.0, 1.0)
    RUNS = [(unsigned, "chunk_pipe")] + [(signed, case) for case in CASES]
    for T in (1, 10):  # 10: a restart after one segment of 8, then a partial chunk of 2
        # chunk_pipe: the same kernels without the branches around chunks past T
        for eig, case in RUNS:
            use(case)
            assert ti.pipe_tiles(2, T, 6, torch.device("cpu"))[1].BT == (4 if "few" in case else 2)
            gen = torch.Generator().manual_seed(T)
            inputs = tst.ss_inputs(2, T, 6, 3, "cpu", gen)
            tst.ss_check(inputs, eig, torch.float32, 1e-4)
            tsl.optional_check(inputs, eig)  # without D, z, dt_bias and h0
            tst.state_only_check(inputs, eig)  # y unused: its gradient arrives as None
        # inference (no state saved: SAVE off): chunk_pipe gives what chunk gives
        gen = torch.Generator().manual_seed(T)
        ins = [t.float() for t in tst.ss_inputs(2, T, 6, 3, "cpu", gen)]
        outs = {}
        for case in CASES:
            use(case)
            with torch.no_grad():
                outs[case] = ti.selective_scan_triton(*ins[:8], EigRange(-1.0, 1.0), ins[8],
                                                        output_final_state=True)
        for pipe in ("chunk_pipe", "chunk_pipe_few"):
            for a, b in zip(outs["chunk"], outs[pipe], strict=True):
                assert torch.allclose(a, b, rtol=1e-6, atol=1e-6), (pipe, (a - b).abs().max())
        ti.LAYOUT = "chunk"
        gen = torch.Generator().manual_seed(T)
        a = tst.signed_factors((2, T, 3, 5), gen)
        b = torch.randn(2, T, 3, 5, generator=gen, dtype=torch.float64)
        h0 = torch.randn(2, 3, 5, generator=gen, dtype=torch.float64)
        tst.ls_check(a, b, h0, torch.float32, 1e-4)
    # forward and backward split in time: T = 21 has 3 segments of 8 steps, the last partial;
    # 2 parts hold 2 + 1 of them, 9 one each (3 parts; the GPU tests split into 3 parts);
    # y, h_T and all gradients, with dh_T, with only y in the loss (no dh_T) and with only h_T
    inputs = tst.ss_inputs(2, 21, 6, 3, "cpu", torch.Generator().manual_seed(21))
    for parts, layout in ((2, "chunk"), (9, "chunk_pipe")):
        use(layout)
        split = lambda c: dataclasses.replace(c, parts=parts)
        ti.FWD_CONFIG, ti.BWD_CONFIG = split(ti.FWD_CONFIG), split(ti.BWD_CONFIG)
        ti.PIPE_TILES = dataclasses.replace(
            ti.PIPE_TILES, many=tuple(map(split, ti.PIPE_TILES.many)))
        eig = EigRange(-1.0, 1.0)
        tst.ss_check(inputs, eig, torch.float32, 1e-4)
        tsl.optional_check(inputs, eig)
        tst.state_only_check(inputs, eig)
        with torch.no_grad():  # inference: no states saved
            ins = [t.float() for t in inputs]
            got = ti.selective_scan_triton(*ins[:8], eig, ins[8], output_final_state=True)
        want = tst.selective_scan_reference(*inputs[:8], eig, inputs[8])
        for a, b in zip(got, want, strict=True):
            assert tst.rel(a, b) <= 1e-4, (parts, layout, tst.rel(a, b))
    # the backward's recompute in chunks of RBT = 4 and 8 steps, the reverse loop's BT = 2:
    # T = 21 ends inside a recompute chunk and inside a segment
    use("chunk_pipe")
    for rbt in (4, 8):
        f, b = tiles_at_start["many"]
        ti.PIPE_TILES = dataclasses.replace(
            ti.PIPE_TILES, many=(f, dataclasses.replace(b, RBT=rbt)), many_per_sm=1)
        tst.ss_check(inputs, EigRange(-1.0, 1.0), torch.float32, 1e-4)
    # dense (SEG = BT): the forward saves every chunk's entering state and the backward
    # recomputes nothing; T = 21 ends inside a chunk; whole, then split in 3 parts of 11 chunks
    dense = (ti.ScanConfig(BT=2, BD=4, SEG=2, num_warps=1), ti.ScanConfig(BT=2, BD=4, SEG=2))
    for parts in (1, 3):
        pair = tuple(dataclasses.replace(c, parts=parts) for c in dense)
        ti.PIPE_TILES = dataclasses.replace(ti.PIPE_TILES, many=pair, many_per_sm=1)
        assert ti.pipe_tiles(2, 21, 6, torch.device("cpu")) == pair
        tst.ss_check(inputs, EigRange(-1.0, 1.0), torch.float32, 1e-4)
        tst.state_only_check(inputs, EigRange(-1.0, 1.0))
    print("interpreted kernels ok")
""")


def test_triton_kernels_interpreted_match_reference(tmp_path: Path) -> None:
    """TRITON_INTERPRET=1, tiny fp32 shapes: both ops equal the float64 loops (fwd and grads)."""
    script = tmp_path / "interpreted.py"
    script.write_text(INTERPRETED)
    proc = run_interpreted(script)
    assert proc.returncode == 0 and "interpreted kernels ok" in proc.stdout, proc.stderr[-3000:]


def test_forward_refuses_a_state_spacing_the_backward_does_not_use(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The backward restarts from states saved every SEG steps: a forward tile with another SEG
    than its backward's is refused before any kernel runs, not left to give wrong gradients
    (both layouts that save them, and chunk_pipe's tile sets whichever would be chosen)."""
    from statetrack.ops.selective_scan import triton_impl as ti

    ins = [t.float() for t in ss_inputs(1, 10, 4, 2, "cpu", torch.Generator().manual_seed(0))]
    f128, b64 = ti.ScanConfig(BT=8, BD=32, SEG=128), ti.ScanConfig(BT=4, BD=32, SEG=64)
    monkeypatch.setattr(ti, "FWD_CONFIG", f128)
    with pytest.raises(ValueError, match=r"FWD_CONFIG.SEG = 128 .* BWD_CONFIG.SEG = 64"):
        ti._forward(*ins, 0.0, 1.0, True, pipe=False)
    for bad in ("many", "few", "fewest"):
        tiles = {"many": (b64, b64), "few": (b64, b64), "fewest": (b64, b64), bad: (f128, b64)}
        monkeypatch.setattr(ti, "PIPE_TILES", ti.PipeTiles(**tiles))
        with pytest.raises(ValueError, match=rf"PIPE_TILES.{bad} has forward SEG = 128"):
            ti._forward(*ins, 0.0, 1.0, True, pipe=True)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("tiles", ["many", "few", "fewest"])
@pytest.mark.parametrize("T", [65, 1000])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.usefixtures("nan_empty")
def test_chunk_pipe_tiles_match_reference(tiles: str, T: int, dtype: torch.dtype,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Each of chunk_pipe's tile sets (PIPE_TILES, forced) equals the float64 loop at
    [−1, 1]."""
    import dataclasses

    from statetrack.ops.selective_scan import triton_impl as ti

    monkeypatch.delenv("STATETRACK_SCAN_LAYOUT", raising=False)
    monkeypatch.setattr(ti, "LAYOUT", "chunk_pipe")
    forced = dataclasses.replace(ti.PIPE_TILES, many_per_sm=0 if tiles == "many" else 10**6,
                                 fewest_per_sm=10**6 if tiles == "fewest" else 0, short_T=0,
                                 dense=None)
    monkeypatch.setattr(ti, "PIPE_TILES", forced)
    assert ti.pipe_tiles(2, T, 80, torch.device("cuda")) == getattr(forced, tiles)
    inputs = ss_inputs(2, T, 80, 16, "cuda", torch.Generator().manual_seed(T))
    ss_check(inputs, EigRange(-1.0, 1.0), dtype, TOL[dtype])


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("rbt", [8, 16])
@pytest.mark.parametrize("T", [65, 1000])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.usefixtures("nan_empty")
def test_recompute_chunk_matches_reference(rbt: int, T: int, dtype: torch.dtype,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """chunk_pipe's backward with its recompute in chunks of RBT = 8 or 16 steps (the reverse
    loop's BT = 4) equals the float64 loop at [−1, 1]."""
    import dataclasses

    from statetrack.ops.selective_scan import triton_impl as ti

    monkeypatch.delenv("STATETRACK_SCAN_LAYOUT", raising=False)
    monkeypatch.setattr(ti, "LAYOUT", "chunk_pipe")
    f = ti.PIPE_TILES.many[0]
    b = ti.ScanConfig(BT=4, BD=8, SEG=f.SEG, num_warps=1, RBT=rbt)
    monkeypatch.setattr(ti, "PIPE_TILES", dataclasses.replace(
        ti.PIPE_TILES, many=(f, b), many_per_sm=0, short_T=0, dense=None))
    inputs = ss_inputs(2, T, 84, 16, "cuda", torch.Generator().manual_seed(T + rbt))
    ss_check(inputs, EigRange(-1.0, 1.0), dtype, TOL[dtype])


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize(("T", "parts"), [(1, 1), (63, 1), (65, 1), (1000, 1), (1000, 3)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.usefixtures("nan_empty")
def test_dense_backward_matches_reference(T: int, parts: int, dtype: torch.dtype,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """chunk_pipe's dense set (SEG = BT: the forward saves every chunk's entering state, the
    backward recomputes nothing), whole and split in 3 parts, with the butterfly, equals the
    float64 loop at [−1, 1]; 84 channels, so the last block is partial."""
    import dataclasses

    from statetrack.ops.selective_scan import triton_impl as ti

    monkeypatch.delenv("STATETRACK_SCAN_LAYOUT", raising=False)
    monkeypatch.delenv(ti.DENSE_ENV, raising=False)
    monkeypatch.setattr(ti, "LAYOUT", "chunk_pipe")
    pair = tuple(dataclasses.replace(c, parts=parts) for c in ti.PIPE_TILES.dense)
    monkeypatch.setattr(ti, "PIPE_TILES", dataclasses.replace(
        ti.PIPE_TILES, dense=pair, fewest_per_sm=0))
    assert ti.pipe_tiles(2, T, 84, torch.device("cuda"), N=16, save=True) == pair
    inputs = ss_inputs(2, T, 84, 16, "cuda", torch.Generator().manual_seed(T + parts))
    ss_check(inputs, EigRange(-1.0, 1.0), dtype, TOL[dtype])


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.usefixtures("nan_empty")
def test_default_tiles_take_dense_on_a_large_grid(dtype: torch.dtype,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """With the default tiles a grid of 1,024 programs (B 64, Dm 256) takes the dense set in
    training, and equals the float64 loop at [−1, 1]."""
    from statetrack.ops.selective_scan import triton_impl as ti

    monkeypatch.delenv("STATETRACK_SCAN_LAYOUT", raising=False)
    monkeypatch.delenv(ti.DENSE_ENV, raising=False)
    monkeypatch.setattr(ti, "LAYOUT", "chunk_pipe")
    assert ti.pipe_tiles(64, 100, 256, torch.device("cuda"), N=16, save=True) == \
        ti.PIPE_TILES.dense
    inputs = ss_inputs(64, 100, 256, 16, "cuda", torch.Generator().manual_seed(3))
    ss_check(inputs, EigRange(-1.0, 1.0), dtype, TOL[dtype])


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize(("bfly", "bd", "T", "N"), [
    (1, 8, 1000, 16), (2, 8, 1000, 16), (4, 8, 1000, 16), (4, 8, 65, 16),
    (4, 8, 300, 3), (4, 8, 100, 1), (2, 16, 300, 16), (4, 16, 100, 1)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.usefixtures("nan_empty")
def test_bfly_backward_matches_reference(bfly: int, bd: int, T: int, N: int,
                                         dtype: torch.dtype,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The backward with dB and dC summed by the inline-PTX butterfly (``ScanConfig.bfly``, 1,
    2 or 4 elements per asm instance, fewer where a lane holds fewer: N = 1 at BD 8 holds one;
    BD 8 and 16 channels per program, 84 channels so the last block is partial; N = 16, 3
    (padded to 4) and 1) equals the float64 loop at [−1, 1]."""
    import dataclasses

    from statetrack.ops.selective_scan import triton_impl as ti

    monkeypatch.delenv("STATETRACK_SCAN_LAYOUT", raising=False)
    monkeypatch.setattr(ti, "LAYOUT", "chunk_pipe")
    f = ti.PIPE_TILES.many[0]
    b = ti.ScanConfig(BT=4, BD=bd, SEG=f.SEG, num_warps=1, bfly=bfly)
    monkeypatch.setattr(ti, "PIPE_TILES", dataclasses.replace(
        ti.PIPE_TILES, many=(f, b), many_per_sm=0, short_T=0, dense=None))
    inputs = ss_inputs(2, T, 84, N, "cuda", torch.Generator().manual_seed(T + bfly))
    ss_check(inputs, EigRange(-1.0, 1.0), dtype, TOL[dtype])


@pytest.mark.gpu
@needs_cuda
def test_bfly_refuses_a_tile_under_a_warp(monkeypatch: pytest.MonkeyPatch) -> None:
    """A backward tile of fewer than 32 elements (BT·NP·BD: 1·1·8) would spread each over
    several lanes, which the butterfly does not handle: refused before any kernel runs."""
    from statetrack.ops.selective_scan import triton_impl as ti

    monkeypatch.setattr(ti, "BWD_CONFIG", ti.ScanConfig(BT=1, BD=8, num_warps=1, bfly=1))
    x = torch.zeros(1, 4, 8, device="cuda")
    B = torch.zeros(1, 4, 1, device="cuda")
    with pytest.raises(ValueError, match="at least 32 elements"):
        ti._backward(x, x, torch.zeros(8, 1, device="cuda"), B, B, None, None, None, None, x,
                     None, -1.0, 2.0)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("T", [65, 1000, 4096])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("layout", ["chunk", "chunk_pipe"])
@pytest.mark.usefixtures("nan_empty")
def test_split_in_time_matches_reference(T: int, dtype: torch.dtype, layout: str,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Compiled kernels with forward and backward split in time into at most 3 parts (segments
    of 64 steps; T = 65: 1 + 1, 1000: 6 + 6 + 4, 4096: 22 + 22 + 20): equal to the float64
    loop at [−1, 1], and in float32 also with only y and only h_T in the loss."""
    import test_scan_lanes as tsl

    from statetrack.ops.selective_scan import triton_impl as ti

    def split(c: ti.ScanConfig) -> ti.ScanConfig:
        return dataclasses.replace(c, parts=3)

    monkeypatch.delenv("STATETRACK_SCAN_LAYOUT", raising=False)
    monkeypatch.setattr(ti, "LAYOUT", layout)
    monkeypatch.setattr(ti, "FWD_CONFIG", split(ti.FWD_CONFIG))
    monkeypatch.setattr(ti, "BWD_CONFIG", split(ti.BWD_CONFIG))
    monkeypatch.setattr(ti, "PIPE_TILES", dataclasses.replace(
        ti.PIPE_TILES, many=tuple(map(split, ti.PIPE_TILES.many)),
        few=tuple(map(split, ti.PIPE_TILES.few))))
    inputs = ss_inputs(2, T, 80, 16, "cuda", torch.Generator().manual_seed(T))
    ss_check(inputs, EigRange(-1.0, 1.0), dtype, TOL[dtype])
    if dtype == torch.float32:
        tsl.optional_check(inputs, EigRange(-1.0, 1.0))
        state_only_check(inputs, EigRange(-1.0, 1.0))


def test_scan_benchmark_counts_the_exps_the_tiles_execute(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``benchmarks/scan.py``'s exp floor counts 1 exp per state and step forward, and
    forward+backward 2 where chunk_pipe's training tiles are dense (no recompute), else 3 (a
    grid too small for them, the dense limit at 0, the "chunk" layout); an H200's 132
    multiprocessors stand in for the GPU's."""
    from repo_scripts import load_script

    from statetrack.ops.selective_scan import triton_impl as ti

    bench = load_script("benchmarks/scan.py")
    monkeypatch.setattr(ti, "_sm_count", lambda index: 132)
    monkeypatch.delenv(ti.DENSE_ENV, raising=False)
    monkeypatch.delenv("STATETRACK_SCAN_LAYOUT", raising=False)
    monkeypatch.setattr(ti, "LAYOUT", "chunk_pipe")
    counts = {s: (bench.exps_per_state_step(s, "fwd"), bench.exps_per_state_step(s, "fwdbwd"))
              for s in bench.SHAPES}
    assert counts == {(8, 2048, 2048, 16): (1, 2), (4, 8192, 1536, 16): (1, 3),
                      (256, 40, 256, 16): (1, 2), (256, 256, 256, 16): (1, 2)}
    monkeypatch.setenv(ti.DENSE_ENV, "0")
    assert bench.exps_per_state_step((256, 256, 256, 16), "fwdbwd") == 3
    monkeypatch.delenv(ti.DENSE_ENV)
    monkeypatch.setattr(ti, "LAYOUT", "chunk")
    assert bench.exps_per_state_step((256, 256, 256, 16), "fwdbwd") == 3
