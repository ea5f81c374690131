"""Selective-scan timings on a GPU: statetrack triton vs the chunked torch backend, bf16.

For each (B, T, Dm, N) and eig_range [0, 1] / [−1, 1]: forward and forward+backward medians
(triton.testing.do_bench), eager and, for the Triton kernels, replayed from a CUDA graph
(``graph_ms``: device time without the host's launch work), the achieved bandwidth (bytes of
inputs and outputs that must move, over the time) against a device-to-device copy measured in
the same run, and the floor set by the exps each state takes per step in the kernels in force
(session 17's committed run, ``h200_scan.json``, counted 3 forward+backward everywhere, while
its dense shapes took 2). Writes JSON records like the delta-rule benchmark's.

    python benchmarks/scan.py --out benchmarks/results/h200_scan.json [--sweep [LAYOUT ...]] \
        [--layouts chunk chunk_pipe lanes]

``--layouts`` times the Triton kernels in each layout of ``triton_impl.LAYOUTS`` ("chunk": time
in registers, channels on lanes; "chunk_pipe": the same with chunk loops the software
pipeliner can prefetch; "lanes": time over lanes), one record per layout (key ``"layout"``;
the torch backend is timed with the first layout's record only).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess

import torch
import triton

from statetrack.eig import EigRange
from statetrack.ops.bench import graph_replay_ms
from statetrack.ops.selective_scan import selective_scan

SHAPES = [(8, 2048, 2048, 16), (4, 8192, 1536, 16), (256, 40, 256, 16), (256, 256, 256, 16)]
# the paper's patched mamba_ssm CUDA kernel ([−1, 1], bf16) on an H200: (fwd, fwd+bwd) ms
PAPER_MS = {(8, 2048, 2048, 16): (0.59, 2.91), (4, 8192, 1536, 16): (0.99, 4.57),
            (256, 40, 256, 16): (0.29, 1.08), (256, 256, 256, 16): (0.27, 1.70)}
# ours: forward 1; backward 1 for the adjoint chunks, plus 1 for the recompute of the forward
# unless the tiles are dense (chunk_pipe with SEG = the backward's BT: nothing recomputed)
EXPS_PER_STATE_STEP = {"fwd": 1, "fwdbwd": 3}
MUFU_PER_CLK_PER_SM = 16  # sm_90 ex2 throughput


def copy_gbps() -> float:
    """Device-to-device copy of 1 GiB: (read + write bytes) / median time."""
    src = torch.randn(2**28, device="cuda")
    dst = torch.empty_like(src)
    ms = triton.testing.do_bench(lambda: dst.copy_(src), warmup=50, rep=300,
                                 return_mode="median")
    return 2 * src.numel() * 4 / ms / 1e6


def exp_rate() -> float:
    """ex2 results per second: 16 per clock per SM at the maximum SM clock."""
    props = torch.cuda.get_device_properties(0)
    try:
        mhz = float(subprocess.run(["nvidia-smi", "--query-gpu=clocks.max.sm",
                                    "--format=csv,noheader,nounits"], capture_output=True,
                                   text=True, timeout=20).stdout.split()[0])
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        mhz = 1980.0
    return MUFU_PER_CLK_PER_SM * props.multi_processor_count * mhz * 1e6


def make_inputs(shape: tuple[int, int, int, int], grad: bool) -> list[torch.Tensor]:
    Bsz, T, Dm, N = shape
    g = torch.Generator(device="cuda").manual_seed(0)

    def r(*s: int, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
        return torch.randn(*s, device="cuda", generator=g).to(dtype).requires_grad_(grad)
    A = (-torch.exp(torch.randn(Dm, N, device="cuda", generator=g))).requires_grad_(grad)
    return [r(Bsz, T, Dm), r(Bsz, T, Dm), A, r(Bsz, T, N), r(Bsz, T, N),
            r(Dm, dtype=torch.float32), r(Bsz, T, Dm), r(Dm, dtype=torch.float32)]


def time_backend(shape, eig: EigRange, backend: str, pas: str, rep: int,
                 graph: bool = False) -> float:
    """Median ms of one call, eager (host launch work included, as the paper's kernel was
    timed); ``graph``: replayed from a CUDA graph instead (device time only)."""
    ins = make_inputs(shape, pas == "fwdbwd")
    x, dt, A, B, C, D, z, bias = ins

    def fwd() -> torch.Tensor:
        return selective_scan(x, dt, A, B, C, D=D, z=z, dt_bias=bias, eig_range=eig,
                              backend=backend)[0]
    dy = torch.randn_like(x)
    if graph:
        def step() -> None:
            if pas == "fwd":
                with torch.no_grad():
                    fwd()
            else:  # autograd.grad: no .grad accumulation inside the graph
                torch.autograd.grad(fwd(), ins, dy)
        return graph_replay_ms(step, rep)
    if pas == "fwd":
        with torch.no_grad():
            return triton.testing.do_bench(fwd, warmup=25, rep=rep, return_mode="median")

    def fwdbwd() -> None:
        torch.autograd.backward(fwd(), dy, inputs=ins)
    return triton.testing.do_bench(fwdbwd, warmup=25, rep=rep, return_mode="median",
                                   grad_to_none=ins)


def exps_per_state_step(shape: tuple[int, int, int, int], pas: str) -> int:
    """The exps per state and step that the kernels in force execute: forward 1, forward+
    backward 3, or 2 where chunk_pipe's training tiles for the shape are dense."""
    from statetrack.ops.selective_scan import triton_impl as ti

    if pas == "fwd":
        return EXPS_PER_STATE_STEP["fwd"]
    Bsz, T, Dm, N = shape
    if ti.scan_layout() == "chunk_pipe":
        b = ti.pipe_tiles(Bsz, T, Dm, torch.device("cuda"), N=N, save=True)[1]
        if b.SEG == b.BT:
            return EXPS_PER_STATE_STEP["fwdbwd"] - 1
    return EXPS_PER_STATE_STEP["fwdbwd"]


