"""SequenceModel: the one model type, a causal LM over a vocabulary built from a mixer."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from statetrack.layers import MIXERS, build_mixer
from statetrack.layers._common import NORM_TYPES
from statetrack.models.config import INIT_SCHEMES, MLP_KINDS, NORM_KINDS, ModelConfig

NO_DECAY_NAMES = ("A_log", "D")
"""Parameter names (besides norm gains and biases) exempt from weight decay."""
INIT_MIXERS = {"fla": ("deltanet",), "paper": ("deltanet",), "xlstm": ("slstm",)}
"""The mixers each init scheme besides ``torch`` is defined for: ``fla`` and ``paper`` for
DeltaNet, whose Linear and Conv1d layers have no init of their own (Mamba's Δ projection and the
xLSTM gates do); ``xlstm`` for sLSTM, whose gate projections are its ``W``."""
FLA_INIT_STD = 0.02  # flash-linear-attention's ``initializer_range``
PAPER_PROJ_GAIN = 2 ** -2.5  # the Xavier gain of the paper's DeltaNet layer's projections


def validate_config(cfg: ModelConfig) -> None:
    """Raise a ``ValueError`` naming the bad ``model.<key>`` and the allowed values."""
    for key in ("vocab_size", "d_model", "n_layers"):
        value = getattr(cfg, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"model.{key}: expected an int >= 1, got {value!r}")
    if cfg.mixer not in MIXERS:
        raise ValueError(f"model.mixer: expected one of {', '.join(sorted(MIXERS))}, "
                         f"got {cfg.mixer!r}")
    if cfg.mlp not in MLP_KINDS:
        raise ValueError(f"model.mlp: expected one of {', '.join(MLP_KINDS)}, got {cfg.mlp!r}")
    if not isinstance(cfg.mlp_ratio, (int, float)) or not cfg.mlp_ratio > 0:
        raise ValueError(f"model.mlp_ratio: expected a number > 0, got {cfg.mlp_ratio!r}")
    if not isinstance(cfg.norm_eps, (int, float)) or not cfg.norm_eps > 0:
        raise ValueError(f"model.norm_eps: expected a number > 0, got {cfg.norm_eps!r}")
    if cfg.init not in INIT_SCHEMES:
        raise ValueError(f"model.init: expected one of {', '.join(INIT_SCHEMES)}, "
                         f"got {cfg.init!r}")
    mixers = INIT_MIXERS.get(cfg.init)
    if mixers is not None and cfg.mixer not in mixers:
        raise ValueError(f"model.init: {cfg.init!r} is defined for mixer(s) "
                         f"{', '.join(mixers)} only, got mixer {cfg.mixer!r}")
    if cfg.norm not in NORM_KINDS:
        raise ValueError(f"model.norm: expected one of {', '.join(NORM_KINDS)}, got {cfg.norm!r}")
    if not isinstance(cfg.mixer_options, dict):
        raise ValueError(f"model.mixer_options: expected a mapping, got {cfg.mixer_options!r}")
    if not isinstance(cfg.final_norm, bool):
        raise ValueError(f"model.final_norm: expected true or false, got {cfg.final_norm!r}")
    std = cfg.embedding_std
    if isinstance(std, bool) or not isinstance(std, (int, float)) or not std > 0:
        raise ValueError(f"model.embedding_std: expected a number > 0, got {std!r}")
    if cfg.init != "torch" and std != FLA_INIT_STD:
        raise ValueError(f"model.embedding_std: init {cfg.init!r} draws the embedding itself; "
                         f"leave embedding_std at {FLA_INIT_STD}, got {std!r}")


class GatedMLP(nn.Module):
    """``down(act(gate(x)) ⊙ up(x))``; act = SiLU (SwiGLU) or GELU (xLSTM's gated FFN).

    Hidden width, rounded up to a multiple of 8: SwiGLU uses ``2/3 · mlp_ratio · d`` (the
    LLaMA / flash-linear-attention convention: the parameters of a plain MLP of ratio
    mlp_ratio); GELU uses ``mlp_ratio · d`` (xLSTM's ``proj_factor``; xLSTM rounds 1.3·128 up to
    a multiple of 64, i.e. 192, where this gives 168).
    """

    def __init__(self, d_model: int, kind: str, mlp_ratio: float) -> None:
        super().__init__()
        hidden = mlp_ratio * d_model * (2 / 3 if kind == "swiglu" else 1)
        hidden = 8 * math.ceil(hidden / 8)
        self.act = F.silu if kind == "swiglu" else F.gelu
        self.gate_up = nn.Linear(d_model, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(self.act(gate) * up)


def make_norm(cfg: ModelConfig) -> nn.Module:
    """A block or final norm of ``cfg.norm``'s kind: RMSNorm, or LayerNorm without a bias."""
    if cfg.norm == "layer":
        return nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps, bias=False)
    return nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)


