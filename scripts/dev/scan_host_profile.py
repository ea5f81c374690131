"""Host time of one selective-scan forward+backward at (256, 40, 256, 16), where the launches
set the eager time: per call, then cProfile and torch.profiler tables (GPU;
logs/h200_scan_host_profile_s10.log).

    PYTHONPATH=src python scripts/dev/scan_host_profile.py
"""
import cProfile
import pstats
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from scan import make_inputs  # noqa: E402

from statetrack.eig import EigRange  # noqa: E402
from statetrack.ops.bench import host_ms  # noqa: E402
from statetrack.ops.selective_scan import selective_scan  # noqa: E402

shape = (256, 40, 256, 16)
ins = make_inputs(shape, True)
x, dt, A, B, C, D, z, bias = ins
eig = EigRange(-1.0, 1.0)
dy = torch.randn_like(x)


def fwd():
    return selective_scan(x, dt, A, B, C, D=D, z=z, dt_bias=bias, eig_range=eig,
                          backend="triton")[0]


def fwdbwd():
    torch.autograd.backward(fwd(), dy, inputs=ins)
    for t in ins:
        t.grad = None


def fwd_only():
    with torch.no_grad():
        fwd()


def gradonly():
    torch.autograd.grad(fwd(), ins, dy)


for name, fn in (("fwd_nograd", fwd_only), ("fwd_grad", fwd), ("fwdbwd", fwdbwd),
                 ("autograd.grad", gradonly)):
    host, synced = host_ms(fn, n=200)
    print(f"{name}: host {host:.3f} ms/call, with sync {synced:.3f}")

prof = cProfile.Profile()
prof.enable()
for _ in range(200):
    fwdbwd()
prof.disable()
torch.cuda.synchronize()
pstats.Stats(prof).sort_stats("tottime").print_stats(25)
with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as p:
    for _ in range(20):
        fwdbwd()
print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
