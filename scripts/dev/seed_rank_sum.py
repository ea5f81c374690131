"""Two groups of finished runs compared seed by seed: where group b's scores rank among all.

    python3 scripts/dev/seed_rank_sum.py --a PATH [PATH ...] --b PATH [PATH ...] [--at 0.99 0.96]

Each PATH is a run directory or a folder holding run directories (every ``summary.json`` under
it counts once). For each group it prints the number of runs, the median scaled accuracy and
how many runs score at or above each ``--at`` value; then the Wilcoxon rank-sum statistic of
group b: W, the sum of b's ranks among all scores (ties share their mean rank), its mean
n_b (n + 1) / 2 and standard deviation √(n_a n_b (n + 1) / 12) if the groups were exchangeable
(no tie correction), and z = (W − mean) / sd. A normal approximation behind the results
READMEs' "higher on the whole, not established", not a test.
"""

from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path

from statetrack.experiment.rundir import SUMMARY, read_json


def scores(paths: list[Path]) -> list[float]:
    """The scaled accuracy of every finished run under ``paths``, each run once."""
    found = sorted({s.resolve() for p in paths
                    for s in ([p / SUMMARY] if (p / SUMMARY).is_file() else p.rglob(SUMMARY))})
    if not found:
        raise ValueError(f"no finished run (summary.json) under {', '.join(map(str, paths))}")
    return [float(read_json(s)["scaled_accuracy"]) for s in found]


def rank_sum(a: list[float], b: list[float]) -> dict[str, float]:
    """W of group b with mean ranks for ties, its mean and sd under exchangeability, and z."""
    pooled = sorted(a + b)
    rank = {}
    for value in set(pooled):
        first = pooled.index(value) + 1
        rank[value] = first + (pooled.count(value) - 1) / 2
    n_a, n_b, n = len(a), len(b), len(a) + len(b)
    w = sum(rank[x] for x in b)
    mean = n_b * (n + 1) / 2
    sd = math.sqrt(n_a * n_b * (n + 1) / 12)
    return {"W": w, "mean": mean, "sd": sd, "z": (w - mean) / sd}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", nargs="+", type=Path, required=True)
    parser.add_argument("--b", nargs="+", type=Path, required=True)
    parser.add_argument("--at", nargs="*", type=float, default=[0.99],
                        help="count the runs at or above each of these (default 0.99)")
    args = parser.parse_args(argv)
    try:
        groups = {"a": scores(args.a), "b": scores(args.b)}
    except ValueError as err:
        parser.error(str(err))
    for name, values in groups.items():
        counts = ", ".join(f"{sum(v >= t for v in values)} at or above {t:g}" for t in args.at)
        print(f"{name}: n={len(values)}, median {statistics.median(values):.3f}"
              + (f", {counts}" if counts else ""))
    r = rank_sum(groups["a"], groups["b"])
    print(f"rank sum of b: W={r['W']:g}, expected {r['mean']:g} ± {r['sd']:.2f}, "
          f"z={r['z']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