def must_move_bytes(shape, pas: str) -> int:
    """bf16 elements that must be read or written once: fwd x, dt, z, B, C in, y out; the
    backward adds dy, x, dt, z, B, C in and dx, ddt, dz, dB, dC out."""
    Bsz, T, Dm, N = shape
    td, tn = Bsz * T * Dm, Bsz * T * N
    n = 4 * td + 2 * tn
    if pas == "fwdbwd":
        n += 7 * td + 4 * tn
    return 2 * n


def sweep() -> None:
    """Time tile configurations of both kernels at the large shapes (tuning aid)."""
    from statetrack.ops.selective_scan import triton_impl as ti

    base_f, base_b = ti.FWD_CONFIG, ti.BWD_CONFIG
    for shape in SHAPES[:2]:
        for bt, nw in [(16, 4), (8, 4), (8, 8), (16, 8), (32, 8)]:
            ti.FWD_CONFIG = ti.ScanConfig(BT=bt, BD=32, SEG=64, num_warps=nw)
            ms = time_backend(shape, EigRange(-1.0, 1.0), "triton", "fwd", 100)
            print(f"sweep fwd {shape} BT={bt} nw={nw}: {ms:.3f} ms", flush=True)
        ti.FWD_CONFIG = base_f
        for bt, nw, seg in [(8, 8, 64), (4, 8, 64), (8, 4, 64), (4, 4, 64), (8, 8, 128)]:
            ti.BWD_CONFIG = ti.ScanConfig(BT=bt, BD=32, SEG=seg, num_warps=nw)
            ti.FWD_CONFIG = ti.ScanConfig(BT=base_f.BT, BD=32, SEG=seg,
                                          num_warps=base_f.num_warps)
            ms = time_backend(shape, EigRange(-1.0, 1.0), "triton", "fwdbwd", 100)
            print(f"sweep fwdbwd {shape} BT={bt} nw={nw} SEG={seg}: {ms:.3f} ms", flush=True)
        ti.FWD_CONFIG, ti.BWD_CONFIG = base_f, base_b


