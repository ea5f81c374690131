"""Which host work sets the eager forward+backward time of the selective scan at
(256, 40, 256, 16): the benchmark's eager timing (``time_backend``) with the backward's two
memsets and its cast of dB and dC swapped for stand-ins that skip them (timing only: the
gradients are wrong), and the autograd engine alone on the op's 8 inputs, alternating; then a
torch.profiler trace of the unchanged step and the host cost of single torch ops issued to an
idle and to a busy GPU (GPU; logs/h200_scan_host_variants_s18.log).

    PYTHONPATH=src python scripts/dev/scan_host_variants.py [--rounds 5] [--trace DIR]
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import triton

from statetrack.eig import EigRange
from statetrack.ops.selective_scan import triton_impl as ti

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from scan import make_inputs, time_backend  # noqa: E402

SHAPE = (256, 40, 256, 16)
EIG = EigRange(-1.0, 1.0)


_grad_buffers, _reduce_grads = ti._grad_buffers, ti._reduce_grads


def buffers_unzeroed(x, dt, z, N):
    """``_grad_buffers`` with ``torch.empty`` for its ``torch.zeros``: no memset launches."""
    zeros, torch.zeros = torch.zeros, torch.empty
    try:
        return _grad_buffers(x, dt, z, N)
    finally:
        torch.zeros = zeros


def reduce_uncast(grads, dBC, B, C):
    """``_reduce_grads`` with an empty bf16 pair for dB, dC: no cast launch."""
    dx, ddt, dz, _, _, dA, dD, dbias, dh0 = grads
    dB, dC = torch.empty(dBC.shape, device=dBC.device, dtype=B.dtype).unbind(0)
    return (dx, ddt, dA, dB, dC, dD, dz, dbias, dh0)


VARIANTS = {
    "as is": (_grad_buffers, _reduce_grads),
    "no memsets": (buffers_unzeroed, _reduce_grads),
    "no cast": (_grad_buffers, reduce_uncast),
    "neither": (buffers_unzeroed, reduce_uncast),
}


def eager_ms(name: str) -> float:
    ti._grad_buffers, ti._reduce_grads = VARIANTS[name]
    try:
        return time_backend(SHAPE, EIG, "triton", "fwdbwd", 100)
    finally:
        ti._grad_buffers, ti._reduce_grads = _grad_buffers, _reduce_grads


class _Eight(torch.autograd.Function):
    """8 inputs, their gradients handed back as they are: the engine's own work."""

    @staticmethod
    def forward(ctx, *ins):
        return ins[0] * 1.0

    @staticmethod
    def backward(ctx, dy):
        return tuple(_Eight.grads)


def engine_ms() -> float:
    ins = make_inputs(SHAPE, True)
    _Eight.grads = [torch.zeros_like(t) for t in ins]
    dy = torch.randn_like(ins[0])

    def step():
        torch.autograd.backward(_Eight.apply(*ins), dy, inputs=ins)
    return triton.testing.do_bench(step, warmup=25, rep=100, return_mode="median",
                                   grad_to_none=ins)


def op_host_us(fn, idle: bool, n: int = 200) -> float:
    """Median µs of the host's call of fn: after a synchronize (idle GPU) or queued behind
    a 2 ms sleep kernel (busy)."""
    out = []
    for _ in range(n):
        torch.cuda.synchronize()
        if not idle:
            torch.cuda._sleep(2_000_000)
        t0 = time.perf_counter()
        fn()
        out.append(1e6 * (time.perf_counter() - t0))
    torch.cuda.synchronize()
    return statistics.median(out)


def trace(out_dir: Path) -> None:
    ins = make_inputs(SHAPE, True)
    x, dt, A, B, C, D, z, bias = ins
    dy = torch.randn_like(x)
    from statetrack.ops.selective_scan import selective_scan
    cache = torch.empty(2**26, dtype=torch.int32, device="cuda")

    def fwdbwd():
        y = selective_scan(x, dt, A, B, C, D=D, z=z, dt_bias=bias, eig_range=EIG,
                           backend="triton")[0]
        torch.autograd.backward(y, dy, inputs=ins)
    for _ in range(20):
        fwdbwd()
    torch.cuda.synchronize()
    acts = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=acts) as prof:
        for _ in range(10):
            for t in ins:
                t.grad = None
            cache.zero_()
            fwdbwd()
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=40))
    out_dir.mkdir(parents=True, exist_ok=True)
    prof.export_chrome_trace(str(out_dir / "scan_host_trace.json"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--trace", type=Path, default=None)
    args = ap.parse_args()
    print(f"device: {torch.cuda.get_device_name()}; shape {SHAPE}, eig [-1, 1], bf16")
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    times["engine alone (8 inputs)"] = []
    for _ in range(args.rounds):
        for name in VARIANTS:
            times[name].append(eager_ms(name))
        times["engine alone (8 inputs)"].append(engine_ms())
    for name, ms in times.items():
        print(f"eager fwd+bwd {name:>24}: median {statistics.median(ms):.3f} ms; all "
              + " ".join(f"{m:.3f}" for m in ms))
    a = torch.randn(2, 256, 40, 16, device="cuda")
    for label, fn in (("torch.empty 655 KB", lambda: torch.empty_like(a)),
                      ("torch.zeros 655 KB", lambda: torch.zeros_like(a)),
                      ("a.to(bf16) 655 KB", lambda: a.to(torch.bfloat16)),
                      ("a.zero_()", lambda: a.zero_())):
        print(f"host µs {label:>20}: idle GPU {op_host_us(fn, True):.1f}, "
              f"busy GPU {op_host_us(fn, False):.1f}")
    if args.trace is not None:
        trace(args.trace)


if __name__ == "__main__":
    main()
