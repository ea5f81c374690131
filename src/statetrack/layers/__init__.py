"""Token mixers: ``forward(x [B, T, d], state=None) -> (y [B, T, d], state)``, registered by name.

Importing this package imports every mixer module so that each registers itself.
"""

from __future__ import annotations

from statetrack.layers import attention, deltanet, lstm, mamba, mlstm, slstm  # noqa: F401
from statetrack.layers.registry import MIXERS, build_mixer, mixer_options

__all__ = ["MIXERS", "build_mixer", "mixer_options"]
