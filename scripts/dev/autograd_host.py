"""Host time of the autograd engine on CUDA for trivial graphs (one and two inputs, a custom
Function): the fixed cost a selective-scan backward pays before its own work (GPU;
logs/h200_scan_host_parts_s10.log).

    python scripts/dev/autograd_host.py
"""
import torch

from statetrack.ops.bench import host_ms

x = torch.randn(256, 40, 256, device="cuda", requires_grad=True)
w = torch.randn(256, device="cuda", requires_grad=True)
dy = torch.randn_like(x)


class Ident(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * 1.0

    @staticmethod
    def backward(ctx, g):
        return g, None


def t(name, fn, n=300):
    print(f"{name:>28}: host {host_ms(fn, n)[0]:.4f} ms/call")


t("mul grad (1 input)", lambda: torch.autograd.grad(x * 2.0, [x], dy))
t("mul+w grad (2 inputs)", lambda: torch.autograd.grad(x * w, [x, w], dy))
t("custom Function grad", lambda: torch.autograd.grad(Ident.apply(x, w), [x], dy))
t("mul (no grad)", lambda: x.detach() * 2.0)
xc = x.detach().cpu().requires_grad_()
t("cpu mul grad", lambda: torch.autograd.grad(xc * 2.0, [xc], dy.cpu()), n=50)
