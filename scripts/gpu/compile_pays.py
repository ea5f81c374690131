"""Whether ``training.compile`` pays for the sweep: summed steps/s of K packed copies, compiled
against not, from two ``benchmarks/train_step.py --concurrent K`` JSON files of one call.

    python3 scripts/gpu/compile_pays.py OFF.json ON.json [--need deltanet_neg=1.1 ...]

Prints one line per model (both files' summed steps/s at the largest K and their ratio) and
exits 0 when every model named by ``--need`` reaches its ratio, 1 when one does not, 2 when a
file lacks a model's record (a benchmark that failed or timed out decides nothing).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def packed_rates(path: Path) -> dict[str, tuple[int, float]]:
    """model → (K, summed steps/s) of the largest K among the file's concurrent records."""
    best: dict[str, tuple[int, float]] = {}
    for record in json.loads(path.read_text()):
        if record.get("op") != "train_step_concurrent":
            continue
        k, total = record["k"], record["total_steps_per_s"]
        if record["model"] not in best or k > best[record["model"]][0]:
            best[record["model"]] = (k, total)
    return best


def need(text: str) -> tuple[str, float]:
    model, sep, ratio = text.partition("=")
    try:
        value = float(ratio)
    except ValueError:
        value = -1.0
    if not sep or not model or value <= 0:
        raise argparse.ArgumentTypeError(f"expected MODEL=RATIO, e.g. deltanet_neg=1.1, "
                                         f"got {text!r}")
    return model, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("off", type=Path)
    parser.add_argument("on", type=Path)
    parser.add_argument("--need", type=need, action="append", default=[], metavar="MODEL=RATIO",
                        help="the compiled/eager ratio a model must reach (repeatable; "
                             "default deltanet_neg=1.1)")
    args = parser.parse_args(argv)
    needs = dict(args.need or [("deltanet_neg", 1.1)])
    try:
        off, on = packed_rates(args.off), packed_rates(args.on)
    except (OSError, ValueError, KeyError) as error:
        print(f"compile_pays: cannot read the benchmark output: {error}", file=sys.stderr)
        return 2
    pays = True
    for model, ratio in needs.items():
        if model not in off or model not in on or off[model][0] != on[model][0]:
            print(f"compile_pays: no matching --concurrent records for {model} "
                  f"(off: {off.get(model)}, on: {on.get(model)})", file=sys.stderr)
            return 2
        (k, a), (_, b) = off[model], on[model]
        ok = b >= ratio * a
        pays &= ok
        print(f"{model}: {k} copies, {a:.1f} steps/s without compile, {b:.1f} with, "
              f"ratio {b / a:.2f} (needs {ratio:.2f}): {'pays' if ok else 'does not pay'}")
    return 0 if pays else 1


if __name__ == "__main__":
    raise SystemExit(main())
