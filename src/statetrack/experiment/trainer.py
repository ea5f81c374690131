"""The trainer: a config in, a finished run directory out.

Every step draws a fresh batch at the training lengths from ``numpy.random.default_rng([data_seed,
1, step + 1])`` (so a resumed run needs no data-RNG state), pads it only to its longest example,
and takes one AdamW step on the cross-entropy at the labelled positions. The learning rate
follows :func:`statetrack.experiment.schedule.learning_rate`. The loop never waits for the device
except at log steps: loss and accuracy are summed on the device and read every ``log_every``.
SIGUSR1 asks a running training for a checkpoint at the end of its current step (a GPU session
about to end keeps the latest step, not the last periodic checkpoint); results do not change.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

import statetrack
from statetrack.experiment import rundir
from statetrack.experiment.batches import Batches
from statetrack.experiment.checkpoint import (
    TrainState,
    checkpoint_dir,
    load_checkpoint,
    save_checkpoint,
)
from statetrack.experiment.config import ConfigError, ExperimentConfig
from statetrack.experiment.evaluation import (
    TEST_STREAM,
    VALIDATION_STREAM,
    autocast,
    data_rng,
    evaluate,
    scaled_accuracy,
)
from statetrack.experiment.graphs import GraphedStep
from statetrack.experiment.schedule import learning_rate
from statetrack.tasks import NO_LOSS, Task, get_task


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("training.device: 'cuda' requested but no CUDA device is available; "
                         "allowed here: auto, cpu")
    return torch.device(name)


def build(config: ExperimentConfig, where: str = "") -> tuple[Task, torch.nn.Module]:
    """The task and the model, initialised from ``training.seed`` on the CPU (so the weights do
    not depend on the device). A value the task or the mixer rejects is a :class:`ConfigError`
    (``where`` names the config file)."""
    from statetrack.models import SequenceModel

    t, e = config.training, config.evaluation
    try:
        task = get_task(config.task.name, **config.task.options)
        for section, lo, hi in (("training", t.min_len, t.max_len),
                                ("evaluation", e.min_len, e.max_len)):
            try:  # a dry draw: the task knows which lengths it can generate
                task.sample(1, lo, hi, np.random.default_rng(0))
            except ValueError as err:
                raise ValueError(f"{section}.min_len, {section}.max_len = [{lo}, {hi}]: "
                                 f"{err}") from None
        torch.manual_seed(t.seed)
        model = SequenceModel(config.model_config(len(task.vocab)))
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{err}{where}") from None
    return task, model


def uses_cuda_graphs(config: ExperimentConfig, device: torch.device) -> bool:
    """``training.cuda_graphs`` applies on CUDA; the CPU always runs eagerly."""
    return config.training.cuda_graphs and device.type == "cuda"


def make_optimizer(model: torch.nn.Module, config: ExperimentConfig, device: torch.device,
                   capturable: bool = False) -> torch.optim.Optimizer:
    """AdamW, fused on CUDA; ``capturable`` (for CUDA graphs) keeps the learning rate in a
    device tensor that each step fills."""
    t = config.training
    lr: float | torch.Tensor = torch.tensor(t.lr, device=device) if capturable else t.lr
    groups = model.param_groups(t.weight_decay, t.decay_norms_and_biases, t.decay_embedding)
    return torch.optim.AdamW(groups, lr=lr, betas=(t.adam_beta1, t.adam_beta2), eps=t.adam_eps,
                             fused=device.type == "cuda", capturable=capturable)


ForwardLoss = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class Run:
    """Everything the step loop touches."""

    config: ExperimentConfig
    run_dir: Path
    task: Task
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    device: torch.device
    quiet: bool
    forward_loss: ForwardLoss  # see make_forward_loss
    batches: Batches | None = None
    graphed: GraphedStep | None = None  # the CUDA-graph step, when training.cuda_graphs applies
    checkpoint_requested: bool = False  # set by CHECKPOINT_SIGNAL, cleared by the checkpoint


# asks a training process for a checkpoint at the end of its current step (POSIX only)
CHECKPOINT_SIGNAL = getattr(signal, "SIGUSR1", None)


@contextlib.contextmanager
def _checkpoint_on_signal(run: Run) -> Iterator[Callable[[], None]]:
    """While the step loop runs, CHECKPOINT_SIGNAL sets ``run.checkpoint_requested``. Only the
    main thread may install a handler; elsewhere (or without the signal) nothing changes.

    Yields ``rearm``, which installs the handler again. Something can take the signal over
    during a step: on the H200 (session 12) the sLSTM runs, whose first steps compile Triton
    kernels, had handlers on exactly the signals LLVM's crash handlers take (HUP, INT, QUIT,
    USR1, USR2, TERM, XCPU, XFSZ, SYS), caught SIGUSR1 and wrote no checkpoint, while the
    mLSTM runs beside them (no Triton compile) wrote theirs. The step loop rearms after the
    first step and at every log step."""
    if CHECKPOINT_SIGNAL is None or threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return

    def request(signum: int, frame: object) -> None:
        run.checkpoint_requested = True

    def rearm() -> None:
        signal.signal(CHECKPOINT_SIGNAL, request)

    previous = signal.signal(CHECKPOINT_SIGNAL, request)
    try:
        yield rearm
    finally:
        signal.signal(CHECKPOINT_SIGNAL, previous)


def train(config: ExperimentConfig, run_dir: Path, *, resume: bool = False,
          quiet: bool = False, where: str = "") -> dict[str, Any]:
    """Train (or continue training) a run and evaluate it; returns summary.json's contents.

    Nothing is written before the task and the model are built: a bad value is a
    :class:`ConfigError`. Raises :class:`TrainingDiverged` on a NaN/inf loss (no summary.json
    is written, the last good checkpoint is kept)."""
    run = make_run(config, run_dir, quiet=quiet, where=where)
    if resume:
        state = load_checkpoint(run_dir, run.model, run.optimizer)
        rundir.truncate_metrics(run_dir, state.step)
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        rundir.write_atomic(run_dir / rundir.CONFIG, config.to_yaml())
        (run_dir / rundir.METRICS).write_text("")
        state = TrainState(0, 0.0, {"loss": 0.0, "correct": 0, "labelled": 0, "steps": 0})
    state = _train_loop(run, state)
    return _finish(run, state)


def make_run(config: ExperimentConfig, run_dir: Path, *, quiet: bool = False,
             where: str = "") -> Run:
    """Task, model (on its device) and optimizer of a run; nothing is written."""
    device = resolve_device(config.training.device)
    task, model = build(config, where)
    model.to(device)
    optimizer = make_optimizer(model, config, device,
                               capturable=uses_cuda_graphs(config, device))
    return Run(config, run_dir, task, model, optimizer, device, quiet,
               make_forward_loss(model, config, device))


def make_forward_loss(model: torch.nn.Module, config: ExperimentConfig,
                      device: torch.device) -> ForwardLoss:
    """``(tokens, target) → (logits, loss)`` of a training step: the forward pass (bf16
    autocast where the precision says so), float32 logits and the cross-entropy at the
    labelled positions. With ``training.compile`` it goes through ``torch.compile``, broken
    around each op's call (see ``statetrack.ops._common.opaque``): what it fuses is the
    projections', convolutions' and norms' elementwise work between the recurrences, and its
    backward. The first batch shape compiles static code; a second padded length recompiles
    with the length dynamic, which then serves every later one (dynamo's default). Compiling
    happens in the eager warm-up steps that precede a shape's CUDA-graph capture. (On the
    H200 with empty compile caches that recompile took one step of 26.6 s, at DeltaNet
    parity's first shorter batch, step 64; session 18, `scripts/dev/compile_cold_probe.py`.)"""
    precision = config.training.precision

    def forward_loss(tokens: torch.Tensor, target: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        with autocast(device, precision):
            logits, _ = model(tokens)
        logits = logits.float()
        loss = F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=NO_LOSS)
        return logits, loss

    if config.training.compile:
        return torch.compile(forward_loss)
    return forward_loss


def start_steps(run: Run, state: TrainState) -> tuple[list[torch.nn.Parameter],
                                                      dict[str, torch.Tensor]]:
    """Ready ``run`` for :func:`_train_step` from ``state``: train mode, the batch source and,
    where CUDA graphs apply, the graphed step; returns the trained parameters and the device
    log sums. The caller closes ``run.batches``."""
    params = [p for p in run.model.parameters() if p.requires_grad]
    sums = _device_sums(state.log_sums, run.device)
    run.model.train()
    # drawn ahead in a thread on a GPU; on a CPU the thread would only steal the model's cores
    run.batches = Batches(run.task, run.config.training, run.device, state.step,
                          ahead=4 if run.device.type == "cuda" else 0)
    if uses_cuda_graphs(run.config, run.device):
        run.graphed = GraphedStep(lambda tokens, target: _step_body(run, tokens, target, params,
                                                                    sums), run.device)
    return params, sums


def _train_loop(run: Run, state: TrainState) -> TrainState:
    t = run.config.training
    params, sums = start_steps(run, state)
    bar = tqdm(total=t.steps, initial=state.step, unit="step", dynamic_ncols=True,
               disable=run.quiet or not sys.stderr.isatty(), file=sys.stderr)
    try:
        with _checkpoint_on_signal(run) as rearm:
            state = _steps(run, state, params, sums, bar, rearm)
    finally:
        run.batches.close()
        bar.close()
    return state


def _steps(run: Run, state: TrainState, params: list[torch.nn.Parameter],
           sums: dict[str, torch.Tensor], bar: tqdm, rearm: Callable[[], None]) -> TrainState:
    t = run.config.training
    window_start, wall_start = time.perf_counter(), time.perf_counter()
    start_seconds, first = state.wall_seconds, state.step
    for step in range(first, t.steps):
        lr = learning_rate(step, lr=t.lr, steps=t.steps, warmup_steps=t.warmup_steps,
                           final_lr_factor=t.final_lr_factor)
        _train_step(run, step, lr, params, sums)
        done = step + 1
        bar.update(1)
        is_val = t.val_every > 0 and done % t.val_every == 0 and done < t.steps
        if done % t.log_every == 0 or done == t.steps or is_val:
            now = time.perf_counter()
            record = _log(run, done, lr, sums, now - window_start, is_val)
            record["seconds"] = round(start_seconds + now - wall_start, 3)
            rundir.append_metrics(run.run_dir, record)
            bar.set_postfix(loss=f"{record['loss']:.4f}", acc=f"{record['accuracy']:.3f}")
            if bar.disable and not run.quiet:
                print(_log_line(record, t.steps), file=sys.stderr)
            window_start = time.perf_counter()
        if step == first or done % t.log_every == 0:  # after kernels compile (above)
            rearm()
        requested, run.checkpoint_requested = run.checkpoint_requested, False
        if (t.checkpoint_every and done % t.checkpoint_every == 0) or done == t.steps \
                or requested:
            state = TrainState(done, start_seconds + time.perf_counter() - wall_start,
                               _host_sums(sums))
            _checkpoint(run, state, params)
            if requested and not run.quiet:
                print(f"checkpoint at step {done} (requested by signal)", file=sys.stderr)
    return state


def _train_step(run: Run, step: int, lr: float, params: list[torch.nn.Parameter],
                sums: dict[str, torch.Tensor]) -> None:
    tokens, target = run.batches.get(step)
    for group in run.optimizer.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr)  # a captured step reads the rate from this tensor
        else:
            group["lr"] = lr
    if run.graphed is not None:
        run.graphed(tokens, target)
    else:
        _step_body(run, tokens, target, params, sums)


