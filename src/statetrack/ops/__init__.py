"""Functional recurrences with signed transitions; no parameters.

Each op has three implementations that agree: ``reference`` (a token loop, the definition),
``torch`` (chunkwise-parallel PyTorch, the CPU default) and ``triton`` (GPU kernels).
"""

from __future__ import annotations

from statetrack.ops.delta_rule import delta_rule
from statetrack.ops.linear_scan import linear_scan
from statetrack.ops.selective_scan import selective_scan

__all__ = ["delta_rule", "linear_scan", "selective_scan"]
