"""The configuration of a SequenceModel; its keys are the constructor's words."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MLP_KINDS = ("swiglu", "gelu", "none")
INIT_SCHEMES = ("torch", "fla")


@dataclass
class ModelConfig:
    """embedding → n_layers × (pre-norm mixer, optional pre-norm MLP) → final norm → head.

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
    # "torch": each layer's PyTorch default (Linear, Conv1d: uniform in ±fan_in^-½); "fla":
    # flash-linear-attention's init of its DeltaNet models, which the paper's DeltaNet runs used
    # (SequenceModel.init_fla); DeltaNet only
    init: str = "torch"
