"""Checkpoints that load without unpickling anything: tensors in safetensors, the rest in JSON.

```
checkpoint/
  model.safetensors       the weights
  optimizer.safetensors   optimizer tensors ("state.<param index>.<name>") and RNG states
  state.json              step, wall time, the running log sums, optimizer param groups and
                          scalar state
```
A checkpoint is written into a temporary directory and swapped in by renames, so a crash leaves
either the previous checkpoint or the new one (``checkpoint.old`` during the swap).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from statetrack.experiment.rundir import CHECKPOINT

MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"


@dataclass
class TrainState:
    """What a resumed run needs besides tensors: ``step`` = optimizer updates done."""

    step: int
    wall_seconds: float
    log_sums: dict[str, float]  # the running sums of the current log window


def save_checkpoint(run_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    state: TrainState) -> None:
    final = run_dir / CHECKPOINT
    tmp = run_dir / f"{CHECKPOINT}.tmp"
    old = run_dir / f"{CHECKPOINT}.old"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(_weights(model), str(tmp / MODEL_FILE))
    tensors, scalars = _split_optimizer_state(optimizer)
    tensors.update(_rng_tensors())
    save_file(tensors, str(tmp / OPTIMIZER_FILE))
    meta = {"step": state.step, "wall_seconds": state.wall_seconds, "log_sums": state.log_sums,
            "param_groups": _json_groups(optimizer), "optimizer_scalars": scalars}
    (tmp / STATE_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def checkpoint_dir(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run (``checkpoint.old`` if a swap was cut short)."""
    for name in (CHECKPOINT, f"{CHECKPOINT}.old"):
        path = run_dir / name
        if (path / STATE_FILE).is_file():
            return path
    return None


def load_weights(run_dir: Path, model: torch.nn.Module) -> None:
    path = checkpoint_dir(run_dir)
    if path is None:
        raise FileNotFoundError(f"no checkpoint in {run_dir} (expected {run_dir / CHECKPOINT})")
    _load_weights(model, path / MODEL_FILE)


def load_checkpoint(run_dir: Path, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer) -> TrainState:
    """Restore weights, optimizer and RNG states in place; return the step and log sums."""
    path = checkpoint_dir(run_dir)
    if path is None:
        raise FileNotFoundError(f"no checkpoint in {run_dir} (expected {run_dir / CHECKPOINT})")
    _load_weights(model, path / MODEL_FILE)
    meta = json.loads((path / STATE_FILE).read_text())
    tensors = load_file(str(path / OPTIMIZER_FILE))
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("state."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for index, entries in meta["optimizer_scalars"].items():
        state.setdefault(int(index), {}).update(entries)
    groups = [{**saved, **_device_settings(current)}
              for saved, current in zip(meta["param_groups"], optimizer.param_groups,
                                strict=False)]
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    _restore_rng(tensors)
    return TrainState(meta["step"], meta["wall_seconds"], meta["log_sums"])


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every state-dict entry as its own contiguous tensor: on CUDA, cuDNN's LSTM keeps its
    weights as views of one flat buffer, which safetensors refuses to save as shared storage."""
    return {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}


def _load_weights(model: torch.nn.Module, path: Path) -> None:
    model.load_state_dict(load_file(str(path), device=str(_device_of(model))), strict=True)


def _device_of(model: torch.nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def _split_optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor],
                                                                     dict[str, dict[str, Any]]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entries in optimizer.state_dict()["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{name}"] = value.detach().cpu().contiguous()
            elif isinstance(value, (int, float, bool)) or value is None:
                scalars.setdefault(str(index), {})[name] = value
            else:
                raise TypeError(f"optimizer state {name!r} of type {type(value).__name__} "
                                "cannot be saved without pickling")
    return tensors, scalars


# How this process runs the optimizer, not what it learnt: kept from the optimizer a run is
# resumed into (a run checkpointed on a GPU with CUDA graphs may resume eagerly on a CPU).
_DEVICE_SETTINGS = ("fused", "foreach", "capturable", "lr")


def _device_settings(group: dict[str, Any]) -> dict[str, Any]:
    """A group's device-specific settings; a tensor learning rate (CUDA graphs) is kept as the
    same tensor, a float one is reset by the schedule at the next step anyway."""
    return {key: group[key] for key in _DEVICE_SETTINGS if key in group}


def _json_groups(optimizer: torch.optim.Optimizer) -> list[dict[str, Any]]:
    groups = optimizer.state_dict()["param_groups"]
    for group in groups:  # a CUDA-graph run keeps its learning rate in a device tensor
        if isinstance(group.get("lr"), torch.Tensor):
            group["lr"] = float(group["lr"])
    try:
        return json.loads(json.dumps(groups))
    except TypeError as err:
        raise TypeError(f"optimizer param_groups hold a value JSON cannot store: {err}") from None


def _rng_tensors() -> dict[str, torch.Tensor]:
    out = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            out[f"rng.cuda.{i}"] = s
    return out


def _restore_rng(tensors: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = sorted((k for k in tensors if k.startswith("rng.cuda.")),
                  key=lambda k: int(k.rsplit(".", 1)[1]))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda][: torch.cuda.device_count()])
