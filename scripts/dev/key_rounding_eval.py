"""Evaluate a trained DeltaNet run four ways on the CPU: does rounding k to bf16 cost accuracy?

    statetrack train configs/chomsky/parity/deltanet_neg.yaml --out /tmp/dn --set \\
        training.device=cpu --set training.steps=3000 --set training.warmup_steps=300 \\
        --set training.batch_size=64
    PYTHONPATH=src python scripts/dev/key_rounding_eval.py /tmp/dn --n 4096

Every row evaluates the same sequences (the run's test set seed): float32; float32 with only the
keys rounded to bf16 (as bf16 autocast hands them to the op); the same with β divided by ‖k‖²
(what the mixer option ``unit_keys`` does); and CPU bf16 autocast throughout.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from statetrack.experiment.checkpoint import load_weights
from statetrack.experiment.config import load_config
from statetrack.experiment.evaluation import TEST_STREAM, data_rng, evaluate
from statetrack.experiment.trainer import build
from statetrack.layers.deltanet import DeltaNet


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--n", type=int, default=4096, help="test sequences")
    args = ap.parse_args()
    config = load_config(args.run_dir / "config.yaml", ["training.device=cpu"])
    task, model = build(config)
    load_weights(args.run_dir, model)
    features = DeltaNet._features

    def rounded_keys(unit: bool):  # noqa: ANN202 (a replacement for DeltaNet._features)
        def patched(self, x, state):  # noqa: ANN001, ANN202
            q, k, v, beta, *rest = features(self, x, state)
            k = k.to(torch.bfloat16).to(k.dtype)
            if unit:
                beta = beta / k.square().sum(-1)
            return (q, k, v, beta, *rest)
        return patched

    e = config.evaluation
    rows = [("float32", None, "fp32"),
            ("keys rounded to bf16", rounded_keys(False), "fp32"),
            ("keys rounded, beta / |k|^2", rounded_keys(True), "fp32"),
            ("CPU bf16 autocast", None, "bf16")]
    for name, patch, precision in rows:
        DeltaNet._features = patch or features
        try:
            result = evaluate(model, task, min_len=e.min_len, max_len=e.max_len, n=args.n,
                              batch_size=256, rng=data_rng(e.seed, TEST_STREAM, 0),
                              device=torch.device("cpu"), precision=precision)
        finally:
            DeltaNet._features = features
        long = [r.accuracy for r in result.by_length if r.length > 128]
        print(f"{name:28s} scaled accuracy {result.scaled_accuracy:.3f}   "
              f"mean accuracy over lengths > 128: {np.mean(long):.3f}", flush=True)


if __name__ == "__main__":
    main()
