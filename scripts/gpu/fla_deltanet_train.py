"""Train flash-linear-attention's own DeltaNet model from statetrack's initial weights, with
statetrack's data, schedule, optimizer, precision and evaluation: does fla's implementation
train the same model to the same scores as statetrack's?

    python3 scripts/gpu/fla_deltanet_train.py CONFIG --out RUN_DIR [--set KEY=VALUE ...]

CONFIG is a statetrack DeltaNet config with the paper's model (e.g.
configs/chomsky/parity/deltanet_neg.yaml). `scripts/dev/fla_model.py` builds statetrack's model
from it (its seed, its init) and copies the weights into fla's `DeltaNetForCausalLM` (fla-core
and flash-linear-attention 0.6.0, carried as wheels; not a statetrack dependency), whose float32
logits and gradients it checks against statetrack's. This script trains that fla model on the
config's training batches (the same stream as `statetrack train`: same seed, same steps) with
AdamW at the config's schedule under bf16 autocast, eagerly, and evaluates it on the config's
test set (on CUDA; `--device cpu` only tries the loop on tiny shapes). The run directory gets
config.yaml (the config, named ``fla_<name>``), metrics.jsonl, eval.csv and summary.json in
statetrack's formats, so `statetrack table` reads it beside statetrack's runs. Weight decay and
gradient clipping are refused (they would need statetrack's parameter groups and clipping,
which this loop leaves out).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from importlib.metadata import version
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dev"))
import fla_model  # noqa: E402

import statetrack  # noqa: E402
from statetrack.experiment import rundir  # noqa: E402
from statetrack.experiment.batches import Batches  # noqa: E402
from statetrack.experiment.config import ExperimentConfig, load_config  # noqa: E402
from statetrack.experiment.evaluation import (  # noqa: E402
    TEST_STREAM,
    autocast,
    data_rng,
    evaluate,
    scaled_accuracy,
)
from statetrack.experiment.schedule import learning_rate  # noqa: E402
from statetrack.tasks import NO_LOSS, Task  # noqa: E402


def config_header() -> str:
    """The comment on top of a run's config.yaml: the config is not the model that ran."""
    return (f"# Not statetrack's model: fla's DeltaNetForCausalLM (fla-core {version('fla-core')})"
            "\n# started from the weights statetrack builds from this config and trained on its"
            "\n# batches by scripts/gpu/fla_deltanet_train.py.\n")


class Logits(torch.nn.Module):
    """fla's model with statetrack's call: tokens → (logits, None)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.model(input_ids=tokens, use_cache=False).logits, None


def train(model: torch.nn.Module, task: Task, config: ExperimentConfig, out: Path,
          device: torch.device) -> None:
    """``training.steps`` AdamW steps on the config's batches, as `statetrack train` takes them
    (its schedule, its bf16 autocast, the loss at the answer positions); every ``log_every``
    steps a line of metrics.jsonl."""
    t = config.training
    optimizer = torch.optim.AdamW(model.parameters(), lr=t.lr, betas=(t.adam_beta1, t.adam_beta2),
                                  eps=t.adam_eps, weight_decay=0.0,
                                  fused=device.type == "cuda")
    batches = Batches(task, t, device, start=0, ahead=4)
    sums = torch.zeros(3, device=device)  # loss · answers, correct answers, answers
    start = window = time.perf_counter()
    logged = 0
    for step in range(t.steps):
        lr = learning_rate(step, lr=t.lr, steps=t.steps, warmup_steps=t.warmup_steps,
                           final_lr_factor=t.final_lr_factor)
        for group in optimizer.param_groups:
            group["lr"] = lr
        tokens, target = batches.get(step)
        with autocast(device, t.precision):
            logits, _ = model(tokens)
            loss = F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=NO_LOSS)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            mask = target != NO_LOSS
            answers = mask.sum()
            correct = ((logits.argmax(-1) == target) & mask).sum()
            sums += torch.stack([loss.detach() * answers, correct, answers]).float()
        if (step + 1) % t.log_every and step + 1 < t.steps:
            continue
        loss_sum, hit, n = sums.tolist()  # the loop's one host sync, every log_every steps
        now = time.perf_counter()
        record = {"step": step + 1, "lr": lr, "loss": loss_sum / n, "accuracy": hit / n,
                  "scaled_accuracy": scaled_accuracy(hit / n, task.num_classes),
                  "steps_per_second": (step + 1 - logged) / (now - window),
                  "seconds": now - start}
        rundir.append_metrics(out, record)
        if (step + 1) % (10 * t.log_every) == 0:
            print(f"step {step + 1}/{t.steps} loss {record['loss']:.4f} "
                  f"acc {record['accuracy']:.3f} {record['steps_per_second']:.0f} steps/s",
                  flush=True)
        sums.zero_()
        window, logged = now, step + 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--device", default="cuda",
                        help="cuda; cpu only to try the loop on tiny shapes (with "
                             "TRITON_INTERPRET=1 for fla's kernels)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("fla_deltanet_train.py: needs a CUDA device")
    if os.environ.get("TRITON_INTERPRET") == "1":
        fla_model.stub_autotune_benchmark()
    config = load_config(args.config, args.set)
    t, e = config.training, config.evaluation
    if t.weight_decay or t.grad_clip is not None:
        raise SystemExit("training.weight_decay and training.grad_clip must be 0 and null here")
    if (args.out / rundir.SUMMARY).exists():
        print(f"{args.out}: finished already")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / rundir.METRICS).unlink(missing_ok=True)  # no resume: a rerun starts over
    task, _, fla = fla_model.fla_from_statetrack(config)
    device = torch.device(args.device)
    model = Logits(fla).to(device)
    saved = config.to_dict()
    saved["name"] = f"fla_{config.name}"
    rundir.write_atomic(args.out / rundir.CONFIG,
                        config_header() + yaml.safe_dump(saved, sort_keys=False))
    start = time.perf_counter()
    train(model, task, config, args.out, device)
    train_seconds = time.perf_counter() - start
    result = evaluate(model, task, min_len=e.min_len, max_len=e.max_len, n=e.n,
                      batch_size=e.batch_size, rng=data_rng(e.seed, TEST_STREAM, 0),
                      device=device, precision=t.precision)
    rundir.write_eval_csv(args.out / rundir.EVAL, result.rows())
    last = rundir.read_metrics(args.out)
    summary = {
        "task": config.task.name, "model": saved["name"], "mixer": "deltanet (fla)",
        "eig_range": config.model["mixer_options"].get("eig_range"),
        "seed": t.seed, "data_seed": t.data_seed,
        "accuracy": result.accuracy, "scaled_accuracy": result.scaled_accuracy,
        "num_classes": task.num_classes, "eval_min_len": e.min_len, "eval_max_len": e.max_len,
        "eval_n": e.n, "steps": t.steps, "final_train_loss": last[-1]["loss"],
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "wall_seconds": time.perf_counter() - start, "train_seconds": train_seconds,
        "device": (f"cuda ({torch.cuda.get_device_name(device)})" if device.type == "cuda"
                   else "cpu"),
        "torch_version": torch.__version__, "fla_version": version("fla-core"),
        "statetrack_version": statetrack.__version__}
    rundir.write_json(args.out / rundir.SUMMARY, summary)
    print(f"{saved['name']} seed {t.seed}: scaled accuracy {result.scaled_accuracy:.3f} "
          f"in {summary['wall_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