def grads_of(shape: tuple[int, int, int, int]) -> list[torch.Tensor]:
    """y and the 8 input gradients of one forward+backward at [−1, 1] (the layout in force)."""
    ins = make_inputs(shape, True)
    x, dt, A, B, C, D, z, bias = ins
    y = selective_scan(x, dt, A, B, C, D=D, z=z, dt_bias=bias, eig_range=EigRange(-1.0, 1.0),
                       backend="triton")[0]
    dy = torch.randn(y.shape, device="cuda", generator=torch.Generator("cuda").manual_seed(1))
    torch.autograd.backward(y, dy.to(y.dtype), inputs=ins)
    return [y.detach().float()] + [t.grad.float() for t in ins]


def max_rel_err(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    """The largest ‖a − b‖ / ‖b‖ over the tensors (NaN if any is NaN)."""
    errs = [((u - v).norm() / v.norm().clamp_min(1e-30)).item() for u, v in zip(a, b,
                                                                               strict=True)]
    return max(errs, key=lambda e: float("inf") if e != e else e)


def sweep_pipe() -> None:
    """Time (forward, backward) tile pairs of the "chunk_pipe" kernels at every shape ([−1, 1]),
    each forced for every shape, forward+backward replayed from a CUDA graph (kernel time: at
    (256, 40, 256) the host's launch work would hide it). Every tile's y and
    gradients are first compared with the "chunk" layout's (GPU-tested) at the same shape: a
    tile that disagrees by more than 2e-2 (bf16) is reported as WRONG, so a fast but broken
    tile cannot win; one that fails to compile or run is reported as FAILED and the sweep goes
    on."""
    import dataclasses

    from statetrack.ops.selective_scan import triton_impl as ti

    base = ti.PIPE_TILES

    def tile(bt: int, bd: int, nw: int, cap: int | None = None, parts: int = 1, bfly: int = 0,
             rbt: int | None = None, seg: int = 64) -> ti.ScanConfig:
        return ti.ScanConfig(BT=bt, BD=bd, SEG=seg, num_warps=nw, maxnreg=cap, parts=parts,
                             bfly=bfly, RBT=rbt)

    def name(c: ti.ScanConfig) -> str:
        return (f"BT={c.BT} BD={c.BD} nw={c.num_warps}"
                + (f" maxnreg={c.maxnreg}" if c.maxnreg else "")
                + (f" parts={c.parts}" if c.parts > 1 else "")
                + (f" bfly={c.bfly}" if c.bfly else "")
                + (f" RBT={c.RBT}" if c.RBT else ""))

    def line(kind: str, shape, f: ti.ScanConfig, b: ti.ScanConfig, label: str,
             truth: list[torch.Tensor]) -> None:
        ti.PIPE_TILES = dataclasses.replace(base, many=(f, b), many_per_sm=0, short_T=0,
                                            dense=None)
        try:
            err = max_rel_err(grads_of(shape), truth)
            ms = time_backend(shape, EigRange(-1.0, 1.0), "triton", kind, 100, graph=True)
        except Exception as e:  # noqa: BLE001  (a tile that does not compile loses, loudly)
            print(f"sweep chunk_pipe {kind} {shape} {label}: FAILED ({type(e).__name__}: "
                  f"{str(e).splitlines()[0] if str(e) else ''})", flush=True)
            return
        flag = "" if err <= 2e-2 else f"  WRONG (max rel err {err:.2e})"
        print(f"sweep chunk_pipe {kind} {shape} {label}: {ms:.3f} ms graph  (err {err:.1e})"
              f"{flag}", flush=True)

    # Sessions 10-12 settled the recomputing tiles (logs/h200_scan_pipe_s10.log,
    # h200_scan_sweep_s10.log, _s11.log, _s11_call2.log, _s12.log): forwards (4, 16), (8, 16)
    # and (16, 8) at 1 warp, each best somewhere; the backward (4, 8, 1) with its recompute in
    # chunks of RBT = 16 and the dB/dC butterfly at bfly = 4. Session 16's register caps (224 /
    # 200 / 168) lost at every shape (logs/h200_scan_sweep_s16.log). Against the default sets
    # now: dense pairs (SEG = BT: the forward saves the state entering every chunk and the
    # backward recomputes nothing, for 64 / BT times the recomputing sets' saved-state memory):
    # the backward at BD 8 and 16 (without the recompute's registers a wider tile may fit),
    # the forward at BD 16 and 8, and BT 8
    dense = [(tile(4, 16, 1, seg=4), tile(4, 8, 1, bfly=4, seg=4)),
             (tile(4, 16, 1, seg=4), tile(4, 16, 1, bfly=4, seg=4)),
             (tile(4, 8, 1, seg=4), tile(4, 8, 1, bfly=4, seg=4)),
             (tile(8, 16, 1, seg=8), tile(8, 8, 1, bfly=4, seg=8))]
    pairs = [base.many, base.few, base.fewest] + dense
    for shape in SHAPES:
        set_layout("chunk")
        truth = grads_of(shape)
        set_layout("chunk_pipe")
        for f, b in pairs:
            states_mb = ti.saved_state_bytes(*shape, f.SEG) / 2**20
            line("fwdbwd", shape, f, b, f"pair fwd {name(f)} / bwd {name(b)} SEG={f.SEG} "
                 f"(saved states {states_mb:.0f} MiB)", truth)
    ti.PIPE_TILES = base


def sweep_lanes() -> None:
    """Time tiles (BT, BD, num_warps) of the "lanes" kernels at the large shapes ([−1, 1])."""
    from statetrack.ops.selective_scan import triton_impl as ti

    base_f, base_b = ti.LANES_CONFIG, ti.LANES_BWD_CONFIG
    set_layout("lanes")
    for shape in SHAPES[:2]:
        for bt, bd, nw in [(64, 4, 4), (128, 4, 4), (256, 4, 4), (128, 8, 4), (256, 8, 8)]:
            ti.LANES_CONFIG = ti.LanesConfig(BT=bt, BD=bd, num_warps=nw)
            ms = time_backend(shape, EigRange(-1.0, 1.0), "triton", "fwd", 100)
            print(f"sweep lanes fwd {shape} BT={bt} BD={bd} nw={nw}: {ms:.3f} ms", flush=True)
        ti.LANES_CONFIG = base_f
        for bt, bd, nw in [(64, 4, 4), (128, 4, 4), (64, 8, 4), (128, 4, 8), (256, 4, 8)]:
            ti.LANES_BWD_CONFIG = ti.LanesConfig(BT=bt, BD=bd, num_warps=nw)
            ms = time_backend(shape, EigRange(-1.0, 1.0), "triton", "fwdbwd", 100)
            print(f"sweep lanes fwdbwd {shape} BT={bt} BD={bd} nw={nw}: {ms:.3f} ms",
                  flush=True)
        ti.LANES_BWD_CONFIG = base_b


def graph(r: dict) -> str:
    """A record's CUDA-graph time ("-" in records written before the benchmark had it)."""
    g = r.get("graph_ms")
    return "-" if g is None else f"{g['statetrack']:.3f}"


def markdown_table(records: list[dict], layout: str | None = None) -> str:
    """The README's table of a results file, for one layout (default: the first record's, the
    first of the run's --layouts; records without a "layout" key, written before there were
    two, count as "chunk"): ms at [0, 1] and [−1, 1], [−1, 1] replayed from a CUDA graph, the
    torch backend at [0, 1] ("-" where the run had --no-torch), the paper's CUDA kernel
    ([−1, 1]) and ours at [−1, 1] over it, GB/s and the exp floor."""
    if layout is None:
        layout = records[0].get("layout", "chunk")
    rows: dict[tuple, dict] = {}
    for r in records:
        if r.get("layout", "chunk") != layout:
            continue
        s = r["shape"]
        key = (s["B"], s["T"], s["Dm"], s["N"], r["pass"])
        rows.setdefault(key, {})[tuple(r["eig_range"])] = r
    lines = ["| B, T, Dm, N | pass | statetrack [0,1] | [−1,1] | [−1,1] graph | torch backend | "
             "paper CUDA | ours / paper | GB/s | exp floor |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for (B, T, Dm, N, pas), by_eig in rows.items():
        r0, r1 = by_eig[(0.0, 1.0)], by_eig[(-1.0, 1.0)]
        torch_ms = r0["ms"].get("torch")
        paper = r1["paper_cuda_ms"]
        shape = f"{B}, {T}, {Dm}, {N}" + (" (paper)" if B == 256 else "")
        lines.append(
            f"| {shape} | {'fwd' if pas == 'fwd' else 'fwd+bwd'} | {r0['ms']['statetrack']:.3f} "
            f"| {r1['ms']['statetrack']:.3f} | {graph(r1)} "
            f"| {'-' if torch_ms is None else f'{torch_ms:.0f}'} "
            f"| {paper:.2f} | {r1['ms']['statetrack'] / paper:.2f} | {r1['gbps']:.0f} "
            f"| {r1['exp_floor_ms']:.3f} |")
    return "\n".join(lines)


def set_layout(layout: str) -> None:
    """Select the Triton kernels' layout for the following calls (attribute and variable)."""
    from statetrack.ops.selective_scan import triton_impl as ti

    os.environ["STATETRACK_SCAN_LAYOUT"] = ti.LAYOUT = layout


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from statetrack.ops.selective_scan.triton_impl import LAYOUTS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="JSON file for the records (required unless --table)")
    ap.add_argument("--table", metavar="JSON", default=None,
                    help="print the README's markdown table of a results file, and exit")
    ap.add_argument("--sweep", nargs="*", choices=LAYOUTS, default=None, metavar="LAYOUT",
                    help="also time tile configurations of these layouts (bare: every layout in "
                         "--layouts)")
    ap.add_argument("--no-torch", action="store_true", help="skip the torch backend")
    ap.add_argument("--layouts", nargs="+", choices=LAYOUTS, default=list(LAYOUTS),
                    help="Triton kernel layouts to time side by side (default: all)")
    args = ap.parse_args(argv)
    if args.out is None and args.table is None:
        ap.error("--out is required (or --table JSON to print a results file's table)")
    return args


def main() -> None:
    args = parse_args()
    if args.table:
        with open(args.table) as f:
            print(markdown_table(json.load(f)))
        return
    device = torch.cuda.get_device_name(0)
    cgbps, erate = copy_gbps(), exp_rate()
    print(f"{device}: copy {cgbps:.0f} GB/s, ex2 {erate / 1e12:.2f} T/s", flush=True)
    if args.sweep is not None:
        swept = args.sweep or args.layouts
        if "chunk" in swept:
            set_layout("chunk")
            sweep()
        if "chunk_pipe" in swept:
            sweep_pipe()
        if "lanes" in swept:
            sweep_lanes()
    records = []
    for shape in SHAPES:
        for lo in (0.0, -1.0):
            eig = EigRange(lo, 1.0)
            for pas, layout in itertools.product(("fwd", "fwdbwd"), args.layouts):
                set_layout(layout)
                ms = {"statetrack": time_backend(shape, eig, "triton", pas, 200)}
                graphed = {"statetrack": time_backend(shape, eig, "triton", pas, 200,
                                                      graph=True)}
                # the torch backend at [0, 1] only (the table's column; 1-2 s a call at the
                # large shapes)
                if not args.no_torch and layout == args.layouts[0] and lo == 0.0:
                    try:
                        ms["torch"] = time_backend(shape, eig, "torch", pas, 100)
                    except torch.OutOfMemoryError:
                        ms["torch"] = None
                    torch.cuda.empty_cache()
                Bsz, T, Dm, N = shape
                exps = exps_per_state_step(shape, pas)
                exp_floor = exps * Bsz * T * Dm * N / erate * 1e3
                rec = {"op": "selective_scan",
                       "shape": {"B": Bsz, "T": T, "Dm": Dm, "N": N}, "dtype": "bfloat16",
                       "pass": pas, "layout": layout, "ms": ms, "graph_ms": graphed,
                       "eig_range": eig.as_list(),
                       "gbps": must_move_bytes(shape, pas) / ms["statetrack"] / 1e6,
                       "copy_gbps": cgbps, "exp_floor_ms": exp_floor,
                       "exps_per_state_step": exps,
                       "paper_cuda_ms": PAPER_MS[shape][0 if pas == "fwd" else 1],
                       "device": device}
                records.append(rec)
                print(json.dumps(rec), flush=True)
                with open(args.out, "w") as f:
                    json.dump(records, f, indent=1)


if __name__ == "__main__":
    main()
