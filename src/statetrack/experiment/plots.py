"""Accuracy against length, one line per run, the training range shaded (PNG)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import yaml

from statetrack.experiment import rundir


def run_label(model: str, config: dict, summary: dict) -> str:
    return f"{model} · {config['task']['name']} · seed {summary.get('seed', '?')}"


def binned(rows: list[dict], min_n: int = 32) -> tuple[list[float], list[float]]:
    """Merge neighbouring lengths until each point holds ``min_n`` sequences: with a few
    sequences per length the curve is all noise (x = mean length, y = mean accuracy)."""
    lengths, accuracy, group = [], [], []
    for i, row in enumerate(rows):
        group.append(row)
        n = sum(r["n"] for r in group)
        if n >= min_n or i == len(rows) - 1:
            lengths.append(sum(r["length"] * r["n"] for r in group) / n)
            accuracy.append(sum(r["accuracy"] * r["n"] for r in group) / n)
            group = []
    return lengths, accuracy


def plot_runs(run_dirs: list[Path], out: Path, title: str | None = None) -> Path:
    """Draw each run's eval.csv (accuracy by task length) into one PNG at ``out``.

    One panel per task (a task with non-default options is its own panel), one line per run,
    one colour per model so that its seeds read as a bundle, the training lengths shaded,
    chance dotted, and dashed the accuracy of always giving the commonest answer of the test
    set where that lies clearly above chance (``evaluation.constant_floor``); runs of one name that
    differ in a model setting, or of one name and task in a training setting, are drawn as
    different models (``tables.model_labels``). Reads run
    directories only (config.yaml, eval.csv and summary.json), and draws the test sets of their
    tasks again for the dashed line."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed; must precede pyplot
    import matplotlib.pyplot as plt

    from statetrack.experiment.tables import model_labels, task_label

    configs = [yaml.safe_load((Path(d) / rundir.CONFIG).read_text()) for d in run_dirs]
    runs = []
    for run_dir, config, model in zip(map(Path, run_dirs), configs, model_labels(configs),
                                      strict=True):
        summary_path = run_dir / rundir.SUMMARY
        summary = rundir.read_json(summary_path) if summary_path.exists() else {}
        runs.append((task_label(config["task"]), config, summary,
                     binned(rundir.read_eval_csv(run_dir / rundir.EVAL)), model))
    panels = sorted({r[0] for r in runs})
    models = sorted({r[4] for r in runs})
    colour = {m: plt.cm.tab10(i % 10) for i, m in enumerate(models)}
    ncols = min(len(panels), 2)
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.0 + 5.5 * ncols, 0.5 + 3.7 * nrows),
                             dpi=120, squeeze=False)
    axes = axes.ravel()
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    default_title = "accuracy by length (dotted: chance)"
    for ax, panel in zip(axes, panels, strict=False):
        _draw_panel(ax, [r for r in runs if r[0] == panel], colour)
        ax.set_title(panel if len(panels) > 1 else title or f"{panel}: {default_title}")
        ax.set_ylabel("accuracy")
    if len(panels) > 1:
        fig.suptitle(title or default_title, fontsize=11)
    _fit_legends(fig, axes[:len(panels)], ncols)
    fig.tight_layout()  # places the axes, whose centres the titles are fitted around
    for ax in axes[:len(panels)]:
        _fit_title(fig, ax)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


AXES_WIDTH = 4.2  # inches of plot in each panel, whatever its legend's width


def _fit_title(fig, ax) -> None:
    """Break a panel's title into lines that fit in the figure: it is centred over its axes,
    so each half must fit between the axes' centre and the nearer figure edge (a long
    ``--title`` would otherwise run off the left edge, beside a legend that widens the right)."""
    text = ax.title
    width = text.get_window_extent(fig.canvas.get_renderer()).width
    box = ax.get_position()
    centre = (box.x0 + box.x1) / 2
    room = 0.95 * 2 * min(centre, 1 - centre) * fig.get_figwidth() * fig.dpi
    if width > room:
        chars = max(10, int(len(text.get_text()) * room / width))
        text.set_text(textwrap.fill(text.get_text(), chars))


def _fit_legends(fig, axes, ncols: int) -> None:
    """Widen the figure so that each panel keeps AXES_WIDTH inches of plot beside its legend:
    the legends sit outside the axes, and long labels (a sweep's settings) would otherwise
    squeeze the curves into a sliver."""
    renderer = fig.canvas.get_renderer()  # lays out the legends without drawing the curves
    legends = [ax.get_legend() for ax in axes]
    legend = max((g.get_window_extent(renderer).width for g in legends if g is not None),
                 default=0.0) / fig.dpi
    fig.set_size_inches(ncols * (AXES_WIDTH + 0.9 + legend) + 0.2, fig.get_figheight())


def _draw_panel(ax, runs: list, colour: dict) -> None:
    """The runs of one task: seeds of a model share its colour and one legend entry."""
    from statetrack.experiment.evaluation import constant_floor  # imports torch

    counts: dict[str, int] = {}
    for *_, name in runs:
        counts[name] = counts.get(name, 0) + 1
    labelled: set[str] = set()
    train_lo, train_hi, chances, floors = None, None, set(), set()
    for _, config, summary, (lengths, accuracy), name in runs:
        if counts[name] == 1:
            label = run_label(name, config, summary)
        else:
            label = None if name in labelled else f"{name} ({counts[name]} seeds)"
        labelled.add(name)
        ax.plot(lengths, accuracy, lw=1.2, marker=".", ms=3, color=colour[name], label=label,
                alpha=1.0 if counts[name] == 1 else 0.7)
        t = config["training"]
        train_lo = t["min_len"] if train_lo is None else min(train_lo, t["min_len"])
        train_hi = t["max_len"] if train_hi is None else max(train_hi, t["max_len"])
        if "num_classes" in summary:
            chances.add(1.0 / summary["num_classes"])
        floors.add(constant_floor(config))
    if train_lo is not None:
        ax.axvspan(train_lo, train_hi, color="0.85", zorder=0,
                   label=f"training lengths {train_lo}–{train_hi}")
    for chance in sorted(chances):
        ax.axhline(chance, color="0.4", ls=":", lw=1)
    for answer, accuracy in sorted(f for f in floors if f is not None):
        ax.axhline(accuracy, color="0.4", ls="--", lw=1,
                   label=f"always answering {answer}: {accuracy:.3f}")
    ax.set_xlabel("sequence length")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    ax.grid(alpha=0.3)
