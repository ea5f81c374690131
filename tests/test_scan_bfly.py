"""The dB / dC butterfly of the selective-scan backward (``triton_bfly.py``), on a CPU: its
PTX run by a small interpreter over one warp, and the layout its operands get in the compiled
kernel (the code relies on it). The gradients it gives are GPU-tested in test_scan_triton.py."""

from __future__ import annotations

import re

import numpy as np
import pytest

bfly = pytest.importorskip("statetrack.ops.selective_scan.triton_bfly")


def run_warp(asm: str, operands: dict[int, np.ndarray]) -> list[tuple[int, int, float]]:
    """Execute ``asm`` on 32 lanes in lockstep; ``operands[k]`` holds ``$k`` per lane. Returns
    the atomic adds as (lane, address, value). Covers the instructions bfly_asm emits."""
    lane = np.arange(32)
    regs: dict[str, np.ndarray] = {f"${k}": v for k, v in operands.items()}
    adds: list[tuple[int, int, float]] = []

    def val(x: str) -> np.ndarray:
        if x == "%laneid":
            return lane.astype(np.int64)
        if x in regs:
            return regs[x]
        return np.full(32, int(x, 0), dtype=np.int64)

    for raw in asm.splitlines():
        line = raw.strip().rstrip(";")
        if line in ("{", "}") or line.startswith(".reg"):
            continue
        guard = np.ones(32, dtype=bool)
        if line.startswith("@"):
            pred, line = line.split(maxsplit=1)
            guard = regs[pred[1:]].astype(bool)
        op, _, rest = line.partition(" ")
        args = [a.strip() for a in rest.split(",")]

        def put(name: str, new: np.ndarray, g: np.ndarray = guard) -> None:
            regs[name] = np.where(g, new, regs.get(name, np.zeros_like(new)))

        if op in ("mov.u32", "mov.b32"):
            put(args[0], val(args[1]))
        elif op == "and.b32":
            put(args[0], val(args[1]).astype(np.int64) & val(args[2]))
        elif op.startswith("setp."):
            parts = op.split(".")
            a, b = val(args[1]).astype(np.int64), val(args[2]).astype(np.int64)
            res = {"ne": a != b, "eq": a == b, "ge": a >= b}[parts[1]]
            if parts[2] == "and":
                res = res & regs[args[3]].astype(bool)
            put(args[0], res)
        elif op in ("selp.f32", "selp.b64"):
            put(args[0], np.where(regs[args[3]].astype(bool), val(args[1]), val(args[2])))
        elif op == "shfl.sync.bfly.b32":
            assert args[3:] == ["0x1f", "0xffffffff"], args  # the whole warp, no clamp
            put(args[0], val(args[1])[lane ^ int(args[2], 0)])
        elif op == "add.f32":
            put(args[0], (val(args[1]).astype(np.float32) + val(args[2]).astype(np.float32)))
        elif op == "mul.wide.s32":
            put(args[0], val(args[1]).astype(np.int64) * int(args[2], 0))
        elif op == "add.s64":
            put(args[0], val(args[1]).astype(np.int64) + val(args[2]).astype(np.int64))
        elif op == "red.relaxed.gpu.global.add.f32":
            addr = val(re.fullmatch(r"\[(\w+)\]", args[0]).group(1))
            adds += [(int(i), int(addr[i]), float(val(args[1])[i])) for i in lane[guard]]
        else:
            raise AssertionError(f"instruction the test does not know: {line!r}")
    return adds


@pytest.mark.parametrize(("bd", "pack"), [(bd, pack) for bd in (8, 16, 32) for pack in (1, 2, 4)
                                          if 2 * pack <= bd])
