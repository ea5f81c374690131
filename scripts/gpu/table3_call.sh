#!/bin/bash
# One device call of the Table 3 sweep (sweeps/table3.yaml) on a machine of one or more GPUs.
#
#   bash scripts/gpu/table3_call.sh check SECONDS    # GPU tests + steps/s per model, then run
#   bash scripts/gpu/table3_call.sh run SECONDS      # (re)start or keep following the sweep
#   (env: PER_GPU runs on each GPU, FIRST_ORDER patterns to start first, CUDA_VISIBLE_DEVICES,
#    PRETEST the GPU tests `run` passes before it starts the sweep; empty: none;
#    MPS=1 starts NVIDIA's Multi-Process Service first, so the runs' kernels share the GPU's SMs
#    at once instead of taking turns; it falls back to plain processes when MPS does not start;
#    MPS=sweep leaves it to `statetrack sweep --mps` instead, which stops the sweep if MPS fails;
#    COMPILE=auto gives the runs a new sweep starts `training.compile` if its GPU tests pass and
#    it pays (compile_check), COMPILE=on without the check, off (default) never; resumed runs
#    keep the setting in their own config.yaml;
#    LANES='GPUS:K:PATTERN,PATTERN;GPUS:K:PATTERN' runs one sweep per lane instead, each on its
#    own GPUs (CUDA_VISIBLE_DEVICES=GPUS) with --per-gpu K and only the points its patterns
#    match, started in their order: so that each GPU gets runs that finish before the machine
#    goes back, which a single queue over all GPUs cannot plan; BENCH_GPU=G times each model's
#    step on GPU G alone: once the lane there has finished if a sweep is running, else before
#    `run` starts one (start_or_follow); ADD_LANES, in
#    LANES' form, starts more lanes beside a sweep that is already running;
#    SWEEP, RESULTS and PARTIAL run another sweep file the same way: its committed runs under
#    RESULTS, its checkpoints carried in PARTIAL; e.g. SWEEP=sweeps/deltanet_text_protocol.yaml
#    RESULTS=results/deltanet_text_protocol PARTIAL=.text_protocol_partial, imported with
#    `table3_import.py CALL_DIR --results RESULTS --partial PARTIAL`. FIRST_ORDER's default
#    patterns are Table 3's; another sweep starts its points in the file's order)
#
# The sweep runs detached (setsid) from a private copy of the code under $WORK, so it outlives
# the call while the machine stays warm; a later call finds it running and only follows it. On a
# fresh machine `run` starts it again: it resumes, skipping the points whose run directories
# came back earlier and are committed under results/table3 (copied into $WORK/runs first), and
# resuming the unfinished ones from the checkpoints the last call brought back. After every call,
# `python3 scripts/gpu/table3_import.py CALL_DIR` copies its new finished runs into results/table3
# and its checkpoints (less finished runs) into .table3_partial/ (git-ignored); name that in the
# next run's `carry`. A finished run not copied in before the next call is trained again.
# .table3_partial/ lives only as long as the checkout: session 14 began in a new one and its
# eight runs started over. Plan each session's LANES so that the runs it starts finish in it.
# Each call ends by packing every finished run (config.yaml, summary.json, eval.csv, metrics.jsonl; no
# checkpoints) into $OUT/table3_runs.tar.gz, the newest checkpoints of the unfinished runs into
# $OUT/partial.tar.part* (scripts/gpu/pack_partial.py), plus the sweep log and a GPU trace.
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; L=$OUT/logs; mkdir -p "$L"  # at most 8 files come back: logs go in one tar
WORK=${WORK:-/tmp/st_table3}
SWEEP=${SWEEP:-sweeps/table3.yaml}
RESULTS=${RESULTS:-results/table3}  # the sweep's runs committed so far
PARTIAL=${PARTIAL:-.table3_partial}  # the checkpoints of its unfinished runs, carried
MPS_DIR=${MPS_DIR:-/tmp/st_mps}  # the MPS daemon's pipe/ and log/, shared by the calls
PER_GPU=${PER_GPU:-3}  # at 4 the GPUs were already at 100%; fewer runs each finish sooner
phase=$1; budget=$2
deadline=$(( $(date +%s) + budget - 60 ))  # leave time to checkpoint (up to 30 s) and pack
FIRST=(--first 'parity/*' --first 'mod_arith/deltanet_neg/*' --first 'mod_arith/mamba_neg/*'
       --first 'mod_arith/deltanet/*' --first 'mod_arith/mamba/*' --first 'mod_arith/slstm/*')
