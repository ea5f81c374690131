"""``statetrack bench``: time the ops' backends (forward only) and write a JSON table.

For each op and length T, the token-loop ``reference`` and the chunked ``torch`` backend (and
``triton`` on a CUDA device) run the same inputs; the table shows the median over a few repeats
and the speed-up over the loop. Records go to ``--out`` as a list of
``{"op", "shape", "backend", "ms", "speedup", "device"}``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

OPS = ("delta_rule", "selective_scan")
# A reference run estimated to take longer than this is timed once instead of --repeats times.
SLOW_REFERENCE_S = 1.0


def host_ms(fn: Callable[[], object], n: int = 300, warmup: int = 20) -> tuple[float, float]:
    """Milliseconds per call of ``fn`` called n times in a row, after ``warmup`` calls: (the
    host's time to issue the calls, the time until a CUDA device, if any, has run them too).
    Where the two agree, the host's launch work sets the eager time."""
    def sync() -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    for _ in range(warmup):
        fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    t1 = time.perf_counter()
    sync()
    t2 = time.perf_counter()
    return 1e3 * (t1 - t0) / n, 1e3 * (t2 - t0) / n


def timed(totals: dict[str, float], name: str, fn: Callable) -> Callable:
    """``fn``, adding the seconds each call takes to ``totals[name]`` (a defaultdict(float)):
    for host-time breakdowns that wrap the op's pieces in place (scripts/dev/scan_host_*)."""
    def wrapper(*args: object, **kwargs: object) -> object:
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        totals[name] += time.perf_counter() - t0
        return out
    return wrapper


def graph_replay_ms(step: Callable[[], object], rep: int = 200) -> float:
    """Median device time of ``step`` captured once in a CUDA graph and replayed: the kernels'
    time without the host's launch work (the GPU benchmarks' ``graph_ms``). ``step`` must be
    capturable: no host syncs, and gradients through ``torch.autograd.grad`` (no ``.grad``
    accumulation inside the graph)."""
    from triton.testing import do_bench

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm up (compiles, allocator pools) off the capture
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    ms = do_bench(graph.replay, warmup=25, rep=rep, return_mode="median")
    del graph
    return ms


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ops", nargs="+", choices=OPS, default=list(OPS),
                        help="ops to time (default: all)")
    parser.add_argument("--lengths", nargs="+", type=int, default=[256, 1024, 4096],
                        help="sequence lengths T (default: 256 1024 4096)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per cell (median)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/cpu_ops.json"),
                        help="JSON output path (default: benchmarks/results/cpu_ops.json)")


def _delta_rule_case(T: int, device: torch.device, gen: torch.Generator
                     ) -> tuple[dict[str, int], Callable[[str], object]]:
    """B=1, H=4, K=V=32, unit-norm keys, β ∈ (0, 2) (eigenvalues in (−1, 1))."""
    from statetrack.ops import delta_rule

    shape = {"B": 1, "T": T, "H": 4, "K": 32, "V": 32}
    q = torch.randn(1, T, 4, 32, generator=gen).to(device)
    k = F.normalize(torch.randn(1, T, 4, 32, generator=gen), dim=-1).to(device)
    v = torch.randn(1, T, 4, 32, generator=gen).to(device)
    beta = (2 * torch.rand(1, T, 4, generator=gen)).to(device)
    return shape, lambda backend: delta_rule(q, k, v, beta, backend=backend)


def _selective_scan_case(T: int, device: torch.device, gen: torch.Generator
                         ) -> tuple[dict[str, int], Callable[[str], object]]:
    """B=1, Dm=64, N=16, eig_range [-1, 1]."""
    from statetrack.ops import selective_scan

    shape = {"B": 1, "T": T, "Dm": 64, "N": 16}
    x, dt, z = (torch.randn(1, T, 64, generator=gen).to(device) for _ in range(3))
    A = -torch.rand(64, 16, generator=gen).add(0.1).to(device)
    B, C = (torch.randn(1, T, 16, generator=gen).to(device) for _ in range(2))
    D = torch.randn(64, generator=gen).to(device)
    return shape, lambda backend: selective_scan(x, dt, A, B, C, D=D, z=z, eig_range=(-1, 1),
                                                 backend=backend)


CASES = {"delta_rule": _delta_rule_case, "selective_scan": _selective_scan_case}


def _time_ms(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Median wall time of ``fn`` in milliseconds (after one untimed warm-up call)."""
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def _bench_cell(op: str, T: int, device: torch.device, repeats: int,
                backends: list[str], name: str) -> list[dict[str, object]]:
    shape, call = CASES[op](T, device, torch.Generator().manual_seed(T))
    records = []
    ref_ms = None
    for backend in backends:
        fn = lambda: call(backend)  # noqa: B023 (called before the loop moves on)
        start = time.perf_counter()
        fn()  # warm-up (and an estimate of one call's cost)
        once_s = time.perf_counter() - start
        n = 1 if backend == "reference" and once_s * repeats > SLOW_REFERENCE_S else repeats
        ms = _time_ms(fn, n, device)
        ref_ms = ms if backend == "reference" else ref_ms
        records.append({"op": op, "shape": shape, "backend": backend, "ms": round(ms, 3),
                        "speedup": round(ref_ms / ms, 2) if ref_ms else None,
                        "repeats": n, "device": name})
    return records


def _print_table(records: list[dict[str, object]]) -> None:
    rows: dict[tuple[str, int], dict[str, object]] = {}
    for r in records:
        rows.setdefault((r["op"], r["shape"]["T"]), {})[r["backend"]] = r
    others = sorted({r["backend"] for r in records} - {"reference"})
    head = ["op", "T", "reference ms"] + [f"{b} ms" for b in others] + [
        f"{b} speed-up" for b in others]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for (op, T), cell in rows.items():
        ref = cell.get("reference")
        vals = [op, str(T), f"{ref['ms']:.2f}" if ref else "-"]
        vals += [f"{cell[b]['ms']:.2f}" if b in cell else "-" for b in others]
        vals += [f"{cell[b]['speedup']:.1f}x" if b in cell and cell[b]["speedup"] else "-"
                 for b in others]
        print("| " + " | ".join(vals) + " |")


def run(args: argparse.Namespace) -> int:
    if args.repeats < 1:
        raise SystemExit(f"--repeats: expected a positive int, got {args.repeats}")
    if any(T < 1 for T in args.lengths):
        raise SystemExit(f"--lengths: expected positive ints, got {args.lengths}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    backends = ["reference", "torch"]
    if device.type == "cuda":
        backends.append("triton")
    name = _device_name(device)
    records: list[dict[str, object]] = []
    with torch.no_grad():
        for op in args.ops:
            for T in args.lengths:
                records += _bench_cell(op, T, device, args.repeats, backends, name)
    print(f"forward only, median of {args.repeats} (reference once when slow); device: {name}")
    _print_table(records)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(records, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0
