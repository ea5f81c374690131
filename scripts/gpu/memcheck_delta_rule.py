"""One forward+backward of the triton delta rule per shape, in the order that once ended in an
illegal memory access (session 4): run under ``compute-sanitizer --tool memcheck``.

    PYTHONPATH=src compute-sanitizer --tool memcheck python3 scripts/gpu/memcheck_delta_rule.py \
        [--old-settings]
"""

from __future__ import annotations

import sys

import torch

from statetrack.ops.delta_rule import delta_rule, triton_impl

# --old-settings: the K = 64 launch settings of the run that failed (before session 4's retune;
# a stage count of 1 also keeps the state kernels at BV 32)
OLD = {"prep": (32, 8, 1), "grad": (32, 8, 1), "state_fwd": (32, 4, 1), "state_bwd": (32, 4, 1)}
if "--old-settings" in sys.argv[1:]:
    for name, cfg in OLD.items():
        triton_impl.TUNING[name][64] = cfg

SHAPES = [(256, 40, 4, 32), (256, 256, 4, 32), (8, 2048, 16, 64), (2, 130, 3, 128)]

for B, T, H, K in SHAPES:
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (torch.randn(B, T, H, K, device="cuda", generator=g) for _ in range(3))
    k = torch.nn.functional.normalize(k, dim=-1)
    beta = 2 * torch.rand(B, T, H, device="cuda", generator=g)
    gate = 2 * torch.rand(B, T, H, device="cuda", generator=g) - 1
    xs = [x.to(torch.bfloat16).requires_grad_() for x in (q, k, v, beta, gate)]
    o, S = delta_rule(*xs[:4], gate=xs[4], backend="triton", output_final_state=True)
    (o.float().sum() + S.sum()).backward()
    torch.cuda.synchronize()
    print(f"{(B, T, H, K)}: ok, |o| {o.float().norm():.3e}", flush=True)
sys.exit(0)
