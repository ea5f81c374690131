#!/bin/bash
# One device call (about 7 min) for the delta rule at its committed settings: GPU tests, a
# per-kernel profile of the K = 128 shapes (statetrack and fla), then benchmarks/delta_rule.py.
# Carry .whl (fla-core 0.6.0) and .triton_autotune/ (autotune.tar.gz of an earlier call: fla
# then compiles only its chosen configs instead of timing them all, which took 426 s).
#   bash scripts/gpu/delta_rule_final.sh            (everything in $OUT/final.tar.gz + JSON)
set -u
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
OUT=${OUT:-/tmp/out}; R=$OUT/final; mkdir -p "$R"; t0=$(date +%s)
stamp() { echo "$1 at $(( $(date +%s) - t0 ))s" | tee -a "$R/time.txt"; }
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/fla_core-*.whl
export PYTHONPATH=src:/tmp/site TRITON_CACHE_DIR=$PWD/.triton_cache TRITON_CACHE_AUTOTUNING=1
mkdir -p "$TRITON_CACHE_DIR"
if [ -f .triton_autotune/autotune.tar.gz ]; then
  tar -xzf .triton_autotune/autotune.tar.gz -C "$TRITON_CACHE_DIR"
fi
echo "autotune results carried: $(find "$TRITON_CACHE_DIR" -name '*.autotune.json' | wc -l)" \
  | tee "$R/warm.log"
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu --format=csv >"$R/gpu.txt"
(timeout 300 python3 benchmarks/delta_rule.py --warm-only >>"$R/warm.log" 2>&1
 echo "rc=$?" >>"$R/warm.log") &
warm=$!
timeout 300 python3 -m pytest tests/test_delta_rule_triton.py -m gpu -q -n 6 -p no:cacheprovider \
  -p no:benchmark -rfE >"$R/tests.txt" 2>&1; echo "rc=$?" >>"$R/tests.txt"
stamp tests
wait $warm; stamp warm
timeout 90 python3 scripts/gpu/profile_kernels.py delta_rule --impl triton fla \
  --shape 1,8192,32,128 --shape 4,4096,16,128 >"$R/profile.txt" 2>&1; stamp profile
timeout 240 python3 benchmarks/delta_rule.py --out "$OUT/h200_delta_rule.json" >"$R/bench.txt" 2>&1
echo "rc=$?" >>"$R/bench.txt"; stamp bench
tail -n 3 "$R/tests.txt"; grep -h "ms of kernels" "$R/profile.txt"; grep -v "relative error" "$R/bench.txt"
tar -czf "$OUT/final.tar.gz" -C "$OUT" final && rm -rf "$R"
