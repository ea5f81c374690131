"""Argument checks, backend selection and the ops' face to torch.compile, shared by the ops."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch

BACKENDS = ("auto", "reference", "torch", "triton")
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
Op = TypeVar("Op", bound=Callable[..., Any])


def opaque(op: Op) -> Op:
    """``op`` as torch.compile sees it: one call, run eagerly between compiled graphs.

    Dynamo would otherwise trace into the op's host logic (argument checks, tile tables, the
    Triton launchers and their ``autograd.Function``), which it need not understand; the code
    around the op is what compiling fuses. Outside a compile the call costs one flag check:
    ``torch._compile._disable_dynamo`` (torch's own lazy form of ``torch.compiler.disable``,
    a private API) imports ``torch._dynamo``, a second of import time, only when a compiled
    graph first calls it."""
    try:
        from torch._compile import _disable_dynamo
    except ImportError:  # a torch without it: the public form, which imports torch._dynamo now
        disabled = torch.compiler.disable(op)
    else:
        disabled = _disable_dynamo(op)

    @functools.wraps(op)
    def call(*args: Any, **kwargs: Any) -> Any:
        if torch.compiler.is_compiling():
            return disabled(*args, **kwargs)
        return op(*args, **kwargs)

    return call  # type: ignore[return-value]


def check_tensor(
    name: str, t: torch.Tensor | None, ndim: int, layout: str, *, optional: bool = False
) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``t`` is a floating tensor of ``ndim`` dims."""
    if t is None:
        if optional:
            return
        raise ValueError(f"{name}: expected a tensor of shape {layout}, got None")
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name}: expected a tensor of shape {layout}, got {type(t).__name__}")
    if t.ndim != ndim:
        raise ValueError(f"{name}: expected shape {layout}, got {tuple(t.shape)}")
    if t.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{name}: expected a floating tensor of shape {layout} "
                         f"(float16/bfloat16/float32/float64), got {t.dtype}")


def check_shape(name: str, t: torch.Tensor | None, expected: Sequence[int], layout: str) -> None:
    if t is not None and tuple(t.shape) != tuple(expected):
        raise ValueError(f"{name}: expected shape {layout} = {tuple(expected)}, "
                         f"got {tuple(t.shape)}")


def check_same_device(**tensors: torch.Tensor | None) -> None:
    devices = {n: t.device for n, t in tensors.items() if t is not None}
    if len(set(devices.values())) > 1:
        raise ValueError(f"all inputs must be on one device, got {devices}")


@functools.cache
def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: str, device: torch.device, has_triton_impl: bool = True) -> str:
    """``auto`` is triton for CUDA tensors when Triton imports, else the chunked torch form."""
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "auto":
        if device.type == "cuda" and has_triton_impl and triton_available():
            return "triton"
        return "torch"
    if backend == "triton":
        if not has_triton_impl:
            raise ValueError("backend='triton' is not available for this op yet")
        if not triton_available():
            raise ValueError(
                "backend='triton' needs the triton package: pip install statetrack[gpu]"
            )
    return backend
