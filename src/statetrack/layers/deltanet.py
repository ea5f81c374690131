"""DeltaNet with β ∈ [1 − hi, 1 − lo], Householder products (DeltaProduct) and a forget gate."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from statetrack.eig import EigRange
from statetrack.layers._common import ShortConv, check_backend, check_heads, check_int
from statetrack.layers.registry import register
from statetrack.ops import delta_rule

# (conv buffers of q, k, v [B, k−1, ·], S [B, H, K, V])
DeltaNetState = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


@register("deltanet")
class DeltaNet(nn.Module):
    """DeltaNet (Yang et al. 2024) with generalized Householder transitions.

    Per token and head, with ``n = num_householder`` sub-steps ``j = 1..n`` applied in order:
    ``S ← α_j (I − β_j k_j k_jᵀ) S + β_j k_j v_jᵀ``, then ``o_t = Sᵀ q_t``. q, k, v come from
    linear projections, a short causal depthwise conv and SiLU; q and k are L2-normalised (q then
    scaled by K^-½ as in flash-linear-attention), so the eigenvalue of a factor along k_j is
    ``α_j (1 − β_j)``. With ``g = sigmoid(w·x)`` and ``eig_range = [lo, hi]``,
    ``β = (1 − hi) + (hi − lo)·g`` puts ``1 − β`` in ``[lo, hi]``: [0, 1] gives β = g and
    [−1, 1] gives β = 2g (the write term uses the same β, as in the paper). ``use_gate`` adds
    Gated DeltaNet's forget gate ``α = exp(−exp(A_log)·softplus(w·x + dt_bias)) ∈ (0, 1)``,
    applied at the first sub-step (α_j = 1 for j > 1). The output is RMS-normalised per head and
    projected back. Shapes: x ``[B, T, d]``, q, k ``[B, T, H, K]`` with ``K = d / H``,
    S ``[B, H, K, K]``. The n sub-steps run as one sequence of length ``T·n`` through the op.

    The eigenvalue along k is ``1 − β‖k‖²``, and ‖k‖ = 1 holds only up to rounding: under bf16
    autocast k reaches the op in bf16, where ‖k‖² misses 1 by up to 0.5% (K = 32), so at β = 2
    half the keys give eigenvalues below −1 (down to about −1.011). ``unit_keys`` divides β by
    ‖k‖² of the keys as the op receives them, in float32, so the eigenvalue along k is
    ``1 − β`` as rounded there. Off by default: the paper's model, and the Table 3 runs, do not
    do it. ``conv_bias: false`` drops the short convolutions' biases, as flash-linear-attention's
    ShortConvolution (the paper's model) has none.
    """

    def __init__(
        self,
        d_model: int,
        *,
        num_heads: int = 4,
        conv_kernel: int = 4,
        eig_range: Sequence[float] | str | EigRange = (0.0, 1.0),
        num_householder: int = 1,
        use_gate: bool = False,
        unit_keys: bool = False,
        conv_bias: bool = True,
        norm_eps: float = 1e-5,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.head_dim = check_heads(d_model, num_heads)
        self.num_heads = num_heads
        self.n = check_int("num_householder", num_householder)
        for name, flag in (("use_gate", use_gate), ("unit_keys", unit_keys),
                           ("conv_bias", conv_bias)):
            if not isinstance(flag, bool):
                raise ValueError(f"{name}: expected true or false, got {flag!r}")
        self.unit_keys = unit_keys
        self.eig_range = EigRange.parse(eig_range)
        self.backend = check_backend(backend)
        n, H = self.n, num_heads

        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.k_proj = nn.Linear(d_model, n * d_model, bias=False)
        self.v_proj = nn.Linear(d_model, n * d_model, bias=False)
        self.b_proj = nn.Linear(d_model, n * H, bias=False)
        self.q_conv = ShortConv(d_model, conv_kernel, conv_bias)
        self.k_conv = ShortConv(n * d_model, conv_kernel, conv_bias)
        self.v_conv = ShortConv(n * d_model, conv_kernel, conv_bias)
        self.use_gate = use_gate
        if use_gate:
            self.a_proj = nn.Linear(d_model, H, bias=False)
            self.A_log = nn.Parameter(torch.log(torch.empty(H).uniform_(1.0, 16.0)))
            dt = torch.exp(torch.rand(H) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
            self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # softplus⁻¹(Δ)
        self.o_norm = nn.RMSNorm(self.head_dim, eps=norm_eps)
        self.o_proj = nn.Linear(d_model, d_model, bias=False)

    def _features(
        self, x: torch.Tensor, state: DeltaNetState | None
    ) -> tuple[torch.Tensor, ...]:
        """x ``[B, T, d]`` → q ``[B, T, H, K]``, k, v ``[B, T, n, H, K]``, β ``[B, T, n, H]``,
        α ``[B, T, n, H]`` or None, and the three new conv buffers."""
        Bsz, T, _ = x.shape
        n, H, K = self.n, self.num_heads, self.head_dim
        cq, ck, cv = (None, None, None) if state is None else state[:3]
        q, cq = self.q_conv(self.q_proj(x), cq)
        k, ck = self.k_conv(self.k_proj(x), ck)
        v, cv = self.v_conv(self.v_proj(x), cv)
        # ‖k‖ = 1 makes 1 − β the eigenvalue along k; eps guards an all-zero SiLU output.
        v = F.silu(v).view(Bsz, T, n, H, K)
        # q, k in v's dtype: under CUDA autocast F.normalize returns float32, which would send
        # the op's Triton kernels down their exact-float32 (ieee) dot path.
        q = F.normalize(F.silu(q).view(Bsz, T, H, K), dim=-1, eps=1e-6).to(v.dtype) * K ** -0.5
        k = F.normalize(F.silu(k).view(Bsz, T, n, H, K), dim=-1, eps=1e-6).to(v.dtype)
        g = torch.sigmoid(self.b_proj(x)).view(Bsz, T, n, H)
        # β = 1 − λ with λ = lo + (hi − lo)(1 − g), written so [0, 1] gives exactly β = g.
        lo, hi = self.eig_range.lo, self.eig_range.hi
        beta = g if self.eig_range.is_default else (1.0 - hi) + (hi - lo) * g
        if self.unit_keys:  # in float32: a 16-bit β would round the correction away again
            # (a degenerate key, ‖k‖² ≤ 1/2 where SiLU left nothing to normalise, keeps its β)
            wide = torch.promote_types(beta.dtype, torch.float32)
            norm2 = k.to(wide).square().sum(-1)
            beta = torch.where(norm2 > 0.5, beta.to(wide) / norm2, beta.to(wide))
        alpha = None
        if self.use_gate:
            log_alpha = -torch.exp(self.A_log) * F.softplus(self.a_proj(x) + self.dt_bias)
            alpha = torch.ones_like(beta)
            alpha = torch.cat([torch.exp(log_alpha)[:, :, None], alpha[:, :, 1:]], dim=2)
        return q, k, v, beta, alpha, cq, ck, cv

    def forward(
        self, x: torch.Tensor, state: DeltaNetState | None = None
    ) -> tuple[torch.Tensor, DeltaNetState]:
        """x ``[B, T, d]`` → (y ``[B, T, d]``, (conv buffers, S ``[B, H, K, K]``))."""
        Bsz, T, d = x.shape
        n, H, K = self.n, self.num_heads, self.head_dim
        q, k, v, beta, alpha, cq, ck, cv = self._features(x, state)
        # Only the last sub-step's output is read, so q may be repeated at every sub-step.
        q = q[:, :, None].expand(Bsz, T, n, H, K)
        flat = lambda t: t.reshape(Bsz, T * n, *t.shape[3:])
        o, S = delta_rule(
            flat(q), flat(k), flat(v), flat(beta), gate=None if alpha is None else flat(alpha),
            initial_state=None if state is None else state[3], output_final_state=True,
            backend=self.backend,
        )
        o = o.view(Bsz, T, n, H, K)[:, :, -1]
        # Normalise in at least float32 (under bf16 autocast the op returns bf16).
        o = self.o_norm(o.to(torch.promote_types(o.dtype, torch.float32))).reshape(Bsz, T, d)
        return self.o_proj(o), (cq, ck, cv, S)

    @torch.no_grad()
    def transition_eigenvalues(self, x: torch.Tensor) -> torch.Tensor:
        """The eigenvalue ``α_j (1 − β_j)`` of each Householder factor along its key,
        ``[B, T, n, H]``, as the forward pass applies them to x (from a zero state), measured
        through the op: one step from ``S = k 1ᵀ`` with ``v = 0`` leaves ``α(1 − β) k 1ᵀ``."""
        _, k, v, beta, alpha, *_ = self._features(x, None)
        Bsz, T, n, H, K = k.shape
        rows = lambda t: t.reshape(Bsz * T * n, 1, *t.shape[3:])
        k1 = rows(k)
        S0 = k1[:, 0, :, :, None].expand(-1, H, K, K).contiguous()
        _, S = delta_rule(
            torch.zeros_like(k1), k1, torch.zeros_like(k1), rows(beta),
            gate=None if alpha is None else rows(alpha), initial_state=S0,
            output_final_state=True, backend=self.backend,
        )
        lam = torch.einsum("bhk,bhkv->bhv", k1[:, 0].to(S.dtype), S).mean(-1)
        return lam.reshape(Bsz, T, n, H)
