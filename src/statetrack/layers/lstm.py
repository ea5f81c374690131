"""The nonlinear reference: a single-layer ``torch.nn.LSTM``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from statetrack.eig import EigRange
from statetrack.layers._common import no_eig_range
from statetrack.layers.registry import register

LSTMState = tuple[torch.Tensor, torch.Tensor]  # (h, c) [1, B, d]


@register("lstm")
class LSTM(nn.Module):
    """``torch.nn.LSTM(d, d)``; x ``[B, T, d]`` → (y ``[B, T, d]``, (h, c) ``[1, B, d]``)."""

    def __init__(
        self, d_model: int, *, eig_range: Sequence[float] | str | EigRange = (0.0, 1.0)
    ) -> None:
        super().__init__()
        no_eig_range("lstm", eig_range)
        self.lstm = nn.LSTM(d_model, d_model, batch_first=True)

    def forward(
        self, x: torch.Tensor, state: LSTMState | None = None
    ) -> tuple[torch.Tensor, LSTMState]:
        y, (h, c) = self.lstm(x, state)
        return y, (h, c)