def _step_body(run: Run, tokens: torch.Tensor, target: torch.Tensor,
               params: list[torch.nn.Parameter], sums: dict[str, torch.Tensor]) -> None:
    """Forward, loss, backward, AdamW and the log sums: no host sync (it may be captured)."""
    t = run.config.training
    logits, loss = run.forward_loss(tokens, target)
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if t.grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(params, t.grad_clip)
    run.optimizer.step()
    with torch.no_grad():
        mask = target != NO_LOSS
        sums["loss"] += loss.detach()
        sums["correct"] += ((logits.argmax(dim=-1) == target) & mask).sum()
        sums["labelled"] += mask.sum()
        sums["steps"] += 1


def _log(run: Run, step: int, lr: float, sums: dict[str, torch.Tensor], seconds: float,
         validate: bool) -> dict[str, Any]:
    """The metrics.jsonl record of a log step (the loop's only device sync); resets the sums."""
    host = _host_sums(sums)
    loss = host["loss"] / max(host["steps"], 1)
    if not math.isfinite(loss):
        raise TrainingDiverged(_diverged_message(run, step, loss))
    accuracy = host["correct"] / max(host["labelled"], 1)
    record: dict[str, Any] = {
        "step": step, "lr": lr, "loss": loss, "accuracy": accuracy,
        "scaled_accuracy": scaled_accuracy(accuracy, run.task.num_classes),
        "steps_per_second": host["steps"] / max(seconds, 1e-9),
        "code": rundir.code_fingerprint()}
    if validate:
        e = run.config.evaluation
        result = evaluate(run.model, run.task, min_len=e.min_len, max_len=e.max_len, n=e.val_n,
                          batch_size=e.batch_size, rng=data_rng(e.seed, VALIDATION_STREAM, 0),
                          device=run.device, precision=run.config.training.precision)
        record["val_accuracy"] = result.accuracy
        record["val_scaled_accuracy"] = result.scaled_accuracy
    for value in sums.values():
        value.zero_()
    return record


