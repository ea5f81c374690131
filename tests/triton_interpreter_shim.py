"""Run a script under Triton's CPU interpreter with one upstream bug worked around.

Triton 3.6's interpreter converts a runtime scalar (a 1-element numpy array) to an int with
``int(array)``, which numpy >= 2.4 refuses for arrays that are not 0-d, so any
``range(runtime_scalar)`` in a kernel fails there (triton-lang/triton#9171; fixed in later
Triton by squeezing first). This applies the later Triton's conversion, and changes nothing for
Triton versions that already do it.

    TRITON_INTERPRET=1 python tests/triton_interpreter_shim.py SCRIPT [ARGS...]

Tests call :func:`run_interpreted`, which starts that command in a subprocess (the variable
must be set before Triton loads).
"""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_interpreted(script: Path, *args: str, env: dict[str, str] | None = None,
                    timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``SCRIPT ARGS`` under TRITON_INTERPRET=1 through this shim, with ``src/`` and ``tests/``
    importable and ``env`` added to the environment; output captured as text."""
    path = os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests"),
                            os.environ.get("PYTHONPATH", "")])
    full_env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": path, **(env or {})}
    return subprocess.run([sys.executable, __file__, str(script), *args], env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def _patch() -> None:
    import triton.runtime.interpreter as interpreter  # here: importing the helper needs none

    scope = getattr(interpreter, "_LangPatchScope", None)
    if scope is None:
        return
    set_attr = scope.set_attr

    def patched(self: object, obj: object, name: str, value: object) -> None:
        if name == "__index__":
            value = lambda tensor: int(tensor.handle.data.squeeze())  # noqa: E731
        set_attr(self, obj, name, value)

    scope.set_attr = patched


if __name__ == "__main__":
    _patch()
    script, sys.argv = sys.argv[1], sys.argv[1:]
    runpy.run_path(script, run_name="__main__")
