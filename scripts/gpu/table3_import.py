"""Take in what one `scripts/gpu/table3_call.sh` call brought back, before the next call.

    python3 scripts/gpu/table3_import.py CALL_DIR [--results results/table3]
        [--partial .table3_partial] [--logs-tag session7_call2]

CALL_DIR holds the call's files (table3_runs.tar.gz, partial.tar.part*, logs.tar.gz). This

1. copies every finished run that `--results` lacks (config.yaml, summary.json, eval.csv,
   metrics.jsonl; the tar holds nothing else) into it, and lists them;
2. replaces `--partial` with the call's checkpoints, less any run that is finished by now, so the
   next call resumes exactly the unfinished runs. A finished run left out of `--results` would
   otherwise be trained again from step 0 by the next call (session 7 lost two sLSTM runs' worth
   of GPU time that way);
3. with `--logs-tag`, keeps the call's per-run rates and GPU trace as
   `--results`/logs/{rates,gpu_util}_TAG.*.

It refuses (exit status 2) when CALL_DIR has no table3_runs.tar.gz, and it never overwrites a
run that `--results` already has.
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
import tarfile
from pathlib import Path, PurePosixPath

RUN_FILES = ("config.yaml", "summary.json", "eval.csv", "metrics.jsonl")
PIECE = 15 << 20  # the size of pack_partial.py's pieces


def run_of(member: str) -> PurePosixPath | None:
    """runs/TASK/MODEL/seed=S/... -> TASK/MODEL/seed=S (None for shorter names)."""
    parts = PurePosixPath(member).parts
    return PurePosixPath(*parts[1:4]) if len(parts) >= 5 else None


def import_finished(call: Path, results: Path) -> tuple[list[str], set[str]]:
    """Copy the runs `results` lacks; return (new runs, every finished run in the tar)."""
    new, finished = [], set()
    with tarfile.open(call / "table3_runs.tar.gz") as tar:
        members = [m for m in tar.getmembers() if m.isfile()]
        for m in members:
            run = run_of(m.name)
            if run is not None and PurePosixPath(m.name).name == "summary.json":
                finished.add(str(run))
        for run in sorted(finished):
            if (results / run / "summary.json").exists():
                continue
            (results / run).mkdir(parents=True, exist_ok=True)
            for m in members:
                if str(run_of(m.name)) == run and PurePosixPath(m.name).name in RUN_FILES:
                    (results / run / PurePosixPath(m.name).name).write_bytes(
                        tar.extractfile(m).read())
            new.append(run)
    return new, finished


def replace_partial(call: Path, partial: Path, finished: set[str]) -> list[str]:
    """Write the call's checkpoints less the finished runs to `partial`; return the runs kept."""
    pieces = sorted(call.glob("partial.tar.part*"))
    data = b"".join(p.read_bytes() for p in pieces)
    kept: set[str] = set()
    out = io.BytesIO()
    if data:
        with tarfile.open(fileobj=io.BytesIO(data)) as src, \
                tarfile.open(fileobj=out, mode="w") as dst:
            for m in src.getmembers():
                run = run_of(m.name)
                if run is None or str(run) in finished:
                    continue
                kept.add(str(run))
                dst.addfile(m, src.extractfile(m) if m.isfile() else None)
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    blob = out.getvalue() if kept else b""
    for i in range(0, len(blob), PIECE):
        (partial / f"partial.tar.part{i // PIECE:02d}").write_bytes(blob[i:i + PIECE])
    return sorted(kept)


def keep_logs(call: Path, results: Path, tag: str) -> list[Path]:
    """Copy the call's rates.txt and gpu_util.log into results/logs, named with `tag`."""
    wanted = {"logs/rates.txt": f"rates_{tag}.txt", "logs/gpu_util.log": f"gpu_util_{tag}.log"}
    written = []
    if not (call / "logs.tar.gz").exists():
        return written
    with tarfile.open(call / "logs.tar.gz") as tar:
        for m in tar.getmembers():
            if m.name in wanted:
                target = results / "logs" / wanted[m.name]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(tar.extractfile(m).read())
                written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("call", type=Path)
    parser.add_argument("--results", type=Path, default=Path("results/table3"))
    parser.add_argument("--partial", type=Path, default=Path(".table3_partial"))
    parser.add_argument("--logs-tag", default=None)
    args = parser.parse_args(argv)
    if not (args.call / "table3_runs.tar.gz").exists():
        print(f"error: {args.call} has no table3_runs.tar.gz", file=sys.stderr)
        return 2
    new, finished = import_finished(args.call, args.results)
    committed = {str(p.parent.relative_to(args.results))
                 for p in args.results.rglob("summary.json")}
    kept = replace_partial(args.call, args.partial, finished | committed)
    print(f"{len(new)} new finished runs copied into {args.results}:")
    for run in new:
        print(f"  {run}")
    print(f"{len(kept)} unfinished runs' checkpoints in {args.partial} (carry it):")
    for run in kept:
        print(f"  {run}")
    for path in keep_logs(args.call, args.results, args.logs_tag) if args.logs_tag else []:
        print(f"kept {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
