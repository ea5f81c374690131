"""The Table 3 sweep's hand-over between device calls: scripts/gpu/pack_partial.py packs the
unfinished runs' checkpoints there, scripts/gpu/table3_import.py takes a call's files in here."""

from __future__ import annotations

import io
import json
import re
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from repo_scripts import ROOT, load_script


def load_import_tool():  # noqa: ANN201 (a module)
    return load_script("scripts/gpu/table3_import.py")


def make_run(root: Path, name: str, *, finished: bool, step: int = 0) -> Path:
    run = root / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(f"name: {name}\n")
    (run / "metrics.jsonl").write_text(json.dumps({"step": step}) + "\n")
    if finished:
        (run / "summary.json").write_text(json.dumps({"run": name}))
        (run / "eval.csv").write_text("length,accuracy\n40,1.0\n")
    else:
        (run / "checkpoint").mkdir()
        (run / "checkpoint" / "state.json").write_text(json.dumps({"step": step}))
        (run / "checkpoint" / "model.safetensors").write_bytes(name.encode() * 100)
    return run


def pack_partial(runs: Path, out: Path, *options: str) -> None:
    """scripts/gpu/pack_partial.py, run as table3_call.sh runs it on the device."""
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu" / "pack_partial.py"),
                    str(runs), str(out), *options],
                   check=True, env={"PYTHONPATH": str(ROOT / "src")}, capture_output=True)


def fake_call(tmp_path: Path) -> Path:
    """A device call's files, made by the same commands table3_call.sh runs there."""
    work = tmp_path / "work"
    make_run(work / "runs", "mod_arith/slstm/seed=0", finished=True)  # committed earlier
    make_run(work / "runs", "mod_arith/deltanet/seed=0", finished=True)  # new in this call
    make_run(work / "runs", "mod_arith/deltanet/seed=1", finished=False, step=70000)
    make_run(work / "runs", "mod_arith/mlstm/seed=0", finished=False, step=5000)
    call = tmp_path / "call"
    pack_partial(work / "runs", call, "--piece-mib", "0.001")
    with tarfile.open(call / "table3_runs.tar.gz", "w:gz") as tar:
        for summary in (work / "runs").rglob("summary.json"):
            for f in ("config.yaml", "summary.json", "eval.csv", "metrics.jsonl"):
                tar.add(summary.parent / f, arcname=str((summary.parent / f).relative_to(work)))
    return call


def test_import_copies_new_runs_and_keeps_only_unfinished_checkpoints(tmp_path: Path) -> None:
    """A call's new finished runs land in the results (the committed one is not touched), and
    the checkpoints to carry are exactly those of the runs still unfinished, byte for byte: a
    finished run left among them would be retrained from scratch, one dropped would be lost."""
    call = fake_call(tmp_path)
    assert len(list(call.glob("partial.tar.part*"))) > 1  # pieces joined in order
    results = tmp_path / "results"
    committed = make_run(results, "mod_arith/slstm/seed=0", finished=True)
    (committed / "summary.json").write_text('{"kept": true}')
    partial = tmp_path / "partial"
    make_run(partial, "stale", finished=True)  # the previous call's pieces go

    tool = load_import_tool()
    assert tool.main([str(call), "--results", str(results), "--partial", str(partial)]) == 0

    new = results / "mod_arith/deltanet/seed=0"
    assert sorted(p.name for p in new.iterdir()) == sorted(tool.RUN_FILES)
    assert json.loads((new / "summary.json").read_text()) == {"run": "mod_arith/deltanet/seed=0"}
    assert (committed / "summary.json").read_text() == '{"kept": true}'
    restored = tmp_path / "restored"
    restored.mkdir()
    blob = b"".join(p.read_bytes() for p in sorted(partial.glob("partial.tar.part*")))
    assert not (partial / "stale").exists()
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(restored, filter="data")
    runs = sorted(str(p.parent.parent.relative_to(restored / "runs"))
                  for p in restored.rglob("state.json"))
    assert runs == ["mod_arith/deltanet/seed=1", "mod_arith/mlstm/seed=0"]
    source = tmp_path / "work/runs/mod_arith/deltanet/seed=1/checkpoint/model.safetensors"
    assert (restored / "runs/mod_arith/deltanet/seed=1/checkpoint/model.safetensors"
            ).read_bytes() == source.read_bytes()


