"""The configuration of a SequenceModel; its keys are the constructor's words."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MLP_KINDS = ("swiglu", "gelu", "none")
INIT_SCHEMES = ("torch", "fla", "paper", "xlstm")
NORM_KINDS = ("rms", "layer")


@dataclass
class ModelConfig:
    """embedding → n_layers × (pre-norm mixer, optional pre-norm MLP) → final norm (unless
    ``final_norm`` is false) → head.

    ``mixer_options`` are the keyword arguments of the mixer's constructor (for example
    ``eig_range``, ``num_heads``, ``num_householder``); their defaults live in the constructor
    alone, and an unknown key is an error that names it.
    """

    vocab_size: int
    d_model: int = 128
    n_layers: int = 2
    mixer: str = "deltanet"
    mixer_options: dict[str, Any] = field(default_factory=dict)
    mlp: str = "swiglu"  # "swiglu" | "gelu" | "none"
    mlp_ratio: float = 4.0
    norm_eps: float = 1e-5
    # the block norms and the final norm: "rms" (RMSNorm) or "layer" (LayerNorm with a gain and
    # no bias, xLSTM's block norm)
    norm: str = "rms"
    # false: the head reads the last block's output without the final norm, as in the
    # public harness's Mamba (MambaLM: embedding, residual blocks, head)
    final_norm: bool = True
    # the embedding's init, N(0, embedding_std²); PyTorch's own default for nn.Embedding is
    # N(0, 1), which the public harness's Mamba kept (every init but torch draws its own)
    embedding_std: float = 0.02
    # "torch": each layer's PyTorch default (Linear, Conv1d: uniform in ±fan_in^-½); "fla":
    # flash-linear-attention's model-level init of its DeltaNet models (GPT-2's scheme) on every
    # module (SequenceModel.init_fla); "paper": that scheme where the paper's code applied it,
    # the DeltaNet layer's own Xavier projections and PyTorch's convolutions elsewhere
    # (SequenceModel.init_paper); both DeltaNet only; "xlstm": xLSTM's init of the gate
    # projections, embedding, head and feed-forward (xLSTMLMModel.reset_parameters;
    # SequenceModel.init_xlstm), sLSTM only
    init: str = "torch"
