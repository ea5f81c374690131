"""Where compiled training parts from the eager loop on a GPU: test_compile's tiny runs
(float32, 24 steps) per mixer, in variants of compile backend, CUDA graphs and op backend;
prints each variant's logged losses beside the eager loop's.

    PYTHONPATH=src python scripts/dev/compile_gpu_probe.py [--probe2 | --grads]
"""

from __future__ import annotations

import functools
import json
import os
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


# session 17's second probe: every step logged, DeltaNet on the torch ops, and what else may
# part the runs: the batch thread (ahead 0), dynamic shapes off, a fixed batch length
PROBE2 = [("eager", None, {}), ("inductor", "inductor", {}),
          ("inductor ahead=0", "inductor", {"ahead0": True}),
          ("inductor static", "inductor", {"static": True}),
          ("aot_eager", "aot_eager", {}), ("eager len 12", None, {"min_len": 12}),
          ("inductor len 12", "inductor", {"min_len": 12})]


def run(mixer: str, backend: str | None, graphs: bool, ops: str, root: Path,
        log_every: int = 3, ahead0: bool = False, static: bool = False,
        min_len: int | None = None) -> list[float]:
    import torch._dynamo

    from statetrack.experiment import trainer

    raw = json.loads(json.dumps(TINY))
    raw["model"].update(mixer=mixer, mixer_options={**MIXERS[mixer], "backend": ops})
    raw["training"].update(device="cuda", precision="fp32", steps=24, checkpoint_every=24,
                           val_every=0, cuda_graphs=graphs, compile=backend is not None,
                           log_every=log_every)
    if min_len is not None:
        raw["training"]["min_len"] = min_len
    batches = trainer.Batches
    dynamic = torch._dynamo.config.automatic_dynamic_shapes
    if ahead0:
        trainer.Batches = lambda task, t, device, start, ahead: batches(task, t, device, start, 0)
    torch._dynamo.config.automatic_dynamic_shapes = not static
    try:
        out = root / f"{mixer}_{backend}_{graphs}_{ops}_{ahead0}_{static}_{min_len}"
        return train_losses(raw, backend, out)
    finally:
        trainer.Batches = batches
        torch._dynamo.config.automatic_dynamic_shapes = dynamic


def train_losses(raw: dict, backend: str | None, out: Path) -> list[float]:
    """Train the config ``raw`` into ``out`` from an empty dynamo cache, through
    ``torch.compile(backend=...)`` when a backend is named; its logged losses."""
    import torch._dynamo

    torch._dynamo.reset()
    original = torch.compile
    if backend is not None:
        torch.compile = functools.partial(original, backend=backend)
    try:
        train(validate(raw), out, quiet=True)
    finally:
        torch.compile = original
    return [r["loss"] for r in rundir.read_metrics(out) if "loss" in r]


def grads_probe() -> None:
    """Session 17's third probe: one batch, the model at init, gradients eager and through
    torch.compile (inductor, aot_eager) on the torch ops: per parameter the largest difference
    over the largest eager gradient, and the elements zero in eager but not compiled. Then the
    first steps with Adam's eps at 1e-3 (an update of a near-zero gradient shrinks with it)."""
    import torch
    import torch._dynamo

    from statetrack.experiment.batches import Batches
    from statetrack.experiment.trainer import build, make_forward_loss

    raw = json.loads(json.dumps(TINY))
    raw["model"].update(mixer="deltanet", mixer_options={**MIXERS["deltanet"],
                                                         "backend": "torch"})
    where = os.environ.get("PROBE_DEVICE", "cuda")  # cpu: a dry run of the probe
    raw["training"].update(device=where, precision="fp32", compile=False)
    config = validate(raw)
    device = torch.device(where)
    tokens, target = Batches(build(config)[0], config.training, device, 0, 0).get(0)
    grads = {}
    for label in ("eager", "inductor", "aot_eager"):
        torch.manual_seed(config.training.seed)
        _, model = build(config)
        model.to(device)
        torch._dynamo.reset()
        f = make_forward_loss(model, config, device)
        if label != "eager":
            f = torch.compile(f, backend=label)
        _, loss = f(tokens, target)
        loss.backward()
        grads[label] = {n: p.grad.detach().clone() for n, p in model.named_parameters()
                        if p.grad is not None}
        print(f"{label}: loss {loss.item():.6f}, {len(grads[label])} gradients", flush=True)
    for label in ("inductor", "aot_eager"):
        for n, g in grads["eager"].items():
            c = grads[label].get(n)
            if c is None:
                print(f"  {label} {n}: NO GRADIENT", flush=True)
                continue
            rel = ((c - g).abs().max() / g.abs().max().clamp_min(1e-30)).item()
            zeros = int(((g == 0) & (c != 0)).sum())
            if rel > 1e-5 or zeros:
                print(f"  {label} {n} {tuple(g.shape)}: max diff / max {rel:.2e}, zero in "
                      f"eager only: {zeros}, strides {g.stride()} / {c.stride()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for backend in (None, "inductor"):
            raw2 = json.loads(json.dumps(raw))
            raw2["training"].update(adam_eps=1e-3, steps=24, checkpoint_every=24, val_every=0,
                                    cuda_graphs=False, compile=backend is not None,
                                    log_every=1)
            losses = train_losses(raw2, backend, Path(tmp) / str(backend))
            print(f"eps 1e-3 {backend}: " + " ".join(f"{v:.4f}" for v in losses[:12]),
                  flush=True)


def main() -> None:
    if "--grads" in sys.argv:
        grads_probe()
        return
    with tempfile.TemporaryDirectory() as tmp:
        if "--probe2" in sys.argv:
            for label, backend, extra in PROBE2:
                try:
                    losses = run("deltanet", backend, False, "torch", Path(tmp), log_every=1,
                                 **extra)
                    print(f"deltanet {label:18s} " + " ".join(f"{v:.4f}" for v in losses[:12]),
                          flush=True)
                except Exception as e:  # noqa: BLE001
                    print(f"deltanet {label:18s} FAILED {type(e).__name__}: {e}"[:300],
                          flush=True)
            return
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
