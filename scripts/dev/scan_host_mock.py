"""Host time of one selective-scan forward+backward at (256, 40, 256, 16) bf16, on a CPU, with
the Triton kernels replaced by no-ops: what our own Python around the launches costs (the
wrapper's checks, the autograd function, buffers), without a GPU. Prints the medians over
``--repeats`` runs of ``--steps`` steps: the whole step, then each piece timed inside it (as
scan_host_engine.py does on the GPU). On a CPU the autograd engine runs the backward on the
calling thread (on CUDA it hands it to the device's thread), so "engine" differs from the GPU's.
The --profile table misplaces time onto some C methods (unbind: ~100 µs a call, against ~1.5 µs
timed around it): the perf_counter pieces are the measure, the table a pointer to hot spots.

    PYTHONPATH=src python scripts/dev/scan_host_mock.py [--steps 2000] [--repeats 7] [--profile]
        [--shape B T Dm N]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import time
from collections import defaultdict
from collections.abc import Callable

import torch

from statetrack.eig import EigRange
from statetrack.ops.bench import timed
from statetrack.ops.selective_scan import selective_scan
from statetrack.ops.selective_scan import triton_impl as ti

SHAPE = (256, 40, 256, 16)
KERNELS = ("ss_fwd_kernel", "ss_bwd_kernel", "ss_fwd_carry_kernel", "ss_bwd_carry_kernel",
           "ss_lanes_fwd_kernel", "ss_lanes_bwd_kernel")


def _noop(*args: object, **kwargs: object) -> None:
    return None


class NoKernel:
    """Stands in for a JIT kernel: ``kernel[grid](*args, **kwargs)`` does nothing."""

    def __getitem__(self, grid: object) -> Callable[..., None]:
        return _noop


def make_inputs(shape: tuple[int, int, int, int]) -> list[torch.Tensor]:
    """benchmarks/scan.py's inputs: bf16 activations, float32 A, D and dt_bias, all leaves."""
    Bsz, T, Dm, N = shape
    g = torch.Generator().manual_seed(0)

    def r(*s: int, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
        return torch.randn(*s, generator=g).to(dtype).requires_grad_()
    A = (-torch.exp(torch.randn(Dm, N, generator=g))).requires_grad_()
    return [r(Bsz, T, Dm), r(Bsz, T, Dm), A, r(Bsz, T, N), r(Bsz, T, N),
            r(Dm, dtype=torch.float32), r(Bsz, T, Dm), r(Dm, dtype=torch.float32)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--shape", type=int, nargs=4, default=SHAPE, metavar=("B", "T", "Dm", "N"),
                        help="a small one leaves out the CPU's own memset, cast and allocations "
                        "of the buffers, which a GPU does off the host (default %(default)s)")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile table")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name in KERNELS:
        setattr(ti, name, NoKernel())
    shape = tuple(args.shape)
    ins = make_inputs(shape)
    x, dt, A, B, C, D, z, bias = ins
    eig = EigRange(-1.0, 1.0)
    dy = torch.randn_like(x)

    def step() -> None:
        y = selective_scan(x, dt, A, B, C, D=D, z=z, dt_bias=bias, eig_range=eig,
                           backend="triton")[0]
        torch.autograd.grad(y, ins, dy)

    def run(fn: Callable[[], None]) -> float:
        t0 = time.perf_counter()
        for _ in range(args.steps):
            fn()
        return 1e3 * (time.perf_counter() - t0) / args.steps

    for _ in range(200):
        step()
    steps = [run(step) for _ in range(args.repeats)]

    acc: dict[str, float] = defaultdict(float)
    ti._forward = timed(acc, "_forward", ti._forward)
    ti._backward = timed(acc, "_backward", ti._backward)
    Fn = ti._SelectiveScanFn
    Fn.forward = staticmethod(timed(acc, "Fn.forward", Fn.forward))
    Fn.backward = staticmethod(timed(acc, "Fn.backward", Fn.backward))
    ti.selective_scan_triton = timed(acc, "selective_scan_triton", ti.selective_scan_triton)
    sel = timed(acc, "selective_scan", selective_scan)

    def parts_step() -> None:
        y = sel(x, dt, A, B, C, D=D, z=z, dt_bias=bias, eig_range=eig, backend="triton")[0]
        t0 = time.perf_counter()
        torch.autograd.grad(y, ins, dy)
        acc["autograd.grad"] += time.perf_counter() - t0

    parts: dict[str, list[float]] = defaultdict(list)
    for _ in range(args.repeats):
        acc.clear()
        run(parts_step)
        ms = {k: 1e3 * v / args.steps for k, v in acc.items()}
        pieces = {
            "wrapper (checks)": ms["selective_scan"] - ms["selective_scan_triton"],
            "apply around Fn.forward": ms["selective_scan_triton"] - ms["Fn.forward"],
            "Fn.forward": ms["Fn.forward"],
            "  _forward": ms["_forward"],
            "Fn.backward": ms["Fn.backward"],
            "  _backward": ms["_backward"],
            "engine (grad - Fn.backward)": ms["autograd.grad"] - ms["Fn.backward"],
        }
        for k, v in pieces.items():
            parts[k].append(v)
    print(f"(B, T, Dm, N) = {shape} bf16 on the CPU, kernels no-ops; medians of "
          f"{args.repeats} x {args.steps} steps, ms per step")
    print(f"{'step (unwrapped)':>28}: {statistics.median(steps):.4f}  "
          f"(min {min(steps):.4f})")
    for k, v in parts.items():
        print(f"{k:>28}: {statistics.median(v):.4f}")
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(args.steps):
            parts_step()
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(30)


if __name__ == "__main__":
    main()