[ "$SWEEP" = sweeps/table3.yaml ] || FIRST=()
if [ -n "${FIRST_ORDER:-}" ]; then  # e.g. FIRST_ORDER='mod_arith/mamba_neg/* mod_arith/mamba/*'
  read -r -a patterns <<<"$FIRST_ORDER"; FIRST=()  # read does not glob the patterns
  for p in "${patterns[@]}"; do FIRST+=(--first "$p"); done
fi

log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$OUT/call.log"; }

check() {
  # GPU 0: the CUDA-graph tests (they decide how the sweep runs); GPU 1: every other GPU test;
  # GPUs 2, 3: benchmarks/train_step.py (eager vs graphed ms/step per model, top kernels).
  local n; n=$(nvidia-smi -L | wc -l)
  local g1=$(( 1 % n )) g2=$(( 2 % n )) g3=$(( 3 % n ))
  export PYTHONPATH=$PWD/src
  (CUDA_VISIBLE_DEVICES=0 timeout 240 python3 -m pytest tests/test_graphs.py -m gpu -q \
     >"$L/test_graphs.log" 2>&1; echo "rc=$?" >>"$L/test_graphs.log") &
  (CUDA_VISIBLE_DEVICES=$g1 timeout 400 python3 -m pytest tests -m gpu -q \
     --ignore=tests/test_graphs.py >"$L/test_gpu.log" 2>&1; echo "rc=$?" >>"$L/test_gpu.log") &
  (CUDA_VISIBLE_DEVICES=$g2 timeout 400 python3 benchmarks/train_step.py --profile 12 \
     --models deltanet_neg deltanet mamba_neg transformer --out "$L/train_step_a.json") \
     >"$L/train_step_a.txt" 2>&1 &
  (CUDA_VISIBLE_DEVICES=$g3 timeout 400 python3 benchmarks/train_step.py --profile 12 \
     --models mamba mlstm slstm --out "$L/train_step_b.json") >"$L/train_step_b.txt" 2>&1 &
  wait
  tail -n 3 "$L"/test_*.log | tee -a "$OUT/call.log"
  grep '^|' "$L"/train_step_*.txt | tee -a "$OUT/call.log"
  grep -q '^rc=0' "$L/test_graphs.log"
}

pretest() {
  # Before `run` starts the sweep: the GPU tests of the kernels whose code changed since their
  # last GPU run (PRETEST; session 6 changed the selective scan backward's reverse scan, which
  # Mamba trains on, to tl.flip + a forward scan). PRETEST= (empty) skips them; `check` runs
  # every GPU test instead.
  local tests=${PRETEST-tests/test_scan_triton.py}
  [ -z "$tests" ] && return 0
  # shellcheck disable=SC2086  # a list of test files
  PYTHONPATH=$PWD/src timeout 240 python3 -m pytest $tests -m gpu -q -n 6 -p no:cacheprovider \
    >"$L/pretest.log" 2>&1
  local rc=$?
  log "pre-tests ($tests): $(grep . "$L/pretest.log" | tail -n 1)"
  return $rc
}

stage_seconds() {
  # seconds a compile_check stage may run: 300, or what is left until 90 s before the deadline
  local left=$(( deadline - $(date +%s) - 90 ))
  if [ "$left" -lt 1 ]; then echo 1; elif [ "$left" -lt 300 ]; then echo "$left"; else echo 300; fi
}

