"""SequenceModel (the one model type), its config and the paper's seven models."""

from __future__ import annotations

from statetrack.models.config import MLP_KINDS, ModelConfig
from statetrack.models.paper import paper_models
from statetrack.models.sequence_model import SequenceModel

__all__ = ["MLP_KINDS", "ModelConfig", "SequenceModel", "paper_models"]
