"""Per-kernel GPU time of one forward+backward, from torch.profiler (CUDA activity).

Where a whole-op timing says "slower", this says which launch: for each shape and
implementation, the mean time of every kernel over ``--iters`` forward+backward calls, sorted
by total time, with its share of the whole. bf16, the benchmarks' inputs.

    PYTHONPATH=src python scripts/gpu/profile_kernels.py delta_rule --impl triton fla \
        --shape 4,4096,16,128 --shape 1,8192,32,128
    PYTHONPATH=src python scripts/gpu/profile_kernels.py selective_scan --shape 8,2048,2048,16
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))


BETA_MAX = {"triton": 2.0, "torch": 2.0, "fla": 1.0}  # fla is only defined for β ≤ 1


def delta_rule_step(shape: tuple[int, ...], impl: str) -> Callable[[], None] | None:
    import delta_rule as bench  # benchmarks/delta_rule.py

    fla = bench.load_fla() if impl == "fla" else None
    if impl == "fla" and fla is None:
        return None
    x = bench.make_inputs(shape, BETA_MAX[impl])
    f = bench.runner(impl, fla)
    do = torch.randn_like(x[2])

    def step() -> None:
        f(*x).backward(do)
    return step


def scan_step(shape: tuple[int, ...], impl: str) -> Callable[[], None]:
    import scan as bench  # benchmarks/scan.py

    from statetrack.eig import EigRange
    from statetrack.ops.selective_scan import selective_scan

    x = bench.make_inputs(shape, grad=True)
    eig = EigRange.parse("[-1, 1]")
    dy = torch.randn_like(x[0])

    def step() -> None:
        u, dt, A, Bm, Cm, D, z, bias = x
        y, _ = selective_scan(u, dt, A, Bm, Cm, D=D, z=z, dt_bias=bias, eig_range=eig,
                              backend=impl)
        torch.autograd.backward(y, dy, inputs=x)
    return step


def profile_step(step: Callable[[], None], iters: int) -> list[tuple[str, int, float]]:
    for _ in range(3):  # compile, autotune, warm caches
        step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(iters):
            step()
        torch.cuda.synchronize()
    rows = []
    for e in prof.key_averages():
        us = e.device_time_total if hasattr(e, "device_time_total") else e.cuda_time_total
        if us > 0:
            rows.append((e.key, e.count, us / iters))
    return sorted(rows, key=lambda r: -r[2])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("op", choices=["delta_rule", "selective_scan"])
    ap.add_argument("--shape", action="append", required=True,
                    help="comma-separated sizes, e.g. 4,4096,16,128 (repeatable)")
    ap.add_argument("--impl", nargs="+", default=["triton"])
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--variant", action="append", default=[],
                    help="also profile the triton delta rule with one setting changed: "
                         "KERNEL:BK=BV,warps,stages (triton_impl.TUNING), chunk:BK=BT "
                         "(triton_impl.CHUNK), split:BK=0|1 (SPLIT_GRAD) or bkt:N (SPLIT_BKT); "
                         "repeatable, each profiled on its own; join settings with + to apply them "
                         "together")
    ap.add_argument("--beta-max", type=float, default=None,
                    help="delta rule: draw β in (0, this) for statetrack (default 2; fla 1)")
    args = ap.parse_args()
    if args.beta_max is not None:
        BETA_MAX.update(triton=args.beta_max, torch=args.beta_max)
    make = delta_rule_step if args.op == "delta_rule" else scan_step
    profile_shapes(args, make)
    for v in args.variant:  # settings joined by "+" apply together
        with contextlib.ExitStack() as stack:
            for part in v.split("+"):
                stack.enter_context(delta_rule_variant(part))
            args.impl = ["triton"]
            profile_shapes(args, make)


@contextlib.contextmanager
def delta_rule_variant(spec: str) -> Iterator[None]:
    from statetrack.ops.delta_rule import triton_impl

    name, rest = spec.split(":")
    if name == "bkt":  # the split backward's K-tile width
        old, triton_impl.SPLIT_BKT = triton_impl.SPLIT_BKT, int(rest)
        print(f"\n=== variant {spec} (default {old}) ===")
        try:
            yield
        finally:
            triton_impl.SPLIT_BKT = old
        return
    bk, cfg = rest.split("=")
    tables = {"chunk": triton_impl.CHUNK, "split": triton_impl.SPLIT_GRAD}
    table = tables.get(name) or triton_impl.TUNING[name]
    old = table[int(bk)]
    table[int(bk)] = (int(cfg) if name == "chunk" else cfg == "1" if name == "split"
                      else tuple(int(c) for c in cfg.split(",")))
    print(f"\n=== variant {spec} (default {old}) ===")
    try:
        yield
    finally:
        table[int(bk)] = old


def profile_shapes(args: argparse.Namespace, make: Callable) -> None:
    for s in args.shape:
        shape = tuple(int(x) for x in s.split(","))
        for impl in args.impl:
            step = make(shape, impl)
            if step is None:
                print(f"{args.op} {shape} {impl}: not available")
                continue
            rows = profile_step(step, args.iters)
            total = sum(r[2] for r in rows)
            print(f"\n{args.op} {shape} {impl}: {total / 1000:.3f} ms of kernels per "
                  f"forward+backward")
            for name, count, us in rows:
                print(f"  {us / 1000:8.3f} ms {100 * us / total:5.1f}%  x{count // args.iters:<3} "
                      f"{name[:90]}")


if __name__ == "__main__":
    main()
