#!/bin/bash
# One device call: sweeps/deltanet_unit_keys.yaml (DeltaNet [−1, 1] parity, seeds 0–2, with and
# without `unit_keys`, 6 runs on one GPU under MPS), then every finished run re-evaluated in
# float32 beside its bf16 eval.csv. Brings back $OUT/deltanet_keys.tar.gz (each run's
# config.yaml, summary.json, eval*.csv, metrics.jsonl) and $OUT/keys.log.
#   bash scripts/gpu/deltanet_keys_call.sh [PER_GPU]
#   (env: MPS=0 runs without MPS; EXTRA="--set training.steps=4 ..." passes sweep overrides,
#    e.g. for a check on a CPU)
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; RUNS=${RUNS:-/tmp/st_keys}
log=$OUT/keys.log
mps=(); [ "${MPS:-1}" = 1 ] && mps=(--mps)
# shellcheck disable=SC2086  # EXTRA is a list of options
python3 -m statetrack sweep sweeps/deltanet_unit_keys.yaml --out "$RUNS" --per-gpu "${1:-6}" \
  "${mps[@]}" ${EXTRA:-} 2>&1 | tr '\r' '\n' | grep -v '^\s*$' | tail -n 20 >>"$log"
for run in "$RUNS"/parity/deltanet_neg/*/; do
  [ -f "$run/summary.json" ] || continue
  python3 -m statetrack eval "$run" --precision fp32 2>&1 | head -n 1 | sed "s|^|$(basename "$run") fp32: |" >>"$log"
done
python3 - "$RUNS" >>"$log" <<'PY'
import csv, json, sys
from pathlib import Path
for run in sorted(Path(sys.argv[1]).glob("parity/deltanet_neg/*/")):
    if not (run / "summary.json").is_file():
        continue
    bf16 = json.loads((run / "summary.json").read_text())["scaled_accuracy"]
    fp32 = [p for p in run.glob("eval_*_fp32.csv")]
    rows = list(csv.DictReader(fp32[0].open())) if fp32 else []
    f = sum(float(r["accuracy"]) * int(r["n"]) for r in rows) / max(sum(int(r["n"]) for r in rows), 1)
    print(f"{run.name}: scaled accuracy bf16 {bf16:.3f}, fp32 {2 * f - 1:.3f}")
PY
(cd "$RUNS" && find . -name summary.json -printf '%h\n' | while read -r d; do
   ls "$d"/config.yaml "$d"/summary.json "$d"/eval*.csv "$d"/metrics.jsonl; done) >"$RUNS/files.txt"
tar -czf "$OUT/deltanet_keys.tar.gz" -C "$RUNS" -T "$RUNS/files.txt"
cat "$log"