def _checkpoint(run: Run, state: TrainState, params: list[torch.nn.Parameter]) -> None:
    """Save unless the loss or a weight is NaN/inf: the last good checkpoint must survive."""
    finite = all(bool(torch.isfinite(p).all()) for p in params)
    loss = state.log_sums["loss"]
    if not finite or not math.isfinite(loss):
        raise TrainingDiverged(_diverged_message(run, state.step, loss if finite else math.nan))
    save_checkpoint(run.run_dir, run.model, run.optimizer, state)


def _diverged_message(run: Run, step: int, loss: float) -> str:
    where = checkpoint_dir(run.run_dir)
    kept = f"the last good checkpoint is {where}" if where else "no checkpoint was written yet"
    return (f"training diverged: the loss became {loss} by step {step} of {run.run_dir}; "
            f"stopping ({kept}). Try a lower training.lr or set training.grad_clip.")


def _finish(run: Run, state: TrainState) -> dict[str, Any]:
    """The final evaluation by length: eval.csv, the plot, then summary.json (last)."""
    from statetrack.experiment.plots import plot_runs

    e, t = run.config.evaluation, run.config.training
    start = time.perf_counter()
    result = evaluate(run.model, run.task, min_len=e.min_len, max_len=e.max_len, n=e.n,
                      batch_size=e.batch_size, rng=data_rng(e.seed, TEST_STREAM, 0),
                      device=run.device, precision=t.precision)
    rundir.write_eval_csv(run.run_dir / rundir.EVAL, result.rows())
    eval_seconds = time.perf_counter() - start
    last = rundir.read_metrics(run.run_dir)
    summary = {
        "task": run.config.task.name, "model": run.config.name,
        "mixer": run.config.model["mixer"],
        "eig_range": run.config.model["mixer_options"].get("eig_range"),
        "seed": t.seed, "data_seed": t.data_seed,
        "accuracy": result.accuracy, "scaled_accuracy": result.scaled_accuracy,
        "num_classes": run.task.num_classes, "eval_min_len": e.min_len,
        "eval_max_len": e.max_len, "eval_n": e.n, "steps": state.step,
        "final_train_loss": last[-1]["loss"] if last else None,
        "num_parameters": run.model.num_parameters(),
        "wall_seconds": state.wall_seconds + eval_seconds,
        "train_seconds": state.wall_seconds, "device": describe_device(run.device),
        "torch_version": torch.__version__, "statetrack_version": statetrack.__version__,
        "code": rundir.code_history(last), "eval_code": rundir.code_fingerprint()}
    plot_runs([run.run_dir], run.run_dir / rundir.PLOT)
    rundir.write_json(run.run_dir / rundir.SUMMARY, summary)
    return summary


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def _device_sums(host: dict[str, float], device: torch.device) -> dict[str, torch.Tensor]:
    return {"loss": torch.tensor(float(host["loss"]), dtype=torch.float32, device=device),
            "correct": torch.tensor(int(host["correct"]), dtype=torch.int64, device=device),
            "labelled": torch.tensor(int(host["labelled"]), dtype=torch.int64, device=device),
            "steps": torch.tensor(int(host["steps"]), dtype=torch.int64, device=device)}


def _host_sums(sums: dict[str, torch.Tensor]) -> dict[str, Any]:
    return {"loss": float(sums["loss"].item()), "correct": int(sums["correct"].item()),
            "labelled": int(sums["labelled"].item()), "steps": int(sums["steps"].item())}


def _log_line(record: dict[str, Any], steps: int) -> str:
    val = f" val_acc {record['val_accuracy']:.3f}" if "val_accuracy" in record else ""
    return (f"step {record['step']}/{steps} loss {record['loss']:.4f} acc "
            f"{record['accuracy']:.3f}{val} {record['steps_per_second']:.1f} steps/s")
