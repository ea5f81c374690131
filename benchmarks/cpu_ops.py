"""CPU benchmark of the ops: token-loop reference vs the chunked torch backend (forward only).

Same as ``statetrack bench``; writes ``benchmarks/results/cpu_ops.json`` unless ``--out`` says
otherwise. Run: ``python benchmarks/cpu_ops.py [--lengths 256 1024 4096] [--threads 2]``.
"""

from __future__ import annotations

import argparse
import sys

from statetrack.ops import bench


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    bench.configure(parser)
    return bench.run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