compile_check() {
  # Whether the runs this call starts get training.compile: tests/test_compile.py's GPU tests,
  # then 8 packed copies of DeltaNet [-1, 1] and Mamba [-1, 1] steps without and with it
  # (benchmarks/train_step.py); compiled DeltaNet must make >= 1.1x the steps, Mamba not fewer.
  # One copy runs first: it compiles, and the eight after it load its kernels from the
  # inductor and Triton caches instead of all compiling at once. Each stage may take at most
  # 300 s and must end 90 s before the call's deadline, so the sweep still starts in this call
  # (a stage cut short decides nothing: new runs stay uncompiled).
  case "${COMPILE:-off}" in
    on) log "COMPILE=on: new runs get training.compile=true"; return 0 ;;
    auto) ;;
    *) return 1 ;;
  esac
  export PYTHONPATH=$PWD/src
  if ! timeout "$(stage_seconds)" python3 -m pytest tests/test_compile.py -m gpu -q \
      -p no:cacheprovider >"$L/compile_tests.log" 2>&1; then
    log "compile GPU tests FAILED ($L/compile_tests.log): new runs stay uncompiled"; return 1
  fi
  log "compile GPU tests: $(grep . "$L/compile_tests.log" | tail -n 1)"
  local mode set
  for mode in off on; do
    set=(); [ "$mode" = on ] && set=(--set training.compile=true)
    timeout "$(stage_seconds)" python3 benchmarks/train_step.py --models deltanet_neg mamba_neg \
      --only-concurrent --concurrent 1 8 --mps --seconds 8 "${set[@]}" \
      --out "$L/compile_$mode.json" >"$L/compile_$mode.txt" 2>&1
  done
  python3 scripts/gpu/compile_pays.py "$L/compile_off.json" "$L/compile_on.json" \
    --need deltanet_neg=1.1 --need mamba_neg=1.0 2>&1 | tee -a "$OUT/call.log"
  local pays=${PIPESTATUS[0]}
  if [ "$pays" = 0 ]; then log "new runs get training.compile=true"; return 0; fi
  log "new runs stay uncompiled (compile_pays exit $pays)"; return 1
}

start_mps() {
  # One MPS control daemon for the machine; the sweep's processes inherit the pipe directory.
  # An earlier call's daemon on this warm machine is shared if it works: starting a second one
  # fails, and quitting it dropped session 15's new runs to taking turns on the GPU.
  export CUDA_MPS_PIPE_DIRECTORY=$MPS_DIR/pipe CUDA_MPS_LOG_DIRECTORY=$MPS_DIR/log
  mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
  if [ -S "$CUDA_MPS_PIPE_DIRECTORY/control" ] && mps_works; then
    log "MPS is up (an earlier call's daemon); the new runs share it"; return
  fi
  if nvidia-cuda-mps-control -d >>"$L/mps.log" 2>&1 && mps_works; then
    log "MPS is up: $(echo get_server_list | nvidia-cuda-mps-control 2>&1 | tr '\n' ' ')"
  else
    log "MPS did not start ($L/mps.log); the runs take turns on the GPU"
    echo quit | nvidia-cuda-mps-control >/dev/null 2>&1
    unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
  fi
}

mps_works() {
  # a CUDA computation through the daemon of $CUDA_MPS_PIPE_DIRECTORY
  timeout 60 python3 -c \
    "import torch; x = torch.ones(4, device='cuda'); assert (x + 1).sum().item() == 8" \
    >>"$L/mps.log" 2>&1
}

