"""The markdown results table: rows = models, columns = tasks.

Each cell is the best scaled accuracy over seeds, then the median ± MAD (median absolute
deviation) over seeds and their number, then Table 3's value when the runs follow one of the
paper's configs. Reads run directories only, so a table can always be rebuilt.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from statetrack.experiment import rundir
from statetrack.experiment.paper import PAPER_MODEL_ORDER, PAPER_TASKS, paper_value


@dataclass
class Cell:
    scores: list[float] = field(default_factory=list)
    paper: float | None = None
    all_paper: bool = True  # every run of the cell follows the paper's config

    def render(self) -> str:
        if not self.scores:
            return "–"
        best = max(self.scores)
        median = statistics.median(self.scores)
        mad = statistics.median(abs(s - median) for s in self.scores)
        text = f"**{best:.3f}** ({median:.3f} ± {mad:.3f}, n={len(self.scores)})"
        if self.paper is not None and self.all_paper:
            text += f" / paper {self.paper:.3f}"
        return text


def collect(run_dirs: list[Path]) -> dict[tuple[str, str], Cell]:
    """(row, task) → the scaled accuracies of its runs (one per seed). The row is the model's
    name, split by :func:`model_labels` where runs of one name differ in their model, or runs
    of one name and task in their training protocol."""
    runs = [(rundir.read_json(d / rundir.SUMMARY), yaml.safe_load((d / rundir.CONFIG).read_text()))
            for d in run_dirs]
    labels = model_labels([config for _, config in runs])
    cells: dict[tuple[str, str], Cell] = {}
    for (summary, config), label in zip(runs, labels, strict=True):
        cell = cells.setdefault((label, task_label(config["task"])), Cell())
        cell.scores.append(float(summary["scaled_accuracy"]))
        value = paper_value(config)
        cell.all_paper = cell.all_paper and value is not None
        cell.paper = value if value is not None else cell.paper
    return cells


def model_labels(configs: list[dict[str, Any]]) -> list[str]:
    """Each run's row: its name, plus ``(key=value, ...)`` for every model setting in which
    runs of that name differ (say a grid over ``unit_keys``), and every training setting in
    which runs of that name and task differ (say a grid over ``training.lr``), so that
    different models or protocols are never pooled into one cell. Models are compared resolved
    (a config written before an option existed has its default) and without the mixer's
    ``backend`` (a kernel, not a model); training settings without the seeds and those that
    only choose how a run executes (:data:`EXECUTION_KEYS`)."""
    names = [config["name"] for config in configs]
    name_tasks = [(name, task_label(config["task"])) for name, config in zip(names, configs,
                                                                             strict=True)]
    models = [_flat_model(config["model"]) for config in configs]
    protocols = [_flat_training(config.get("training", {})) for config in configs]
    by_name, by_task = _varying(names, models), _varying(name_tasks, protocols)
    labels = []
    for name, name_task, model, protocol in zip(names, name_tasks, models, protocols,
                                                strict=True):
        shown = [(k, model.get(k)) for k in by_name[name]]
        shown += [(k, protocol.get(k)) for k in by_task[name_task]]
        suffix = ", ".join(f"{_short_key(k, shown)}={v}" for k, v in shown)  # model keys first
        labels.append(f"{name} ({suffix})" if shown else name)
    return labels


def _short_key(key: str, shown: list[tuple[str, Any]]) -> str:
    """A key's last part (``mixer_options.unit_keys`` → ``unit_keys``), or the whole dotted key
    where another shown key ends in the same part (the model's and the mixer's ``norm_eps``)."""
    last = key.split(".")[-1]
    clash = sum(k.split(".")[-1] == last for k, _ in shown) > 1
    return key if clash else last


# Training settings that are not part of a run's protocol: its random draws, and how it executes
# (the same steps on other hardware, compiled or replayed, logged and checkpointed more or less).
EXECUTION_KEYS = ("seed", "data_seed", "device", "log_every", "val_every", "checkpoint_every",
                  "cuda_graphs", "compile")


def _varying(groups: list[Any], settings: list[dict[str, Any]]) -> dict[Any, list[str]]:
    """group → the sorted keys whose values differ among the runs of that group."""
    members: dict[Any, list[dict[str, Any]]] = {}
    for group, flat in zip(groups, settings, strict=True):
        members.setdefault(group, []).append(flat)
    return {group: sorted(k for k in set().union(*flats)
                          if len({repr(f.get(k)) for f in flats}) > 1)
            for group, flats in members.items()}


def _flat_training(raw: dict[str, Any]) -> dict[str, Any]:
    """A training section with its defaults filled in, less :data:`EXECUTION_KEYS`."""
    from statetrack.experiment.config import TrainingSection

    resolved = {f.name: f.default for f in fields(TrainingSection)} | dict(raw)
    return {k: v for k, v in resolved.items() if k not in EXECUTION_KEYS}


def _flat_model(raw: dict[str, Any]) -> dict[str, Any]:
    """A model section resolved (when it still resolves) and flattened to dotted keys, less the
    mixer's ``backend``."""
    from statetrack.experiment.config import ConfigError, resolve_model

    try:
        model = resolve_model(raw)
    except ConfigError:
        model = raw
    flat = {k: v for k, v in model.items() if k != "mixer_options"}
    flat.update({f"mixer_options.{k}": v for k, v in model.get("mixer_options", {}).items()
                 if k != "backend"})
    return flat