class Block(nn.Module):
    """``x + mixer(norm(x))``, then ``x + mlp(norm(x))`` unless the MLP is "none"."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.mixer_norm = make_norm(cfg)
        self.mixer = build_mixer(cfg.mixer, cfg.d_model, cfg.mixer_options)
        self.mlp_norm = self.mlp = None
        if cfg.mlp != "none":
            self.mlp_norm = make_norm(cfg)
            self.mlp = GatedMLP(cfg.d_model, cfg.mlp, cfg.mlp_ratio)

    def forward(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        y, state = self.mixer(self.mixer_norm(x), state)
        x = x + y
        if self.mlp is not None:
            x = x + self.mlp(self.mlp_norm(x))
        return x, state


class SequenceModel(nn.Module):
    """embedding → n_layers × Block → final norm (unless ``final_norm`` is false) → untied head.

    ``forward(tokens [B, T] int64, state=None) -> (logits [B, T, V], state)`` where state is
    the list of per-layer mixer states; feeding a sequence in pieces with the state carried
    gives the logits of feeding it at once.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        validate_config(cfg)
        self.config = cfg
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.d_model)
        nn.init.normal_(self.embedding.weight, std=cfg.embedding_std)
        blocks = []
        for _ in range(cfg.n_layers):
            try:
                blocks.append(Block(cfg))
            except ValueError as err:  # name the config key the mixer option came from
                msg = str(err)
                raise ValueError(msg if msg.startswith("model.")
                                 else f"model.mixer_options.{msg}") from None
        self.blocks = nn.ModuleList(blocks)
        for i, block in enumerate(blocks):  # an init that depends on depth (xLSTM's sLSTM)
            if hasattr(block.mixer, "set_block_position"):
                block.mixer.set_block_position(i, cfg.n_layers)
        self.norm = make_norm(cfg) if cfg.final_norm else None
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.init == "fla":
            self.init_fla()
        elif cfg.init == "paper":
            self.init_paper()
        elif cfg.init == "xlstm":
            self.init_xlstm()

    @torch.no_grad()
    def init_fla(self) -> None:
        """flash-linear-attention's model-level init of its DeltaNet models (GPT-2's scheme)
        applied to every module: every Linear and Conv1d weight (projections, short
        convolutions, MLP, head) and the embedding drawn from N(0, 0.02²), biases zero, then
        each block's two writes to the residual stream (the mixer's ``o_proj`` and the MLP's
        ``down``) divided by √(2 · n_layers). Norm gains and the mixer's own parameters
        (``A_log``, ``dt_bias``) keep theirs. PyTorch's default instead draws a Linear weight
        uniformly in ±fan_in^-½ (std 0.051 at fan_in 128) and a depthwise conv's in ±kernel^-½
        (std 0.29 at kernel 4), 2.5× and 14× wider."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv1d, nn.Embedding)):
                nn.init.normal_(module.weight, std=FLA_INIT_STD)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
        scale = (2 * len(self.blocks)) ** -0.5
        for block in self.blocks:
            block.mixer.o_proj.weight.mul_(scale)
            if block.mlp is not None:
                block.mlp.down.weight.mul_(scale)

    @torch.no_grad()
    def init_paper(self) -> None:
        """The init the paper's DeltaNet runs got, as its public code reads: fla's model-level
        scheme (``init_fla``) reaches only the modules the DeltaNet layer did not initialise
        itself. The layer, when built, draws its q, k, v, β and output projections
        Xavier-uniform with gain 2^-2.5 (std 0.0156 at 128 × 128) and marks all its modules
        initialised, so transformers' init skips them: the projections keep that draw (``o_proj``
        is not divided by √(2 · n_layers)) and the short convolutions keep PyTorch's default
        (taps uniform in ±kernel^-½). The embedding, MLP (``down`` divided) and head are
        ``init_fla``'s. Its convolutions have no bias (``conv_bias: false``); where ours have
        one, it starts at zero."""
        self.init_fla()
        for block in self.blocks:
            mixer = block.mixer
            for proj in (mixer.q_proj, mixer.k_proj, mixer.v_proj, mixer.b_proj, mixer.o_proj):
                nn.init.xavier_uniform_(proj.weight, gain=PAPER_PROJ_GAIN)
            for short in (mixer.q_conv, mixer.k_conv, mixer.v_conv):
                short.conv.reset_parameters()
                if short.conv.bias is not None:
                    nn.init.zeros_(short.conv.bias)

    @torch.no_grad()
    def init_xlstm(self) -> None:
        """xLSTM's ``xLSTMLMModel.reset_parameters`` on an sLSTM model: the embedding, the
        head, each sLSTM's gate projections ``W`` and each feed-forward's up projection from
        N(0, 2 / (5 d)) ("small init", std 0.056 at d = 128), each feed-forward's down
        projection from N(0, (2 / (n_layers √d))²) ("Wang init"). The recurrent matrices (zero),
        the biases (the forget gate's by block), the convolutions and the norm gains keep the
        layers' own init, as in xLSTM."""
        d = self.config.d_model
        small = math.sqrt(2 / (5 * d))
        for weight in (self.embedding.weight, self.head.weight):
            nn.init.normal_(weight, std=small)
        for block in self.blocks:
            nn.init.normal_(block.mixer.W, std=small)
            if block.mlp is not None:
                nn.init.normal_(block.mlp.gate_up.weight, std=small)
                nn.init.normal_(block.mlp.down.weight, std=2 / len(self.blocks) / math.sqrt(d))

    def forward(
        self, tokens: torch.Tensor, state: list[Any] | None = None
    ) -> tuple[torch.Tensor, list[Any]]:
        if tokens.ndim != 2 or tokens.dtype != torch.int64:
            raise ValueError(f"tokens: expected int64 [B, T], got {tokens.dtype} "
                             f"{tuple(tokens.shape)}")
        if state is not None and len(state) != len(self.blocks):
            raise ValueError(f"state: expected {len(self.blocks)} layer states, got {len(state)}")
        x = self.embedding(tokens)
        states = []
        for i, block in enumerate(self.blocks):
            x, s = block(x, None if state is None else state[i])
            states.append(s)
        return self.head(x if self.norm is None else self.norm(x)), states

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def param_groups(self, weight_decay: float, decay_norms_and_biases: bool = False,
                     decay_embedding: bool = True) -> list[dict[str, Any]]:
        """Two AdamW groups: ``weight_decay`` for weight matrices, the embedding and the head;
        0 for A_log, D, norm gains and every bias (including Mamba's Δ bias).

        Decaying A_log would pull the decay rates towards 1 and D towards 0, which is not meant.
        ``decay_norms_and_biases`` moves the norm gains and biases into the decayed group and
        leaves only A_log and D out: the grouping of the paper's public harness for its DeltaNet
        and Mamba models, where only parameters marked ``_no_weight_decay`` (mamba.py's A_log
        and D) escape it. ``decay_embedding=False`` moves the embedding into the undecayed
        group: xLSTM's ``xLSTMLMModel``, as its public code reads today, decays every parameter
        of two or more dimensions, sLSTM's recurrent matrix R included, and the embedding only
        if ``weight_decay_on_embedding``, false by default. (Which xLSTM version the paper's
        harness ran was not read.)
        """
        no_decay_ids = set() if decay_embedding else {id(self.embedding.weight)}
        for module in self.modules():
            for name, p in module.named_parameters(recurse=False):
                exempt = (not decay_norms_and_biases
                          and (isinstance(module, NORM_TYPES) or "bias" in name))
                if exempt or name in NO_DECAY_NAMES:
                    no_decay_ids.add(id(p))
        decay = [p for p in self.parameters() if id(p) not in no_decay_ids]
        no_decay = [p for p in self.parameters() if id(p) in no_decay_ids]
        return [{"params": decay, "weight_decay": weight_decay},
                {"params": no_decay, "weight_decay": 0.0}]
