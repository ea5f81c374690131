"""Host time of each piece of the selective-scan backward at (256, 40, 256, 16), each called
300 times in a row (GPU; logs/h200_scan_host_parts_s10.log).

    PYTHONPATH=src python scripts/dev/scan_host_parts.py
"""
import sys
from pathlib import Path

import torch
import triton

from statetrack.ops.bench import host_ms
from statetrack.ops.selective_scan import triton_impl as ti

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from scan import make_inputs  # noqa: E402

x, dt, A, B, C, D, z, bias = make_inputs((256, 40, 256, 16), False)
Bsz, T, Dm = x.shape
N = 16
dy = torch.randn_like(x)
y, hT, hseg = ti._forward(x, dt, A, B, C, D, z, bias, None, -1.0, 2.0, True, pipe=True)
cfg = ti.pipe_tiles(Bsz, T, Dm, x.device, N=N, save=True)[1]  # as _forward chose
grads, dBC = ti._grad_buffers(x, dt, z, N)
grid = (triton.cdiv(Dm, cfg.BD), Bsz, 1)
scratch = torch.empty(grid[0] * Bsz * (cfg.SEG // cfg.BT) * 16 * cfg.BD, device="cuda")


def launch():
    ti.ss_bwd_kernel[grid](
        x, dt, A, B, C, D, z, bias, hseg, dy, None, *grads, scratch, hseg, hseg,
        T, Dm, N, -1.0, 2.0, 1, NP=16, BT=cfg.BT, BD=cfg.BD, SEG=cfg.SEG, HAS_D=True,
        HAS_Z=True, HAS_BIAS=True, HAS_DHT=False, PIPE=True, SPLIT=False, BFLY=cfg.bfly,
        RBT=cfg.RBT or cfg.BT, num_warps=1, maxnreg=cfg.maxnreg)


def fwd_launch():
    ti._forward(x, dt, A, B, C, D, z, bias, None, -1.0, 2.0, True, pipe=True)


pieces = {
    "torch.zeros(dBC)": lambda: torch.zeros(2, Bsz, T, N, device="cuda"),
    "torch.empty(dBC)": lambda: torch.empty(2, Bsz, T, N, device="cuda"),
    "dBC.zero_()": lambda: dBC.zero_(),
    "_grad_buffers": lambda: ti._grad_buffers(x, dt, z, N),
    "scratch empty": lambda: torch.empty(grid[0] * Bsz * 16 * 16 * 8, device="cuda"),
    "bwd kernel launch": launch,
    "_reduce_grads": lambda: ti._reduce_grads(grads, dBC, B, C),
    "_backward": lambda: ti._backward(x, dt, A, B, C, D, z, bias, hseg, dy, None, -1.0, 2.0,
                                      pipe=True),
    "_forward": fwd_launch,
    "pipe_tiles": lambda: ti.pipe_tiles(Bsz, T, Dm, x.device),
    "empty_like": lambda: torch.empty_like(x),
    "sum(0)": lambda: grads[5].sum(0),
}
for name, fn in pieces.items():
    host, synced = host_ms(fn)
    print(f"{name:>20}: host {host:.4f} ms/call, with sync {synced:.4f}")