def test_bfly_asm_adds_every_sum_once(bd: int, pack: int) -> None:
    """One asm instance on a warp whose lanes hold BD channels (lane bits 0..log2 BD − 1) of
    32 / BD groups: every unmasked element of dB and dC gets exactly one atomic add, of the sum
    of its BD channels' partials; masked elements (offset −1) get none."""
    rng = np.random.default_rng(bd * 10 + pack)
    lane = np.arange(32)
    d, group = lane % bd, lane // bd
    base_b, base_c = 1 << 20, 1 << 24
    ops: dict[int, np.ndarray] = {}
    k = pack  # $0..$P−1: the dummy outputs
    p_b = rng.standard_normal((pack, 32 // bd, bd)).astype(np.float32)
    p_c = rng.standard_normal((pack, 32 // bd, bd)).astype(np.float32)
    offsets = np.arange(pack)[:, None] * 100 + np.arange(32 // bd)[None, :]  # per (element, group)
    masked = rng.random(offsets.shape) < 0.25
    offsets = np.where(masked, -1, offsets)
    for j in range(pack):
        ops[k + j] = p_b[j, group, d]
        ops[k + pack + j] = p_c[j, group, d]
        ops[k + 2 * pack + j] = offsets[j, group]
        ops[k + 3 * pack + j] = d // (bd // (2 * pack))
        ops[k + 4 * pack + j] = np.full(32, base_b)
        ops[k + 5 * pack + j] = np.full(32, base_c)
    adds = run_warp(bfly.bfly_asm(bd, pack), ops)
    want = {}
    for j in range(pack):
        for g in range(32 // bd):
            if offsets[j, g] >= 0:
                want[base_b + 4 * offsets[j, g]] = p_b[j, g].astype(np.float64).sum()
                want[base_c + 4 * offsets[j, g]] = p_c[j, g].astype(np.float64).sum()
    got = [addr for _, addr, _ in adds]
    assert sorted(got) == sorted(want), "each unmasked element once, masked ones never"
    for _, addr, value in adds:
        assert value == pytest.approx(want[addr], rel=1e-5, abs=1e-5)


def test_bfly_asm_refuses_shapes_it_cannot_split() -> None:
    """BD outside 8 / 16 / 32, or more values than lanes to split them over, are refused."""
    for bd, pack in ((4, 1), (12, 1), (64, 1), (8, 8), (8, 3)):
        with pytest.raises(ValueError, match="bfly_asm"):
            bfly.bfly_asm(bd, pack)


@pytest.mark.parametrize("bd", [8, 16])
@pytest.mark.parametrize("pack", [1, 2, 4])
def test_bfly_operands_put_channels_on_the_low_lane_bits(bd: int, pack: int) -> None:
    """Compiled for sm_90 (offline), the backward at BT = 4, one warp, hands the butterfly's
    asm operands a blocked layout whose lowest lane bits run over the BD channels and nothing
    else: channels fastest, BD lanes for them, one channel per thread, no warp split over them.
    The PTX's shuffles pair lanes by those bits; with another layout they would sum wrong
    values."""
    pytest.importorskip("triton")
    from repo_scripts import load_script

    tool = load_script("scripts/dev/kernel_resources.py")
    spec = next(s for s in tool._specs("selective_scan") if s.name == "ss_pipe_bwd")
    compiled = tool.compile_hopper(spec, {**spec.constexprs, "BT": 4, "BD": bd, "BFLY": pack},
                                   num_warps=1)
    ttgir = compiled.asm["ttgir"]
    asm_ops = [line for line in ttgir.splitlines() if "tt.elementwise_inline_asm" in line]
    assert len(asm_ops) == 1, "one butterfly per chunk of the reverse loop"
    layouts = set(re.findall(rf"tensor<4x16x{bd}x\w+, (#\w+)>", asm_ops[0]))
    assert len(layouts) == 1, layouts
    (name,) = layouts
    definition = re.search(rf"^{name} = #ttg.blocked<\{{(.*)\}}>", ttgir, re.M).group(1)
    fields = {k: [int(v) for v in vals.split(",")]
              for k, vals in re.findall(r"(\w+) = \[([\d, ]+)\]", definition)}
    assert fields["order"][0] == 2  # channels fastest
    assert fields["threadsPerWarp"][2] == bd and fields["sizePerThread"][2] == 1
    assert fields["warpsPerCTA"][2] == 1


def test_bfly_config_is_validated() -> None:
    """``ScanConfig.bfly`` takes 0, 1, 2 or 4, and only with BD 8 or 16 at one warp."""
    from statetrack.ops.selective_scan import triton_impl as ti

    ti.ScanConfig(BT=4, BD=8, num_warps=1, bfly=4)
    for bad in (dict(BD=8, num_warps=1, bfly=3), dict(BD=32, num_warps=1, bfly=1),
                dict(BD=8, num_warps=2, bfly=1)):
        with pytest.raises(ValueError, match="ScanConfig.bfly"):
            ti.ScanConfig(BT=4, **bad)


def test_bfly_is_left_out_on_cpu_tensors(monkeypatch: pytest.MonkeyPatch) -> None:
    """The butterfly is inline PTX, which TRITON_INTERPRET cannot run: on CPU tensors the
    backward launches with BFLY = 0 (the same sums by tl.sum), a set BWD_CONFIG and chunk_pipe's
    default tiles (which set it) alike, the tile's other settings unchanged."""
    import torch

    from statetrack.ops.selective_scan import triton_impl as ti

    launched: list[dict] = []

    class Recorder:
        def __getitem__(self, grid):
            return lambda *args, **kwargs: launched.append(kwargs)

    monkeypatch.setattr(ti, "ss_bwd_kernel", Recorder())
    x = torch.zeros(1, 4, 8)
    args = (x, x, torch.zeros(8, 2), torch.zeros(1, 4, 2), torch.zeros(1, 4, 2), None, None,
            None, None, x, None, -1.0, 2.0)  # lo, width: [−1, 1]
    monkeypatch.setattr(ti, "BWD_CONFIG", ti.ScanConfig(BT=4, BD=8, num_warps=1, bfly=2))
    ti._backward(*args)
    ti._backward(*args, pipe=True)
    b = ti.pipe_tiles(1, 4, 8, x.device, N=2, save=True)[1]
    assert b.bfly > 0  # the default tiles set it
    assert [(k["BFLY"], k["BT"], k["RBT"]) for k in launched] == [(0, 4, 4), (0, b.BT, b.RBT)]
