"""The markdown results table: rows = models, columns = tasks.

Each cell is the best scaled accuracy over seeds, then the median ± MAD (median absolute
deviation) over seeds and their number, then Table 3's value when the runs follow one of the
paper's configs. Reads run directories only, so a table can always be rebuilt.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
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
    """(model name, task) → the scaled accuracies of its runs (one per seed)."""
    cells: dict[tuple[str, str], Cell] = {}
    for run_dir in run_dirs:
        summary = rundir.read_json(run_dir / rundir.SUMMARY)
        config = yaml.safe_load((run_dir / rundir.CONFIG).read_text())
        cell = cells.setdefault((config["name"], task_label(config["task"])), Cell())
        cell.scores.append(float(summary["scaled_accuracy"]))
        value = paper_value(config)
        cell.all_paper = cell.all_paper and value is not None
        cell.paper = value if value is not None else cell.paper
    return cells


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
    models = sorted({m for m, _ in cells}, key=_order(PAPER_MODEL_ORDER))
    tasks = sorted({t for _, t in cells}, key=_task_order)
    lines = ["| model | " + " | ".join(tasks) + " |", "|---" * (len(tasks) + 1) + "|"]
    for model in models:
        row = [cells.get((model, task), Cell()).render() for task in tasks]
        lines.append(f"| {model} | " + " | ".join(row) + " |")
    lines.append("")
    lines.append("Scaled accuracy on the evaluation lengths: **best of seeds** (median ± MAD "
                 "over seeds, n = seeds); paper = Table 3 of Grazzi et al. (best of 3 seeds), "
                 "shown where the runs follow the paper's config.")
    return "\n".join(lines)


def _task_order(label: str) -> tuple[int, str]:
    return _order(PAPER_TASKS)(label.split(" (")[0])[0], label


def _order(preferred: tuple[str, ...]):
    return lambda name: (preferred.index(name) if name in preferred else len(preferred), name)
