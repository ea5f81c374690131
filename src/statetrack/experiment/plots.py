"""Accuracy against length, one line per run, the training range shaded (PNG)."""

from __future__ import annotations

from pathlib import Path

import yaml

from statetrack.experiment import rundir


def run_label(config: dict, summary: dict) -> str:
    return f"{config['name']} · {config['task']['name']} · seed {summary.get('seed', '?')}"


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

    Reads run directories only: config.yaml, eval.csv and (if present) summary.json."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed; must precede pyplot
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=120)
    train_lo, train_hi, chances = None, None, set()
    for run_dir in map(Path, run_dirs):
        config = yaml.safe_load((run_dir / rundir.CONFIG).read_text())
        summary_path = run_dir / rundir.SUMMARY
        summary = rundir.read_json(summary_path) if summary_path.exists() else {}
        lengths, accuracy = binned(rundir.read_eval_csv(run_dir / rundir.EVAL))
        ax.plot(lengths, accuracy, lw=1.2, marker=".", ms=3, label=run_label(config, summary))
        t = config["training"]
        train_lo = t["min_len"] if train_lo is None else min(train_lo, t["min_len"])
        train_hi = t["max_len"] if train_hi is None else max(train_hi, t["max_len"])
        if "num_classes" in summary:
            chances.add(1.0 / summary["num_classes"])
    if train_lo is not None:
        ax.axvspan(train_lo, train_hi, color="0.85", zorder=0,
                   label=f"training lengths {train_lo}–{train_hi}")
    for chance in sorted(chances):
        ax.axhline(chance, color="0.4", ls=":", lw=1)
    ax.set_xlabel("sequence length")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title or "accuracy by length (dotted: chance)")
    ax.legend(fontsize=7, loc="lower left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
