"""scripts/dev/scan_ablate.py: its edits of the selective-scan backward still apply (on a CPU;
the timing needs a GPU)."""

from __future__ import annotations

from pathlib import Path

import pytest
from repo_scripts import load_script

pytest.importorskip("triton")


def test_every_variant_edits_the_current_kernel(tmp_path: Path) -> None:
    """Each variant's replaced text is found in triton_bwd.py (the script refuses a variant
    whose text is gone, which a rewrite of the kernel would cause), and each edited source
    still defines ``ss_bwd_kernel``, distinct from the original but for "base"."""
    tool = load_script("scripts/dev/scan_ablate.py")
    assert tool.BFLY in tool.SRC and tool.RECOMPUTE in tool.SRC  # the default tiles' path
    kernels = {name: tool.load(name, edits, tmp_path) for name, edits in tool.VARIANTS.items()}
    assert {"base", "no dB/dC (sums and atomics)", "no recompute"} <= set(kernels)
    for name, edits in tool.VARIANTS.items():
        src = tool.SRC
        for old, new in edits:
            src = src.replace(old, new)
        assert (src == tool.SRC) == (name == "base"), name
        assert hasattr(kernels[name], "run"), name  # a Triton JIT function
    with pytest.raises(ValueError, match="text not found"):
        tool.load("stale", [("no such line", "pass")], tmp_path)