start_sweep() {
  local extra=("$@")
  [ "${MPS:-0}" = 1 ] && start_mps
  [ "${MPS:-0}" = sweep ] && extra+=(--mps)
  mkdir -p "$WORK"
  if [ ! -d "$WORK/runs" ]; then
    mkdir -p "$WORK/runs"
    [ -d "$RESULTS" ] && cp -r "$RESULTS"/*/ "$WORK/runs/"  # the runs committed so far
    log "seeded $WORK/runs with $(find "$WORK/runs" -name summary.json | wc -l) committed runs"
    if compgen -G "$PARTIAL/partial.tar.part*" >/dev/null; then  # carried: see the top
      cat "$PARTIAL"/partial.tar.part* | tar -x -C "$WORK"
      log "unpacked the checkpoints of $(tar -t -f <(cat "$PARTIAL"/partial.tar.part*) \
        | grep -c 'state.json$') unfinished runs to resume"
    fi
  fi
  rm -rf "$WORK/code"; mkdir -p "$WORK/code"
  cp -r src configs sweeps "$WORK/code/"
  if [ -z "${LANES:-}" ]; then
    log "starting the sweep: --per-gpu $PER_GPU ${extra[*]}"
    launch_sweep "$WORK/sweep.log" --per-gpu "$PER_GPU" "${FIRST[@]}" "${extra[@]}"
  else
    start_lanes "$LANES" "${extra[@]}"
  fi
  date +%s >>"$WORK/started_at"
}

start_lanes() {
  # one detached sweep per lane of $1 (LANES' form), numbered on from the lanes started before.
  # Each run gets one share of the cores over all the lanes' runs (OMP_NUM_THREADS, unless set):
  # statetrack sweep alone would count only its own lane's runs, and session 19's three runs in
  # two lanes got 16 + 16 + 32 intra-op threads on 32 cores (load average 64).
  local lane gpus k patterns p args list lanes i=0 runs=0 threads spec=$1; shift
  IFS=';' read -r -a lanes <<<"$spec"
  for lane in "${lanes[@]}"; do
    IFS=: read -r gpus k patterns <<<"$lane"
    IFS=, read -r -a list <<<"$gpus"
    runs=$(( runs + k * ${#list[@]} ))
  done
  threads=${OMP_NUM_THREADS:-$(( $(nproc) / runs ))}
  [ "$threads" -ge 1 ] || threads=1
  for lane in "${lanes[@]}"; do
    while [ -e "$WORK/lane$i.gpus" ]; do i=$((i + 1)); done
    IFS=: read -r gpus k patterns <<<"$lane"
    args=(); IFS=, read -r -a list <<<"$patterns"
    for p in "${list[@]}"; do args+=(--only "$p" --first "$p"); done
    log "starting lane $i on GPU(s) $gpus: --per-gpu $k ${args[*]} $* ($threads threads a run)"
    echo "$gpus" >"$WORK/lane$i.gpus"
    OMP_NUM_THREADS=$threads CUDA_VISIBLE_DEVICES=$gpus launch_sweep "$WORK/sweep_lane$i.log" \
      --per-gpu "$k" "${args[@]}" "$@"
  done
}

add_lanes() {
  # ADD_LANES (LANES' form): more lanes beside the running sweep, from its copy of the code and
  # through its MPS daemon, if it has one (start_mps' directories)
  if [ -S "$MPS_DIR/pipe/control" ]; then
    export CUDA_MPS_PIPE_DIRECTORY=$MPS_DIR/pipe CUDA_MPS_LOG_DIRECTORY=$MPS_DIR/log
  fi
  start_lanes "$ADD_LANES"
}

launch_sweep() {
  # one detached `statetrack sweep` over $WORK/runs, logging to $1
  local sweep_log=$1; shift
  (cd "$WORK/code" && PYTHONPATH=$WORK/code/src setsid nohup python3 -m statetrack sweep \
     "$SWEEP" --out "$WORK/runs" "$@" >>"$sweep_log" 2>&1 </dev/null &
   echo $! >"${sweep_log%.log}.pid")  # setsid and nohup exec: the sweep's own pid
}

bench_when_free() {
  # BENCH_GPU=G: once the lane on GPU G has finished (LANES), time each model's step there
  # alone (bench_steps) while the other lanes go on; given up when less than 200 s are left
  # before the deadline
  local gpu=$1 f n pid=
  for f in "$WORK"/lane*.gpus; do
    n=${f##*/lane}; n=${n%.gpus}
    [ "$(cat "$f" 2>/dev/null)" = "$gpu" ] && pid=$(cat "$WORK/sweep_lane$n.pid")
  done
  if [ -z "$pid" ]; then log "no lane ran on GPU $gpu alone: no step benchmark"; return; fi
  while kill -0 "$pid" 2>/dev/null; do
    if [ $(( deadline - $(date +%s) )) -lt 200 ]; then
      log "the lane on GPU $gpu is still running: no step benchmark"; return; fi
    sleep "${BENCH_POLL:-10}"
  done
  log "the lane on GPU $gpu has finished: timing each model's step there"
  bench_steps "$gpu"
}

