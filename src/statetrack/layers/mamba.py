"""The Mamba-1 block with a signed diagonal transition ``a = lo + (hi − lo)·exp(Δ·A)``."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from statetrack.eig import EigRange
from statetrack.layers._common import ShortConv, check_backend, check_int
from statetrack.layers.registry import register
from statetrack.ops import selective_scan

MambaState = tuple[torch.Tensor, torch.Tensor]  # (conv buffer [B, k−1, Di], h [B, Di, N])


@register("mamba")
class Mamba(nn.Module):
    """Mamba-1 (Gu & Dao 2023) with the eigenvalue range of Grazzi et al. 2025.

    ``x, z = in_proj(u)``; ``x ← silu(conv(x))``; ``(δ, B, C) = x_proj(x)``;
    ``Δ = softplus(dt_proj(δ))``; ``a_t = map(exp(Δ_t·A))``, ``A = −exp(A_log)``;
    ``h_t = a_t ⊙ h_{t−1} + Δ_t B_t x_t``; ``y = (C_t·h_t + D ⊙ x_t) ⊙ silu(z)``; ``out_proj(y)``.
    Shapes: u ``[B, T, d_model]``, x, z ``[B, T, Di]`` with ``Di = expand·d_model``, h
    ``[B, Di, d_state]``. The state carried between calls is (conv buffer, h), so token-by-token
    inference uses the same ``eig_range`` as training (the public code fell back to [0, 1]).
    """

    def __init__(
        self,
        d_model: int,
        *,
        d_state: int = 16,
        expand: int = 2,
        dt_rank: int | str = "auto",
        conv_kernel: int = 4,
        dt_min: float = 1e-3,
        dt_max: float = 0.1,
        dt_scale: float = 1.0,
        eig_range: Sequence[float] | str | EigRange = (0.0, 1.0),
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.d_state = check_int("d_state", d_state)
        self.d_inner = check_int("expand", expand) * d_model
        if dt_rank == "auto":
            dt_rank = math.ceil(d_model / 16)
        self.dt_rank = check_int("dt_rank", dt_rank)
        if not (0.0 < dt_min < dt_max):
            raise ValueError(f"dt_min, dt_max: expected 0 < dt_min < dt_max, "
                             f"got {dt_min}, {dt_max}")
        self.eig_range = EigRange.parse(eig_range)
        self.backend = check_backend(backend)

        Di, N = self.d_inner, self.d_state
        self.in_proj = nn.Linear(d_model, 2 * Di, bias=False)
        self.conv = ShortConv(Di, conv_kernel)
        self.x_proj = nn.Linear(Di, self.dt_rank + 2 * N, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, Di, bias=True)
        # A = −exp(A_log) = −(1..N) in every channel (S4D-real).
        self.A_log = nn.Parameter(torch.log(torch.arange(1.0, N + 1)).repeat(Di, 1))
        self.D = nn.Parameter(torch.ones(Di))
        self.out_proj = nn.Linear(Di, d_model, bias=False)
        self._init_dt(dt_min, dt_max, dt_scale)

    @torch.no_grad()
    def _init_dt(self, dt_min: float, dt_max: float, dt_scale: float) -> None:
        """Mamba's Δ init: W ~ U(±dt_rank^-½·dt_scale); bias = softplus⁻¹(Δ), Δ log-uniform."""
        bound = self.dt_rank ** -0.5 * dt_scale
        nn.init.uniform_(self.dt_proj.weight, -bound, bound)
        u = torch.rand(self.d_inner)
        dt = torch.exp(u * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)).clamp(min=1e-4)
        # softplus⁻¹(Δ) = Δ + log(1 − e^{−Δ}); expm1 keeps it exact for small Δ.
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))

    def _scan_inputs(
        self, u: torch.Tensor, conv_state: torch.Tensor | None
    ) -> tuple[torch.Tensor, ...]:
        """u ``[B, T, d]`` → (x, z, dt, B, C, new conv buffer) as the op takes them."""
        x, z = self.in_proj(u).chunk(2, dim=-1)
        x, conv_state = self.conv(x, conv_state)
        x = F.silu(x)
        low, Bm, Cm = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.linear(low, self.dt_proj.weight)  # the bias goes in as dt_bias, inside softplus
        return x, z, dt, Bm, Cm, conv_state

    def forward(
        self, u: torch.Tensor, state: MambaState | None = None
    ) -> tuple[torch.Tensor, MambaState]:
        """u ``[B, T, d_model]`` → (y ``[B, T, d_model]``, (conv buffer, h ``[B, Di, N]``))."""
        conv_state, ssm_state = (None, None) if state is None else state
        x, z, dt, Bm, Cm, conv_state = self._scan_inputs(u, conv_state)
        y, h = selective_scan(
            x, dt, -torch.exp(self.A_log), Bm, Cm, D=self.D, z=z, dt_bias=self.dt_proj.bias,
            eig_range=self.eig_range, initial_state=ssm_state, output_final_state=True,
            backend=self.backend,
        )
        return self.out_proj(y), (conv_state, h)

    @torch.no_grad()
    def transition_eigenvalues(self, u: torch.Tensor) -> torch.Tensor:
        """The diagonal transition ``a_t`` ``[B, T, Di, N]`` the forward pass applies to u
        (from a zero state), measured through the op: one step from ``h = 1`` with ``x = 0``
        leaves ``h = a_t``."""
        x, _, dt, Bm, Cm, _ = self._scan_inputs(u, None)
        Bsz, T, Di = x.shape
        rows = lambda t: t.reshape(Bsz * T, 1, t.shape[-1])
        ones = x.new_ones(Bsz * T, Di, self.d_state)
        _, a = selective_scan(
            torch.zeros_like(rows(x)), rows(dt), -torch.exp(self.A_log), rows(Bm), rows(Cm),
            dt_bias=self.dt_proj.bias, eig_range=self.eig_range, initial_state=ones,
            output_final_state=True, backend=self.backend,
        )
        return a.reshape(Bsz, T, Di, self.d_state)