def task_label(task: dict[str, Any]) -> str:
    """The column of a run: the task's name, plus every option that differs from its default,
    so that runs of one task under different options (brackets with and without ``*``) are
    never pooled into one cell."""
    from statetrack.tasks import task_options

    defaults = task_options(task["name"])
    changed = {k: v for k, v in sorted(task.get("options", {}).items()) if defaults.get(k) != v}
    if not changed:
        return task["name"]
    return f"{task['name']} ({', '.join(f'{k}={v}' for k, v in changed.items())})"


def markdown_table(run_dirs: list[Path]) -> str:
    cells = collect(run_dirs)
    models = sorted({m for m, _ in cells}, key=_row_order)
    tasks = sorted({t for _, t in cells}, key=_task_order)
    lines = ["| model | " + " | ".join(tasks) + " |", "|---" * (len(tasks) + 1) + "|"]
    for model in models:
        row = [cells.get((model, task), Cell()).render() for task in tasks]
        lines.append(f"| {model} | " + " | ".join(row) + " |")
    lines.append("")
    lines.append("Scaled accuracy on the evaluation lengths: **best of seeds** (median ± MAD "
                 "over seeds, n = seeds); paper = Table 3 of Grazzi et al. (best of 3 seeds), "
                 "shown where the runs follow the paper's config.")
    floors = constant_floors(run_dirs)
    if floors:
        lines.append("")
        lines.append("Above chance without reading the input: " + "; ".join(
            f"{task}: always answering {answer} scores {scaled:.3f}"
            for task, (answer, scaled) in sorted(floors.items(), key=lambda f: _task_order(f[0]))
        ) + " (scaled, on that column's test set).")
    return "\n".join(lines)


def constant_floors(run_dirs: list[Path]) -> dict[str, tuple[str, float]]:
    """column → (answer, scaled accuracy) of always giving the commonest answer of its test
    set, for the columns where that beats chance (``evaluation.constant_floor``; the first
    run's test set where a column's runs differ in theirs)."""
    from statetrack.experiment.evaluation import (
        answer_shares,
        constant_floor,
        scaled_accuracy,
    )

    floors: dict[str, tuple[str, float]] = {}
    seen: set[str] = set()
    for run_dir in run_dirs:
        config = yaml.safe_load((Path(run_dir) / rundir.CONFIG).read_text())
        column = task_label(config["task"])
        if column in seen:
            continue
        seen.add(column)
        floor = constant_floor(config)
        if floor is not None:
            num_classes = answer_shares(config)[0].num_classes  # cached by constant_floor
            floors[column] = (floor[0], scaled_accuracy(floor[1], num_classes))
    return floors


def _row_order(label: str) -> tuple[int, str]:
    return _order(PAPER_MODEL_ORDER)(label.split(" (")[0])[0], label


def _task_order(label: str) -> tuple[int, str]:
    return _order(PAPER_TASKS)(label.split(" (")[0])[0], label


def _order(preferred: tuple[str, ...]):
    return lambda name: (preferred.index(name) if name in preferred else len(preferred), name)