bench_steps() {
  # each model's training step on GPU $1 (benchmarks/train_step.py), then DeltaNet [-1, 1] and
  # Mamba [-1, 1] compiled; nothing else may run on that GPU meanwhile (run it in a subshell)
  export CUDA_VISIBLE_DEVICES=$1 PYTHONPATH=$PWD/src
  timeout $(( deadline - $(date +%s) - 20 )) python3 benchmarks/train_step.py \
    --out "$L/train_step_all.json" >"$L/train_step_all.txt" 2>&1
  log "step benchmark: exit $?"; grep '^|' "$L/train_step_all.txt" | tee -a "$OUT/call.log"
  timeout $(( deadline - $(date +%s) - 20 )) python3 benchmarks/train_step.py \
    --models deltanet_neg mamba_neg --set training.compile=true \
    --out "$L/train_step_compiled.json" >"$L/train_step_compiled.txt" 2>&1
  log "compiled step benchmark: exit $?"
  grep '^|' "$L/train_step_compiled.txt" | tee -a "$OUT/call.log"
}

start_or_follow() {
  # `run`: follow the sweep if one is running, else start it. BENCH_GPU=G with no sweep running
  # times the steps first, before anything else uses the GPU (session 15's call 3 found its
  # lane ended and started the whole sweep beside the benchmark, so the benchmark timed
  # three sLSTM runs' contention); with a sweep running, after G's lane (bench_when_free).
  if sweep_alive; then
    log "the sweep is running; following it"
    [ -n "${ADD_LANES:-}" ] && add_lanes
    [ -n "${BENCH_GPU:-}" ] && { bench_when_free "$BENCH_GPU" & bench=$!; }
    return 0
  fi
  if [ -n "${BENCH_GPU:-}" ]; then
    log "no sweep is running: timing each model's step on GPU $BENCH_GPU before starting one"
    (bench_steps "$BENCH_GPU")  # a subshell: its CUDA_VISIBLE_DEVICES stays there
  fi
  if pretest; then
    local extra=(); compile_check && extra=(--set training.compile=true)
    start_sweep "${extra[@]}"
  else log "pre-tests FAILED ($L/pretest.log): the sweep is not started"; fi
}

# [s]: the pattern must not match the command line of the shell that runs this script
sweep_alive() { pgrep -f "[s]tatetrack sweep $SWEEP" >/dev/null; }

# the training processes of this sweep: their command lines name a run directory under
# $WORK/runs (--out or --resume), so another sweep's runs beside it (another WORK) are left alone
train_pids() { pgrep -f "[s]tatetrack train .*$WORK/runs/"; }

