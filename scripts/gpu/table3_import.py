"""Take in what one `scripts/gpu/table3_call.sh` call brought back, before the next call.

    python3 scripts/gpu/table3_import.py CALL_DIR [--results results/table3]
        [--partial .table3_partial] [--logs-tag session7_call2]

CALL_DIR holds the call's files (table3_runs.tar.gz, partial.tar.part*, logs.tar.gz). This

1. copies every finished run that `--results` lacks (config.yaml, summary.json, eval.csv,
   metrics.jsonl; the tar holds nothing else) into it, and lists them;
2. rewrites `--partial` as the call's checkpoints, plus the older ones already there of runs the
   call did not bring (pack_partial.py leaves runs out over its size limit), less any run that
   is finished by now, so the next call resumes exactly the unfinished runs. A finished run left
   out of `--results` would otherwise be trained again from step 0 by the next call (session 7
   lost two sLSTM runs' worth of GPU time that way);
3. with `--logs-tag`, keeps the call's log, per-run rates, GPU trace and the training
   processes' signal masks at the checkpoint request as
   `--results`/logs/{call,rates,gpu_util,cpu,usr1_status}_TAG.*.

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
CARRY_WARN = 56 << 20  # pack_partial.py's limit; the working tree travels beside it


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


def _runs_in_pieces(folder: Path) -> dict[str, list[tuple[tarfile.TarInfo, bytes | None]]]:
    """The members of the tar split into folder/partial.tar.part*, grouped by run."""
    data = b"".join(p.read_bytes() for p in sorted(folder.glob("partial.tar.part*")))
    runs: dict[str, list[tuple[tarfile.TarInfo, bytes | None]]] = {}
    if data:
        with tarfile.open(fileobj=io.BytesIO(data)) as src:
            for m in src.getmembers():
                run = run_of(m.name)
                if run is not None:
                    body = src.extractfile(m).read() if m.isfile() else None
                    runs.setdefault(str(run), []).append((m, body))
    return runs


def merge_partial(call: Path, partial: Path, finished: set[str]) -> tuple[list[str], list[str]]:
    """Rewrite `partial` as the call's checkpoints plus the older ones in `partial` of runs the
    call did not bring (left out over its size limit, or a pack that failed), less every
    finished run; a run's files come whole from one source. Returns (runs kept, runs kept
    from the older checkpoints)."""
    older, brought = _runs_in_pieces(partial), _runs_in_pieces(call)
    runs = {**older, **brought}  # the call's checkpoint of a run replaces the older one
    kept = sorted(r for r in runs if r not in finished)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as dst:
        for run in kept:
            for m, body in runs[run]:
                dst.addfile(m, io.BytesIO(body) if body is not None else None)
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    blob = out.getvalue() if kept else b""
    for i in range(0, len(blob), PIECE):
        (partial / f"partial.tar.part{i // PIECE:02d}").write_bytes(blob[i:i + PIECE])
    if len(blob) > CARRY_WARN:
        print(f"warning: {partial} holds {len(blob) / (1 << 20):.1f} MiB; a call carries at most "
              "64 MiB with the working tree", file=sys.stderr)
    return kept, [r for r in kept if r not in brought]


def keep_logs(call: Path, results: Path, tag: str) -> list[Path]:
    """Copy the call's call.log, and its rates.txt, gpu_util.log, cpu.log and usr1_status.log
    (from logs.tar.gz), into results/logs, named with `tag`; what the call lacks is skipped."""
    wanted = {"logs/rates.txt": f"rates_{tag}.txt", "logs/gpu_util.log": f"gpu_util_{tag}.log",
              "logs/cpu.log": f"cpu_{tag}.log", "logs/usr1_status.log": f"usr1_status_{tag}.log"}
    logs = results / "logs"
    written = []
    if (call / "call.log").exists():
        logs.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(call / "call.log", logs / f"call_{tag}.log")
        written.append(logs / f"call_{tag}.log")
    if not (call / "logs.tar.gz").exists():
        return written
    with tarfile.open(call / "logs.tar.gz") as tar:
        for m in tar.getmembers():
            if m.name in wanted:
                target = logs / wanted[m.name]
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
    kept, older = merge_partial(args.call, args.partial, finished | committed)
    print(f"{len(new)} new finished runs copied into {args.results}:")
    for run in new:
        print(f"  {run}")
    print(f"{len(kept)} unfinished runs' checkpoints in {args.partial} (carry it):")
    for run in kept:
        print(f"  {run}" + (" (an older checkpoint: the call brought none)" if run in older
                            else ""))
    for path in keep_logs(args.call, args.results, args.logs_tag) if args.logs_tag else []:
        print(f"kept {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