def test_import_drops_checkpoints_of_runs_committed_since(tmp_path: Path) -> None:
    """A run whose checkpoint was packed but which is committed as finished (from another call)
    is not carried again."""
    call = fake_call(tmp_path)
    results = tmp_path / "results"
    make_run(results, "mod_arith/deltanet/seed=1", finished=True)
    tool = load_import_tool()
    assert tool.main([str(call), "--results", str(results),
                      "--partial", str(tmp_path / "partial")]) == 0
    blob = b"".join(p.read_bytes() for p in sorted((tmp_path / "partial").glob("partial.tar*")))
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        names = {tool.run_of(n) for n in tar.getnames()} - {None}
    assert {str(n) for n in names} == {"mod_arith/mlstm/seed=0"}


def test_import_keeps_older_checkpoints_of_runs_the_call_did_not_bring(tmp_path: Path) -> None:
    """A run whose checkpoint the call left out (pack_partial.py's size limit) keeps the one
    carried before; a run the call brought takes the call's, whole (its older files do not
    survive beside it)."""
    call = fake_call(tmp_path)
    before = tmp_path / "before"
    make_run(before / "runs", "mod_arith/deltanet/seed=1", finished=False, step=55000)
    (before / "runs/mod_arith/deltanet/seed=1/checkpoint/stale.bin").write_bytes(b"old")
    make_run(before / "runs", "mod_arith/slstm/seed=2", finished=False, step=10000)
    partial = tmp_path / "partial"
    pack_partial(before / "runs", partial)
    tool = load_import_tool()
    assert tool.main([str(call), "--results", str(tmp_path / "results"),
                      "--partial", str(partial)]) == 0
    restored = tmp_path / "restored"
    restored.mkdir()
    blob = b"".join(p.read_bytes() for p in sorted(partial.glob("partial.tar.part*")))
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(restored, filter="data")
    steps = {str(p.parent.parent.relative_to(restored / "runs")):
             json.loads(p.read_text())["step"] for p in restored.rglob("state.json")}
    assert steps == {"mod_arith/deltanet/seed=1": 70000, "mod_arith/mlstm/seed=0": 5000,
                     "mod_arith/slstm/seed=2": 10000}
    assert not (restored / "runs/mod_arith/deltanet/seed=1/checkpoint/stale.bin").exists()


def test_import_refuses_a_directory_without_the_runs_archive(tmp_path: Path) -> None:
    """Pointing it at the wrong folder changes nothing and says why."""
    partial = tmp_path / "partial"
    make_run(partial, "kept", finished=True)
    tool = load_import_tool()
    assert tool.main([str(tmp_path), "--partial", str(partial)]) == 2
    assert (partial / "kept" / "summary.json").exists()


