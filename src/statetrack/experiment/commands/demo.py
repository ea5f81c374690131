"""``statetrack demo [--out DIR]``: DeltaNet [−1, 1] against DeltaNet [0, 1] on parity, on CPU.

Trains the two models of ``configs/demo/`` (one layer, width 32, a few hundred steps on lengths
3–40), evaluates both on lengths 40–256 and prints their scaled accuracy side by side: the
extended range learns parity and extrapolates, the classic one stays at chance.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

DEMO_CONFIGS = (("DeltaNet [-1,1]", "parity_deltanet_neg.yaml"),
                ("DeltaNet [0,1]", "parity_deltanet.yaml"))
LENGTH_BINS = ((40, 63), (64, 127), (128, 191), (192, 256))


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), metavar="DIR",
                        help="where the two runs and the plot go (default: %(default)s)")
    parser.add_argument("--configs", type=Path, default=None, metavar="DIR",
                        help="the folder of the demo configs (default: configs/demo of this "
                             "checkout)")
    # One thread: the model is too small to gain much from two, and a second OpenMP thread
    # that spins while another process holds the other core slows training tenfold.
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default: 1)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def find_configs(explicit: Path | None) -> Path:
    """configs/demo beside the source tree (an editable install or a clone), else ./configs."""
    candidates = [explicit] if explicit else [
        Path(__file__).resolve().parents[4] / "configs" / "demo", Path("configs/demo")]
    for folder in candidates:
        if all((folder / name).is_file() for _, name in DEMO_CONFIGS):
            return folder
    raise FileNotFoundError(f"demo configs {', '.join(n for _, n in DEMO_CONFIGS)} not found "
                            f"in {', '.join(map(str, candidates))}; pass --configs DIR")


def run(args: argparse.Namespace) -> int:
    import torch

    from statetrack.experiment.config import ConfigError, load_config
    from statetrack.experiment.plots import plot_runs
    from statetrack.experiment.rundir import CONFIG, read_eval_csv
    from statetrack.experiment.trainer import TrainingDiverged, train

    torch.set_num_threads(max(1, args.threads))
    start = time.perf_counter()
    try:
        folder = find_configs(args.configs)
        configs = [(label, load_config(folder / name)) for label, name in DEMO_CONFIGS]
    except (FileNotFoundError, ConfigError) as err:
        print(f"statetrack demo: error: {err}", file=sys.stderr)
        return 2
    run_dirs, rows = [], []
    for label, config in configs:
        run_dir = args.out / f"{config.task.name}_{config.name}"
        if (run_dir / CONFIG).exists():  # a previous demo: start afresh
            shutil.rmtree(run_dir)
        print(f"training {label} on parity (lengths {config.training.min_len}–"
              f"{config.training.max_len}, {config.training.steps} steps) → {run_dir}")
        try:
            summary = train(config, run_dir, quiet=args.quiet)
        except TrainingDiverged as err:
            print(f"statetrack demo: {err}", file=sys.stderr)
            return 1
        run_dirs.append(run_dir)
        rows.append((label, summary, read_eval_csv(run_dir / "eval.csv")))
    plot = plot_runs(run_dirs, args.out / "parity_deltanet_neg_vs_deltanet.png",
                     title="parity: DeltaNet [-1,1] vs [0,1] (trained on lengths 3–40)")
    print()
    print(side_by_side(rows))
    print(f"\nplot: {plot}")
    print(f"runs: {', '.join(map(str, run_dirs))}")
    print(f"total time: {time.perf_counter() - start:.0f} s")
    return 0


def side_by_side(rows: list[tuple[str, dict, list[dict]]]) -> str:
    """Scaled accuracy by length bin, one column per model, the overall number last."""
    header = "| lengths | " + " | ".join(label for label, _, _ in rows) + " |"
    lines = [header, "|---" * (len(rows) + 1) + "|"]
    for lo, hi in LENGTH_BINS:
        cells = []
        for _, _, evals in rows:
            sel = [r for r in evals if lo <= r["length"] <= hi]
            n = sum(r["n"] for r in sel)
            value = sum(r["scaled_accuracy"] * r["n"] for r in sel) / n if n else float("nan")
            cells.append(f"{value:.3f}")
        lines.append(f"| {lo}–{hi} | " + " | ".join(cells) + " |")
    overall = " | ".join(f"**{s['scaled_accuracy']:.3f}**" for _, s, _ in rows)
    lines.append(f"| all (scaled accuracy) | {overall} |")
    return "\n".join(lines)
