"""statetrack: linear RNNs whose transitions may have negative eigenvalues.

Grazzi et al., "Unlocking State-Tracking in Linear RNNs Through Negative Eigenvalues", ICLR 2025.
"""

from __future__ import annotations

__version__ = "0.1.0"

from statetrack.eig import EigRange

__all__ = ["EigRange", "__version__"]
