"""Where the host time of a selective-scan forward+backward at (256, 40, 256, 16) goes, timed
inside autograd: the op's wrapper, its forward and backward and the engine around them (GPU;
logs/h200_scan_host_engine_s10.log).

    PYTHONPATH=src python scripts/dev/scan_host_engine.py
"""
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

from statetrack.eig import EigRange
from statetrack.ops.bench import timed
from statetrack.ops.selective_scan import selective_scan
from statetrack.ops.selective_scan import triton_impl as ti

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from scan import make_inputs  # noqa: E402

acc = defaultdict(float)


ti._backward = timed(acc, "_backward", ti._backward)
ti._forward = timed(acc, "_forward", ti._forward)
ti._SelectiveScanFn.backward = staticmethod(timed(acc, "Fn.backward", ti._SelectiveScanFn.backward))
ti._SelectiveScanFn.forward = staticmethod(timed(acc, "Fn.forward", ti._SelectiveScanFn.forward))
ins = make_inputs((256, 40, 256, 16), True)
x, dt, A, B, C, D, z, bias = ins
eig = EigRange(-1.0, 1.0)
dy = torch.randn_like(x)
sel = timed(acc, "selective_scan", selective_scan)


def step():
    y = sel(x, dt, A, B, C, D=D, z=z, dt_bias=bias, eig_range=eig, backend="triton")[0]
    t0 = time.perf_counter()
    torch.autograd.grad(y, ins, dy)
    acc["autograd.grad"] += time.perf_counter() - t0


for _ in range(30):
    step()
torch.cuda.synchronize()
acc.clear()
n = 300
t0 = time.perf_counter()
for _ in range(n):
    step()
total = time.perf_counter() - t0
torch.cuda.synchronize()
print(f"step: {1e3 * total / n:.4f} ms")
for k, v in acc.items():
    print(f"{k:>16}: {1e3 * v / n:.4f} ms")
