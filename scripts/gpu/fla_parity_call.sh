#!/bin/bash
# One device call of the fla side-by-side on parity: flash-linear-attention's own DeltaNet model,
# [0, 1] and [−1, 1], seeds 0–2, with the paper's norm eps (1e-6), each started from the weights
# statetrack's model of that seed starts from and trained on the same batches
# (scripts/gpu/fla_deltanet_train.py), beside results/deltanet_parity_eps (statetrack's model,
# same configs, same seeds). Three runs a GPU on two GPUs, under MPS. Carry .whl (fla-core and
# flash-linear-attention 0.6.0: `python3 -m pip download --no-deps ...`, see the device notes).
# Written in session 26 before any of these ran: the runs are a check of statetrack's DeltaNet
# against fla's, reported beside Table 3 (results/fla_deltanet_parity/) and never moved into it,
# whatever they score.
#
#   bash scripts/gpu/fla_parity_call.sh SECONDS
#
# The runs start detached (setsid) the first time and outlive the call while the machine stays
# warm; a later call finds them running and only waits. A run has no checkpoint: one that has not
# finished when the machine goes back is lost. The call waits until every run has finished or
# SECONDS have passed (or none is running), then packs the finished runs (config.yaml, summary.json, eval.csv,
# metrics.jsonl) into $OUT/fla_runs.tar.gz and the logs into $OUT/logs.tar.gz.
set -u
OUT=${OUT:-/tmp/out}; L=$OUT/logs; mkdir -p "$L"
RUNS=${RUNS:-/tmp/fla_runs}
deadline=$(( $(date +%s) + $1 - 20 ))
log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$OUT/call.log"; }

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl >"$L/pip.log" 2>&1 || { log "pip failed"; cat "$L/pip.log"; exit 1; }
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
export CUDA_MPS_PIPE_DIRECTORY=/tmp/st_mps/pipe CUDA_MPS_LOG_DIRECTORY=/tmp/st_mps/log
mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY" "$RUNS/logs"
if [ ! -S "$CUDA_MPS_PIPE_DIRECTORY/control" ]; then
  nvidia-cuda-mps-control -d >>"$L/mps.log" 2>&1 && log "MPS started" || {
    log "MPS did not start: the runs take turns"; unset CUDA_MPS_PIPE_DIRECTORY; }
fi

i=0
for seed in 0 1 2; do
  for model in deltanet deltanet_neg; do
    dir=$RUNS/parity/fla_$model/seed=$seed
    name=${model}_seed$seed
    if [ ! -f "$RUNS/logs/$name.started" ]; then
      touch "$RUNS/logs/$name.started"
      CUDA_VISIBLE_DEVICES=$(( i % 2 )) OMP_NUM_THREADS=4 setsid nohup python3 \
        scripts/gpu/fla_deltanet_train.py "configs/chomsky/parity/$model.yaml" --out "$dir" \
        --set training.seed=$seed --set model.norm_eps=1e-6 \
        --set model.mixer_options.norm_eps=1e-6 >"$RUNS/logs/$name.log" 2>&1 &
      log "started $name on GPU $(( i % 2 ))"
    fi
    i=$(( i + 1 ))
  done
done

while [ "$(date +%s)" -lt "$deadline" ]; do
  done_n=$(find "$RUNS/parity" -name summary.json 2>/dev/null | wc -l)
  [ "$done_n" -ge 6 ] && break
  pgrep -f fla_deltanet_train.py >/dev/null || { log "no run is running"; break; }
  sleep 30
  log "$done_n of 6 finished; $(for f in "$RUNS"/logs/*.log; do
    echo -n "$(basename "$f" .log): $(grep -o 'step [0-9]*' "$f" | tail -1 | cut -d' ' -f2) "; done)"
done
for f in "$RUNS"/logs/*.log; do grep -h "scaled accuracy\|Error\|error" "$f" | tail -2; done \
  | tee -a "$OUT/call.log"
nvidia-smi >"$L/nvidia_smi.txt" 2>&1
(cd "$RUNS" && find parity -name summary.json -printf '%h\n' | while read -r d; do
   printf '%s\n' "$d/config.yaml" "$d/summary.json" "$d/eval.csv" "$d/metrics.jsonl"; done \
   | tar czf "$OUT/fla_runs.tar.gz" -T -)
cp "$RUNS"/logs/*.log "$L/" 2>/dev/null
tar czf "$OUT/logs.tar.gz" -C "$OUT" logs && rm -rf "$L"
