#!/bin/bash
# One device call: sweeps/deltanet_unit_keys.yaml (DeltaNet [−1, 1] parity with and without
# `unit_keys`, seeds 0–8, 18 runs; on one GPU under MPS), then every newly finished run
# re-evaluated in float32 beside its bf16 eval.csv. The runs committed under
# results/deltanet_keys_gpu/ are copied in first, so the sweep skips them. Brings back
# $OUT/deltanet_keys.tar.gz (each finished run's config.yaml, summary.json, eval*.csv,
# metrics.jsonl; the committed ones again, unchanged) and $OUT/keys.log. Import here with
# `tar xzf CALL_DIR/deltanet_keys.tar.gz -C results/deltanet_keys_gpu`.
#   bash scripts/gpu/deltanet_keys_call.sh [PER_GPU] [SEEDS]
#   SEEDS: a glob of the seeds to run in this call, e.g. '[345]' (6 runs, about 5.5 minutes on
#   an H200 in session 9); default: every seed of the sweep
#   (env: MPS=0 runs without MPS; EXTRA="--set training.steps=4 ..." passes sweep overrides,
#    e.g. for a check on a CPU)
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; RUNS=${RUNS:-/tmp/st_keys}
mkdir -p "$RUNS"
cp -rn results/deltanet_keys_gpu/parity "$RUNS"/ 2>/dev/null
only=(); [ -n "${2:-}" ] && only=(--only "parity/deltanet_neg/*seed=${2}")
log=$OUT/keys.log
mps=(); [ "${MPS:-1}" = 1 ] && mps=(--mps)
# shellcheck disable=SC2086  # EXTRA is a list of options
python3 -m statetrack sweep sweeps/deltanet_unit_keys.yaml --out "$RUNS" --per-gpu "${1:-6}" \
  "${mps[@]}" "${only[@]}" ${EXTRA:-} 2>&1 | tr '\r' '\n' | grep -v '^\s*$' | tail -n 20 >>"$log"
# each newly finished run again in float32 ("<run>: ... scaled accuracy S ..." beside its bf16
# summary)
for run in "$RUNS"/parity/deltanet_neg/*/; do
  [ -f "$run/summary.json" ] || continue
  compgen -G "$run/eval_*_fp32.csv" >/dev/null && continue
  name=$(basename "$run")
  bf16=$(python3 -c "import json, sys; print(json.load(open(sys.argv[1]))['scaled_accuracy'])" \
    "$run/summary.json")
  python3 -m statetrack eval "$run" --precision fp32 2>&1 | head -n 1 \
    | sed "s|^|$name: bf16 (training) scaled accuracy $bf16; fp32: |" >>"$log"
done
(cd "$RUNS" && find . -name summary.json -printf '%h\n' | while read -r d; do
   ls "$d"/config.yaml "$d"/summary.json "$d"/eval*.csv "$d"/metrics.jsonl; done) >"$RUNS/files.txt"
tar -czf "$OUT/deltanet_keys.tar.gz" -C "$RUNS" -T "$RUNS/files.txt"
cat "$log"
