"""The eigenvalue range of a transition: the one idea of statetrack.

Every transition is built from a gate ``g`` in [0, 1] (a sigmoid, or exp(Δ·A) with A < 0) and
mapped affinely to ``λ = lo + (hi − lo)·g``. ``[0, 1]`` is the classic model, ``[-1, 1]`` the
extended one that can track state (parity, modular counting).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class EigRange:
    """An interval ``[lo, hi]`` with ``-1 <= lo < hi <= 1`` for transition eigenvalues."""

    lo: float = 0.0
    hi: float = 1.0

    def __post_init__(self) -> None:
        lo, hi = self.lo, self.hi
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (lo, hi)):
            raise ValueError(f"eig_range: expected [lo, hi] of numbers, got [{lo!r}, {hi!r}]")
        if not (-1.0 <= lo < hi <= 1.0):
            raise ValueError(
                f"eig_range: expected [lo, hi] with -1 <= lo < hi <= 1, got [{lo}, {hi}]"
            )
        object.__setattr__(self, "lo", float(lo))
        object.__setattr__(self, "hi", float(hi))

    @classmethod
    def parse(cls, value: Any, where: str = "eig_range") -> EigRange:
        """Build from an ``EigRange``, a pair ``[lo, hi]`` or the strings ``"[0,1]"``/``"0,1"``."""
        if isinstance(value, EigRange):
            return value
        if isinstance(value, str):
            parts = value.strip().strip("[]()").split(",")
            try:
                value = [float(p) for p in parts]
            except ValueError:
                raise ValueError(
                    f"{where}: expected [lo, hi] with -1 <= lo < hi <= 1, got {value!r}"
                ) from None
        if not isinstance(value, Sequence) or len(value) != 2:
            raise ValueError(f"{where}: expected [lo, hi] with -1 <= lo < hi <= 1, got {value!r}")
        try:
            return cls(value[0], value[1])
        except ValueError as err:
            raise ValueError(f"{where}: {str(err).removeprefix('eig_range: ')}") from None

    @property
    def is_default(self) -> bool:
        return self.lo == 0.0 and self.hi == 1.0

    @property
    def width(self) -> float:
        return self.hi - self.lo

    def map(self, g: torch.Tensor) -> torch.Tensor:
        """``lo + (hi − lo)·g``; exact at the ends: g = 0 → lo, g = 1 → hi."""
        if self.is_default:
            return g
        return self.lo + self.width * g

    def as_list(self) -> list[float]:
        return [self.lo, self.hi]

    def __str__(self) -> str:
        return f"[{self.lo:g}, {self.hi:g}]"


DEFAULT = EigRange(0.0, 1.0)
NEGATIVE = EigRange(-1.0, 1.0)