catches_usr1() {
  # whether process $1 has a SIGUSR1 handler installed: bit 9 (signal 10) of SigCgt in
  # /proc/PID/status. Before the trainer installs its handler, SIGUSR1 would end the process.
  local mask
  mask=$(awk '/^SigCgt:/ {print $2}' "/proc/$1/status" 2>/dev/null)
  [ -n "$mask" ] && (( (16#$mask >> 9) & 1 ))
}

request_checkpoints() {
  # Each training process saves its current step (SIGUSR1, statetrack.experiment.trainer), so
  # a call that ends the session does not lose the steps since the last periodic checkpoint
  # (session 7: 1,600-4,800 steps per run, 10-20% of a call). Only processes that have the
  # handler are signalled (session 8 skipped runs under 60 s old instead, and so lost a short
  # call's steps).
  local marker=$WORK/.checkpoint_request n=0 pid waited=0
  touch "$marker"
  for pid in $(train_pids); do
    catches_usr1 "$pid" && kill -USR1 "$pid" && n=$((n + 1))
  done
  sleep 5  # then each process's signal masks and command line: session 12's two sLSTM runs
  # caught SIGUSR1 yet wrote no checkpoint; nothing was pending or blocked, and their handlers
  # were LLVM's set (statetrack.experiment.trainer._checkpoint_on_signal now rearms)
  for pid in $(train_pids); do
    { echo "pid $pid: $(tr '\0' ' ' <"/proc/$pid/cmdline" | cut -c1-200)"
      grep -E '^(SigPnd|ShdPnd|SigBlk|SigIgn|SigCgt|Threads):' "/proc/$pid/status"
      for t in /proc/"$pid"/task/*; do
        echo "  task ${t##*/} $(tr -d '\n' <"$t/comm") $(awk '/^(SigPnd|SigBlk):/ {printf "%s %s ", $1, $2}' "$t/status")"
      done; } >>"$L/usr1_status.log" 2>&1
  done
  while [ "$waited" -lt 30 ] && \
      [ "$(find "$WORK/runs" -name state.json -newer "$marker" | wc -l)" -lt "$n" ]; do
    sleep 1; waited=$((waited + 1))
  done
  log "asked $n runs for a checkpoint; $(find "$WORK/runs" -name state.json -newer "$marker" \
    | wc -l) written in ${waited} s"
}

pack() {
  # Checkpoints of the unfinished runs first, then the finished runs: the sweep keeps running
  # while this packs, and a run that finishes in between then comes back in both (harmless)
  # instead of in neither (session 5 lost two finished runs that way, packed in this order's
  # reverse, and brought them back with a second call).
  PYTHONPATH=$PWD/src python3 scripts/gpu/pack_partial.py "$WORK/runs" "$OUT" | tee -a "$OUT/call.log"
  (cd "$WORK" && find runs -name summary.json -printf '%h\n' | sort >"$L/finished.txt")
  log "finished runs: $(wc -l <"$L/finished.txt")"
  (cd "$WORK" && for f in config.yaml summary.json eval.csv metrics.jsonl; do
     sed "s|\$|/$f|" "$L/finished.txt"; done) >"$WORK/files.txt"
  (cd "$WORK" && tar -czf "$OUT/table3_runs.tar.gz" -T "$WORK/files.txt")
  for f in "$WORK"/sweep*.log; do
    tr '\r' '\n' <"$f" | tail -n 300 >"$L/$(basename "$f" .log)_tail.log"
  done
  # the last lines of every run's own log (RUN_DIR.log): whether and when a requested
  # checkpoint was written (session 11: 1-2 of 8 runs per call were not, within the 30 s)
  mkdir -p "$L/run_logs"
  (cd "$WORK/runs" && find . -name '*.log' | while read -r f; do
     tr '\r' '\n' <"$f" | tail -n 40 >"$L/run_logs/$(echo "${f#./}" | tr '/=' '__')"
   done)
  python3 scripts/gpu/run_rates.py "$WORK/runs" | tee "$L/rates.txt" | tail -n 1 | tee -a "$OUT/call.log"
  cp -r "$MPS_DIR/log" "$L/mps_log" 2>/dev/null
  (cd "$WORK/code" && PYTHONPATH=$WORK/code/src python3 -m statetrack sweep "$SWEEP" \
     --out "$WORK/runs" --dry-run >"$L/points.txt" 2>&1; tail -n 1 "$L/points.txt") \
     | tee -a "$OUT/call.log"
  cp "$WORK/started_at" "$L/started_at.txt" 2>/dev/null
  tar -czf "$OUT/logs.tar.gz" -C "$OUT" logs && rm -rf "$L"
}

follow() {
  while [ "$(date +%s)" -lt "$deadline" ] && sweep_alive; do
    nvidia-smi --query-gpu=index,utilization.gpu,memory.used --format=csv,noheader \
      | tr '\n' ' ' | sed "s/^/$(date +%H:%M:%S) /;s/$/\n/" >>"$L/gpu_util.log"
    cpu_line >>"$L/cpu.log"
    sleep 20
  done
}

cpu_line() {
  # the load average, then each training process's pid, threads and CPU time used so far
  # ([[DD-]HH:]MM:SS): session 19's runs at batch 1024 left their GPUs 13-70% busy (medians
  # 27% and 55%) while each process held 780-1560% CPU (top), and what those threads did was
  # not known
  local pids; pids=$(pgrep -d, -f "[s]tatetrack train")
  echo "$(date +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)" \
    "${pids:+$(ps -o pid=,nlwp=,time= -p "$pids" | tr -s ' \n' ' ')}"
}

bench=  # the pid of bench_when_free, if start_or_follow started it
case "$phase" in
  check)
    if check; then log "graph tests passed"; extra=(); else
      log "graph tests FAILED: the sweep runs eagerly"; extra=(--set training.cuda_graphs=false); fi
    sweep_alive || start_sweep "${extra[@]}" ;;
  run) start_or_follow ;;
  *) echo "usage: $0 check|run SECONDS" >&2; exit 2 ;;
esac
follow
sweep_alive && request_checkpoints
[ -n "$bench" ] && wait "$bench"
pack
