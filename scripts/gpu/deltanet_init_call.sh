#!/bin/bash
# One device call: sweeps/deltanet_fla_init.yaml (DeltaNet [0, 1] and [−1, 1] parity with
# flash-linear-attention's init and MLP width, seeds 0–2: 6 runs at once on one GPU under MPS,
# about 5.5 minutes on an H200). Brings back $OUT/deltanet_init.tar.gz (each finished run's
# config.yaml, summary.json, eval.csv, metrics.jsonl) and $OUT/init.log. Import here with
# `mkdir -p results/deltanet_fla_init && tar xzf CALL_DIR/deltanet_init.tar.gz -C
# results/deltanet_fla_init`.
#   bash scripts/gpu/deltanet_init_call.sh [SECONDS]
#   SECONDS: the sweep's time limit (default 420), so that what finished is packed before the
#   call's own limit; env: MPS=0 runs without MPS; EXTRA="--set training.steps=4 ..." passes
#   sweep overrides (a check on a CPU)
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; RUNS=${RUNS:-/tmp/st_init}
mkdir -p "$RUNS" "$OUT"
log=$OUT/init.log
mps=(); [ "${MPS:-1}" = 1 ] && mps=(--mps)
# shellcheck disable=SC2086  # EXTRA is a list of options
timeout "${1:-420}" python3 -m statetrack sweep sweeps/deltanet_fla_init.yaml --out "$RUNS" \
  --per-gpu 6 "${mps[@]}" ${EXTRA:-} 2>&1 | tr '\r' '\n' | grep -v '^\s*$' | tail -n 30 >>"$log"
(cd "$RUNS" && find . -name summary.json -printf '%h\n' | while read -r d; do
   ls "$d"/config.yaml "$d"/summary.json "$d"/eval.csv "$d"/metrics.jsonl; done) >"$RUNS/files.txt"
tar -czf "$OUT/deltanet_init.tar.gz" -C "$RUNS" -T "$RUNS/files.txt"
echo "finished runs: $(wc -l <"$RUNS/files.txt") files" >>"$log"
cat "$log"
