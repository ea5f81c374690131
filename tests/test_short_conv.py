"""ShortConv (shifted multiply-adds) is the causal depthwise conv1d, gradients and carried
buffers included, and keeps its input's dtype."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from statetrack.layers._common import ShortConv


def conv1d_reference(conv: ShortConv, x: torch.Tensor) -> torch.Tensor:
    """F.conv1d over the zero-padded past: the definition ShortConv must match."""
    padded = F.pad(x.transpose(1, 2), (conv.kernel - 1, 0))
    return F.conv1d(padded, conv.conv.weight, conv.conv.bias,
                    groups=x.shape[-1]).transpose(1, 2)


@pytest.mark.parametrize("kernel", [1, 2, 4])
def test_short_conv_is_the_causal_depthwise_conv1d(kernel: int) -> None:
    torch.manual_seed(kernel)
    conv = ShortConv(6, kernel).double()
    x = torch.randn(3, 9, 6, dtype=torch.float64, requires_grad=True)
    y, _ = conv(x)
    ref = conv1d_reference(conv, x)
    assert torch.allclose(y, ref, rtol=1e-12, atol=1e-12)
    w = torch.randn_like(y)
    params = [x, conv.conv.weight, conv.conv.bias]
    for a, b in zip(torch.autograd.grad((y * w).sum(), params),
                    torch.autograd.grad((ref * w).sum(), params), strict=True):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)


def test_short_conv_in_pieces_equals_whole_and_keeps_the_dtype() -> None:
    torch.manual_seed(0)
    conv = ShortConv(5, 4).double()
    x = torch.randn(2, 11, 5, dtype=torch.float64)
    whole, _ = conv(x)
    first, buffer = conv(x[:, :2])
    second, _ = conv(x[:, 2:], buffer)
    assert torch.allclose(torch.cat([first, second], dim=1), whole, rtol=1e-12, atol=1e-12)
    half, _ = ShortConv(5, 4)(x.to(torch.bfloat16))
    assert half.dtype == torch.bfloat16


@pytest.mark.parametrize("wants", ["x", "params", "buffer"])
def test_short_conv_gradients_of_any_subset_of_its_inputs(wants: str) -> None:
    """The hand-written backward gives each input that needs a gradient the conv1d's, the
    carried buffer included (a sequence resumed in pieces), and none to the others."""
    torch.manual_seed(1)
    conv = ShortConv(4, 3).double()
    x = torch.randn(2, 7, 4, dtype=torch.float64, requires_grad=wants == "x")
    buffer = torch.randn(2, 2, 4, dtype=torch.float64, requires_grad=wants == "buffer")
    for p in conv.parameters():
        p.requires_grad_(wants == "params")
    y, _ = conv(x, buffer)
    padded = torch.cat([buffer, x], 1).transpose(1, 2)  # the buffer is the past
    ref = F.conv1d(padded, conv.conv.weight, conv.conv.bias, groups=4).transpose(1, 2)
    assert torch.allclose(y, ref, rtol=1e-12, atol=1e-12)
    inputs = {"x": [x], "buffer": [buffer], "params": list(conv.parameters())}[wants]
    w = torch.randn_like(y)
    for a, b in zip(torch.autograd.grad((y * w).sum(), inputs),
                    torch.autograd.grad((ref * w).sum(), inputs), strict=True):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)


def test_short_conv_without_bias_is_the_conv1d_without_bias() -> None:
    """bias=False: no bias parameter, the conv1d with bias None, and the same gradients; a
    sequence run in pieces still equals it run whole."""
    torch.manual_seed(2)
    conv = ShortConv(6, 4, bias=False).double()
    assert conv.conv.bias is None and len(list(conv.parameters())) == 1
    x = torch.randn(3, 9, 6, dtype=torch.float64, requires_grad=True)
    y, _ = conv(x)
    ref = conv1d_reference(conv, x)
    assert torch.allclose(y, ref, rtol=1e-12, atol=1e-12)
    w = torch.randn_like(y)
    params = [x, conv.conv.weight]
    for a, b in zip(torch.autograd.grad((y * w).sum(), params),
                    torch.autograd.grad((ref * w).sum(), params), strict=True):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)
    first, buffer = conv(x[:, :4].detach())
    second, _ = conv(x[:, 4:].detach(), buffer)
    assert torch.allclose(torch.cat([first, second], dim=1), y.detach(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("bias", [True, False])
def test_short_conv_traced_by_compile_equals_its_eager_form(bias: bool) -> None:
    """Under torch.compile the convolution is the plain sum of taps (``is_compiling``), with or
    without a bias: the same output and gradients as the hand-written autograd form."""
    torch.manual_seed(3)
    conv = ShortConv(5, 4, bias=bias).double()
    x = torch.randn(2, 8, 5, dtype=torch.float64, requires_grad=True)
    compiled = torch.compile(conv, backend="aot_eager", fullgraph=True)
    (y, _), (ref, _) = compiled(x), conv(x)
    assert torch.allclose(y, ref, rtol=1e-12, atol=1e-12)
    w = torch.randn_like(y)
    params = [x, *conv.parameters()]
    for a, b in zip(torch.autograd.grad((y * w).sum(), params),
                    torch.autograd.grad((ref * w).sum(), params), strict=True):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)