def test_import_keeps_the_call_logs_under_the_tag(tmp_path: Path) -> None:
    """--logs-tag keeps the call's log and the four logs the READMEs cite from logs.tar.gz,
    byte for byte under tagged names, and nothing else of the archive."""
    call = fake_call(tmp_path)
    (call / "call.log").write_text("[12:02:52] asked 8 runs for a checkpoint; 8 written\n")
    logs = {"rates.txt": "aggregate 875\n", "gpu_util.log": "0, 100 %\n",
            "cpu.log": "12:00:00 load 64.5 62.7 44.6 2235 69 04:39:06\n",
            "usr1_status.log": "SigCgt:\t0000000100000202\n", "sweep_tail.log": "not kept\n"}
    with tarfile.open(call / "logs.tar.gz", "w:gz") as tar:
        for name, text in logs.items():
            data = text.encode()
            info = tarfile.TarInfo(f"logs/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    results = tmp_path / "results"
    tool = load_import_tool()
    assert tool.main([str(call), "--results", str(results), "--partial", str(tmp_path / "p"),
                      "--logs-tag", "s13_call2"]) == 0
    kept = {p.name: p.read_text() for p in (results / "logs").iterdir()}
    assert kept == {"call_s13_call2.log": (call / "call.log").read_text(),
                    "rates_s13_call2.txt": logs["rates.txt"],
                    "gpu_util_s13_call2.log": logs["gpu_util.log"],
                    "cpu_s13_call2.log": logs["cpu.log"],
                    "usr1_status_s13_call2.log": logs["usr1_status.log"]}


def shell_function(script: str, name: str) -> str:
    """The text of one function of a bash script, from ``name() {`` to its closing ``}`` (the
    end of its first line, for a one-line function)."""
    text = (ROOT / script).read_text()
    start = text.index(f"\n{name}() {{") + 1
    line = text[start:text.index("\n", start) + 1]
    if line.rstrip().endswith("}"):
        return line
    return text[start:text.index("\n}\n", start) + 3]


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux /proc")
def test_only_processes_with_a_sigusr1_handler_are_asked_for_a_checkpoint() -> None:
    """table3_call.sh signals a training only once it has installed its SIGUSR1 handler (the
    signal's default action would end it): catches_usr1 reads that from /proc/PID/status."""
    check = shell_function("scripts/gpu/table3_call.sh", "catches_usr1")
    body = "import signal, sys, time\n{}print('ready', flush=True)\ntime.sleep(60)\n"
    for handler, expected in (("signal.signal(signal.SIGUSR1, lambda *a: None)\n", 0), ("", 1)):
        proc = subprocess.Popen([sys.executable, "-c", body.format(handler)],
                                stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "ready"
            rc = subprocess.run(["bash", "-c", f"{check}\ncatches_usr1 {proc.pid}"]).returncode
            assert rc == expected, handler or "no handler"
        finally:
            proc.kill()
            proc.wait()
    assert subprocess.run(["bash", "-c", f"{check}\ncatches_usr1 999999999"]).returncode != 0


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux /proc")
def test_a_call_asks_only_its_own_sweeps_runs_for_checkpoints(tmp_path: Path) -> None:
    """Two sweeps may run side by side from different WORK directories (one call each):
    train_pids, the processes request_checkpoints signals, are the trainings whose run
    directory lies under this call's WORK, started (--out) or resumed (--resume)."""
    pids = shell_function("scripts/gpu/table3_call.sh", "train_pids")
    body = "import time\nprint('ready', flush=True)\ntime.sleep(60)\n"
    argvs = {"own_new": ["--out", f"{tmp_path}/a/runs/parity/x/seed=0"],
             "own_resumed": ["--resume", f"{tmp_path}/a/runs/parity/x/seed=1"],
             "other": ["--out", f"{tmp_path}/ab/runs/parity/x/seed=0"]}
    procs = {name: subprocess.Popen([sys.executable, "-c", body, "statetrack", "train",
                                     "cfg.yaml", *argv], stdout=subprocess.PIPE, text=True)
             for name, argv in argvs.items()}
    try:
        for proc in procs.values():
            assert proc.stdout.readline().strip() == "ready"
        found = subprocess.run(["bash", "-c", f"WORK={tmp_path}/a\n{pids}train_pids"],
                               capture_output=True, text=True).stdout.split()
        assert sorted(map(int, found)) == sorted([procs["own_new"].pid,
                                                  procs["own_resumed"].pid])
    finally:
        for proc in procs.values():
            proc.kill()
            proc.wait()


@pytest.mark.skipif(not Path("/proc/loadavg").is_file(), reason="needs Linux /proc")
def test_the_cpu_log_lists_each_training_process_with_its_threads() -> None:
    """follow's cpu_line: the load average, then pid, thread count and CPU time of every process
    whose command line holds "statetrack train" (here a stand-in named so)."""
    line = shell_function("scripts/gpu/table3_call.sh", "cpu_line")
    code = "import threading, time\nthreading.Thread(target=time.sleep, args=(60,)).start()\n" \
           "print('ready', flush=True)\ntime.sleep(60)\n"
    proc = subprocess.Popen([sys.executable, "-c", code, "statetrack train stand-in"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        out = subprocess.run(["bash", "-c", f"{line}\ncpu_line"], capture_output=True,
                             text=True, check=True).stdout.split()
    finally:
        proc.kill()
        proc.wait()
    # time, "load", 3 averages, then pid, threads, CPU time for each training process (other
    # tests running beside this one may start real ones)
    assert out[1] == "load" and len(out) >= 8 and (len(out) - 5) % 3 == 0, out
    fields = out[5:]
    processes = {fields[i]: (fields[i + 1], fields[i + 2]) for i in range(0, len(fields), 3)}
    threads, cpu = processes[str(proc.pid)]
    assert int(threads) >= 2
    assert re.fullmatch(r"(\d+-)?(\d\d:)?\d\d:\d\d", cpu), cpu


def concurrent_json(path: Path, rates: dict[str, dict[int, float]]) -> Path:
    """A benchmarks/train_step.py --out file: a step record, then one concurrent record per K."""
    records: list[dict] = [{"op": "train_step", "model": "deltanet_neg", "ms": 2.85}]
    for model, by_k in rates.items():
        records += [{"op": "train_step_concurrent", "model": model, "k": k,
                     "total_steps_per_s": total, "steps_per_s": [total / k] * k}
                    for k, total in by_k.items()]
    path.write_text(json.dumps(records))
    return path


def test_compile_pays_compares_the_largest_packing_against_each_models_need(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The ratio is taken at the largest K (one copy alone says nothing about packed runs),
    each model must reach its own need, and a missing record decides nothing (exit 2)."""
    tool = load_script("scripts/gpu/compile_pays.py")
    off = concurrent_json(tmp_path / "off.json", {"deltanet_neg": {1: 330.0, 8: 440.0},
                                                  "mamba_neg": {8: 1100.0}})
    on = concurrent_json(tmp_path / "on.json", {"deltanet_neg": {1: 300.0, 8: 500.0},
                                                "mamba_neg": {8: 1050.0}})
    assert tool.main([str(off), str(on)]) == 0  # 500 / 440 = 1.14 >= 1.1, the default need
    assert "ratio 1.14" in capsys.readouterr().out
    assert tool.main([str(off), str(on), "--need", "deltanet_neg=1.2"]) == 1
    assert tool.main([str(off), str(on), "--need", "deltanet_neg=1.1",
                      "--need", "mamba_neg=1.0"]) == 1  # 1050 < 1100
    assert tool.main([str(off), str(on), "--need", "mlstm=1.0"]) == 2
    short = concurrent_json(tmp_path / "short.json", {"deltanet_neg": {1: 300.0}})
    assert tool.main([str(off), str(short)]) == 2  # K = 1 against K = 8
    (tmp_path / "cut.json").write_text('[{"op": "train_step_concurrent", "model"')
    assert tool.main([str(off), str(tmp_path / "cut.json")]) == 2
    with pytest.raises(SystemExit):
        tool.main([str(off), str(on), "--need", "deltanet_neg"])


def stand_in(tmp_path: Path, name: str, script: str) -> Path:
    """An executable ``tmp_path/bin/NAME`` running ``script`` (put its folder first on PATH,
    so the shell script under test calls it instead of the real command)."""
    fake = tmp_path / "bin" / name
    fake.parent.mkdir(exist_ok=True)
    fake.write_text(script)
    fake.chmod(0o755)
    return fake


FAKE_PYTHON = """#!/bin/bash
# stands in for python3 on the device: the GPU tests pass unless TESTS_FAIL is set, the step
# benchmark writes its --out file (DeltaNet 440 steps/s packed, ON_RATE with --set) after
# SLOW seconds, and everything else runs on the real interpreter
case "$*" in
  *"-m pytest"*) echo "2 passed in 9.0s"; [ -z "${TESTS_FAIL:-}" ] ;;
  *train_step.py*)
    sleep "${SLOW:-0}"; rate=440; out=
    while [ $# -gt 0 ]; do
      [ "$1" = --set ] && rate=$ON_RATE
      [ "$1" = --out ] && out=$2
      shift
    done
    printf '[{"op": "train_step_concurrent", "model": "deltanet_neg", "k": 8,
      "total_steps_per_s": %s}, {"op": "train_step_concurrent", "model": "mamba_neg", "k": 8,
      "total_steps_per_s": 1100}]' "$rate" >"$out" ;;
  *) exec "$REAL_PYTHON" "$@" ;;
esac
"""


@pytest.mark.parametrize(("compile_mode", "on_rate", "tests_fail", "slow", "expected"), [
    ("off", 600, "", 0, 1), ("on", 100, "", 0, 0), ("auto", 500, "", 0, 0),
    ("auto", 470, "", 0, 1), ("auto", 600, "1", 0, 1), ("auto", 600, "", 5, 1)])
def test_compile_check_decides_from_the_gpu_tests_and_the_packed_rates(
        tmp_path: Path, compile_mode: str, on_rate: int, tests_fail: str, slow: int,
        expected: int) -> None:
    """table3_call.sh's compile_check: never with COMPILE=off, always with on; with auto only
    when the compile GPU tests pass and compiled DeltaNet makes >= 1.1x the packed steps. A
    benchmark still running at the call's deadline (here already past: 1 s allowed, 5 s
    taken) is cut short and decides nothing."""
    fake = stand_in(tmp_path, "python3", FAKE_PYTHON)
    functions = "".join(shell_function("scripts/gpu/table3_call.sh", name)
                        for name in ("log", "stage_seconds", "compile_check"))
    deadline = "$(date +%s)" if slow else "$(( $(date +%s) + 3600 ))"
    script = (f'set -u\nOUT={tmp_path}/out; L=$OUT/logs; mkdir -p "$L"; deadline={deadline}\n'
              f"{functions}compile_check")
    env = {"PATH": f"{fake.parent}:/usr/bin:/bin", "REAL_PYTHON": sys.executable,
           "COMPILE": compile_mode, "ON_RATE": str(on_rate), "TESTS_FAIL": tests_fail,
           "SLOW": str(slow)}
    done = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True,
                          text=True)
    assert done.returncode == expected, done.stdout + done.stderr
    log = (tmp_path / "out" / "call.log").read_text() if compile_mode != "off" else ""
    if compile_mode == "auto" and not tests_fail and not slow:
        assert f"ratio {on_rate / 440:.2f}" in log
    if slow:
        assert "stay uncompiled (compile_pays exit 2)" in log
    if tests_fail:
        assert "compile GPU tests FAILED" in log


@pytest.mark.parametrize("sweep", ["sweeps/table3.yaml", "sweeps/deltanet_text_protocol.yaml"])
def test_lanes_start_one_sweep_per_gpu_with_only_their_points(tmp_path: Path, sweep: str) -> None:
    """LANES='GPUS:K:PATTERN,...;...': start_sweep launches one detached sweep of SWEEP per lane,
    on the lane's GPUs, with its --per-gpu and each pattern as --only and --first in the lane's
    order, and every run one share of the cores over all lanes' runs (a stand-in python3 records
    each launch)."""
    record = tmp_path / "launches.txt"
    fake = stand_in(tmp_path, "python3", '#!/bin/bash\n'
                    'echo "GPUS=$CUDA_VISIBLE_DEVICES OMP=$OMP_NUM_THREADS $*" >>"$RECORD"\n')
    stand_in(tmp_path, "nproc", "#!/bin/bash\necho 64\n")  # 64 cores over 4 + 2 × 8 runs
    functions = "".join(shell_function("scripts/gpu/table3_call.sh", name)
                        for name in ("log", "start_sweep", "start_lanes", "launch_sweep"))
    script = (f'set -u\nOUT={tmp_path}/out; L=$OUT/logs; mkdir -p "$L"; WORK={tmp_path}/work\n'
              f"PER_GPU=8; FIRST=(--first 'parity/*'); SWEEP={sweep}; RESULTS=results/none\n"
              f"PARTIAL={tmp_path}/partial\n{functions}start_sweep --set x.y=1")
    lanes = ("0:4:parity/deltanet_neg/*,mod_arith_brackets/deltanet_neg/*;"
             "1,2:8:mod_arith_brackets/mamba*")
    env = {"PATH": f"{fake.parent}:/usr/bin:/bin", "RECORD": str(record), "LANES": lanes}
    done = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    for _ in range(100):  # the launches are detached
        if record.exists() and len(record.read_text().splitlines()) == 2:
            break
        time.sleep(0.1)
    launches = sorted(record.read_text().splitlines())
    tail = f"{sweep} --out {tmp_path}/work/runs"
    assert launches == [
        f"GPUS=0 OMP=3 -m statetrack sweep {tail} --per-gpu 4 --only parity/deltanet_neg/* --first "
        "parity/deltanet_neg/* --only mod_arith_brackets/deltanet_neg/* --first "
        "mod_arith_brackets/deltanet_neg/* --set x.y=1",
        f"GPUS=1,2 OMP=3 -m statetrack sweep {tail} --per-gpu 8 --only mod_arith_brackets/mamba* "
        "--first mod_arith_brackets/mamba* --set x.y=1"]
    assert (tmp_path / "work" / "code" / sweep).is_file()


@pytest.mark.parametrize("time_left", [3600, 100])
def test_the_step_benchmark_waits_for_its_lane_and_gives_up_near_the_deadline(
        tmp_path: Path, time_left: int) -> None:
    """BENCH_GPU=1: bench_when_free times the steps on GPU 1 only once the lane that ran there
    has ended (its sweep's pid), and not at all when under 200 s are left before the
    deadline while it still runs."""
    record = tmp_path / "calls.txt"
    fake = stand_in(tmp_path, "python3",
                    '#!/bin/bash\necho "GPUS=$CUDA_VISIBLE_DEVICES $*" >>"$RECORD"\n'
                    'echo "| model | ms |"\n')
    work = tmp_path / "work"
    work.mkdir()
    # the lane's sweep is no child of the script (setsid nohup): orphan it, so it is reaped
    lane_pid = int(subprocess.run(["bash", "-c", "sleep 2 >/dev/null 2>&1 & echo $!"],
                                  capture_output=True, text=True, check=True).stdout)
    (work / "lane0.gpus").write_text("0\n")
    (work / "sweep_lane0.pid").write_text("999999999\n")
    (work / "lane1.gpus").write_text("1\n")
    (work / "sweep_lane1.pid").write_text(f"{lane_pid}\n")
    functions = "".join(shell_function("scripts/gpu/table3_call.sh", name)
                        for name in ("log", "bench_when_free", "bench_steps"))
    script = (f'set -u\nOUT={tmp_path}/out; L=$OUT/logs; mkdir -p "$L"; WORK={work}\n'
              f"deadline=$(( $(date +%s) + {time_left} ))\n"
              f"{functions}(while kill -0 {lane_pid} 2>/dev/null; do sleep 0.2; done; "
              f"date +%s.%N >{tmp_path}/lane_end) &\nbench_when_free 1")
    env = {"PATH": f"{fake.parent}:/usr/bin:/bin", "RECORD": str(record), "BENCH_POLL": "0.5"}
    done = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    log = (tmp_path / "out" / "call.log").read_text()
    if time_left < 200:
        assert "still running: no step benchmark" in log and not record.exists()
        return
    calls = record.read_text().splitlines()
    assert [c.split()[0] for c in calls] == ["GPUS=1", "GPUS=1"]
    assert "benchmarks/train_step.py --out" in calls[0]
    assert "--set training.compile=true" in calls[1]
    assert record.stat().st_mtime >= float((tmp_path / "lane_end").read_text()) - 0.3


@pytest.mark.parametrize("sweep_running", [False, True])
def test_run_times_the_steps_before_it_starts_a_sweep(tmp_path: Path,
                                                      sweep_running: bool) -> None:
    """BENCH_GPU=1 with no sweep running: `run` (start_or_follow) times the steps on GPU 1
    before the sweep starts, not beside it; with a sweep running it only follows, and leaves
    the timing to bench_when_free (in the background, its pid in $bench)."""
    record = tmp_path / "calls.txt"
    fake = stand_in(tmp_path, "python3", '#!/bin/bash\nsleep 0.3; '
                    'echo "GPUS=${CUDA_VISIBLE_DEVICES-unset} $*" >>"$RECORD"\n')
    functions = "".join(shell_function("scripts/gpu/table3_call.sh", name)
                        for name in ("log", "bench_steps", "start_or_follow"))
    stubs = (f"sweep_alive() {{ {'true' if sweep_running else 'false'}; }}\n"
                 "pretest() { true; }\ncompile_check() { false; }\n"
                 'start_sweep() { echo "start_sweep GPUS=${CUDA_VISIBLE_DEVICES-unset}" '
                 '>>"$RECORD"; }\n'
                 'bench_when_free() { echo "bench_when_free $1" >>"$RECORD"; }\n')
    script = (f'set -u\nOUT={tmp_path}/out; L=$OUT/logs; mkdir -p "$L"\n'
              f"deadline=$(( $(date +%s) + 3600 )); bench=\n{functions}{stubs}"
              'start_or_follow\n[ -n "$bench" ] && wait "$bench"\necho "bench=$bench"')
    env = {"PATH": f"{fake.parent}:/usr/bin:/bin", "RECORD": str(record), "BENCH_GPU": "1"}
    done = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    calls = record.read_text().splitlines()
    if sweep_running:
        assert calls == ["bench_when_free 1"]
        assert done.stdout.strip() != "bench="
        return
    assert [c.split()[0] for c in calls] == ["GPUS=1", "GPUS=1", "start_sweep"]
    assert "benchmarks/train_step.py --out" in calls[0]
    assert "--set training.compile=true" in calls[1]
    assert calls[2] == "start_sweep GPUS=unset"  # the benchmark's GPU does not leak
    assert "before starting one" in (tmp_path / "out" / "call.log").read_text()


@pytest.mark.parametrize("works", [True, False])
def test_a_running_mps_daemon_is_shared_not_started_again(tmp_path: Path, works: bool) -> None:
    """start_mps on a machine whose MPS daemon an earlier call started (its control socket
    exists): if a CUDA computation through it works, the new runs share it, and no second
    daemon is started (that fails) nor the first quit; if not, it tries to start one and,
    that failing, quits it and leaves the runs without MPS."""
    record = tmp_path / "calls.txt"
    stand_in(tmp_path, "nvidia-cuda-mps-control",
             '#!/bin/bash\necho "mps-control $*" >>"$RECORD"; [ "$*" != -d ]\n')
    stand_in(tmp_path, "python3", f"#!/bin/bash\n{'true' if works else 'false'}\n")
    pipe = tmp_path / "mps" / "pipe"
    pipe.mkdir(parents=True)
    functions = "".join(shell_function("scripts/gpu/table3_call.sh", name)
                        for name in ("log", "start_mps", "mps_works"))
    script = (f'set -u\nOUT={tmp_path}/out; L=$OUT/logs; mkdir -p "$L"; MPS_DIR={pipe.parent}\n'
              f'{functions}start_mps\necho "pipe=${{CUDA_MPS_PIPE_DIRECTORY-unset}}"')
    env = {"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", "RECORD": str(record)}
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(pipe / "control"))
        done = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    log = (tmp_path / "out" / "call.log").read_text()
    if works:
        assert not record.exists()
        assert f"pipe={pipe}" in done.stdout
        assert "an earlier call's daemon" in log
    else:
        assert record.read_text().splitlines() == ["mps-control -d", "mps-control "]
        assert "pipe=unset" in done.stdout
        assert "MPS did not start" in log


SHELL_SCRIPTS = sorted(p.relative_to(ROOT) for p in ROOT.glob("scripts/**/*.sh"))


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=str)
def test_every_shell_script_parses(script: Path) -> None:
    """`bash -n`: a device call script with a syntax error would fail only on the GPU machine,
    after its start-up time was spent."""
    result = subprocess.run(["bash", "-n", str(ROOT / script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
