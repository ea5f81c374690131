"""Where compiled training parts from the eager loop on a GPU: test_compile's tiny runs
(float32, 24 steps) per mixer, in variants of compile backend, CUDA graphs and op backend;
prints each variant's logged losses beside the eager loop's.

    PYTHONPATH=src python scripts/dev/compile_gpu_probe.py
"""

from __future__ import annotations

import functools
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from test_train import TINY  # noqa: E402

from statetrack.experiment import rundir  # noqa: E402
from statetrack.experiment.config import validate  # noqa: E402
from statetrack.experiment.trainer import train  # noqa: E402

MIXERS = {"deltanet": {"num_heads": 2, "eig_range": [-1, 1]}, "mamba": {"eig_range": [-1, 1]}}
# (label, compile backend or None, cuda_graphs, op backend)
VARIANTS = [("eager", None, False, "auto"), ("eager+graphs", None, True, "auto"),
            ("inductor", "inductor", False, "auto"), ("inductor+graphs", "inductor", True, "auto"),
            ("aot_eager+graphs", "aot_eager", True, "auto"),
            ("eager torch-ops", None, False, "torch"),
            ("inductor torch-ops", "inductor", False, "torch")]


def run(mixer: str, backend: str | None, graphs: bool, ops: str, root: Path) -> list[float]:
    import torch._dynamo

    raw = json.loads(json.dumps(TINY))
    raw["model"].update(mixer=mixer, mixer_options={**MIXERS[mixer], "backend": ops})
    raw["training"].update(device="cuda", precision="fp32", steps=24, checkpoint_every=24,
                           val_every=0, cuda_graphs=graphs, compile=backend is not None)
    torch._dynamo.reset()
    original = torch.compile
    if backend is not None:
        torch.compile = functools.partial(original, backend=backend)
    try:
        out = root / f"{mixer}_{backend}_{graphs}_{ops}"
        train(validate(raw), out, quiet=True)
    finally:
        torch.compile = original
    return [r["loss"] for r in rundir.read_metrics(out) if "loss" in r]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for mixer in MIXERS:
            for label, backend, graphs, ops in VARIANTS:
                try:
                    losses = run(mixer, backend, graphs, ops, Path(tmp))
                    print(f"{mixer:8s} {label:20s} " + " ".join(f"{v:.5f}" for v in losses),
                          flush=True)
                except Exception as e:  # noqa: BLE001  (a variant that fails is a finding)
                    print(f"{mixer:8s} {label:20s} FAILED {type(e).__name__}: {e}"[:300],
                          flush=True)


if __name__ == "__main__":
    main()
