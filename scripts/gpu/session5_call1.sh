#!/bin/bash
# Session 5, device call 1 (about 9 min, one H200), everything in $OUT/c1.tar.gz:
#   - the delta rule's and both scan layouts' GPU tests (the review refactors of session 4 and
#     the "lanes" scan layout have not run on a GPU);
#   - per-kernel device time of the delta rule at β ≤ 1 against β ≤ 2 (paper shapes);
#   - compute-sanitizer memcheck of the shape order that once ended in an illegal access;
#   - in the background, fla's autotuning and the compiles for benchmarks/delta_rule.py, into
#     a Triton cache inside the repo (.triton_cache/, git-ignored), which stays on the machine
#     while it is held, so the next call's benchmark starts warm.
# Carry .whl (fla-core 0.6.0).
set -u
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
OUT=${OUT:-/tmp/out}; R=$OUT/c1; mkdir -p "$R"; t0=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/fla_core-*.whl
export PYTHONPATH=src:/tmp/site TRITON_CACHE_DIR=$PWD/.triton_cache TRITON_CACHE_AUTOTUNING=1
mkdir -p "$TRITON_CACHE_DIR"
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu --format=csv >"$R/gpu.txt"
(timeout 500 python3 benchmarks/delta_rule.py --warm-only >"$R/warm.log" 2>&1
 echo "rc=$? at $(( $(date +%s) - t0 ))s" >>"$R/warm.log") &
warm=$!
PT="python3 -m pytest -m gpu -q -p no:cacheprovider -p no:benchmark"
(timeout 240 $PT tests/test_scan_triton.py tests/test_scan_lanes.py -n 4 -rfE >"$R/scan_tests.txt" 2>&1
 echo "rc=$? at $(( $(date +%s) - t0 ))s" >>"$R/scan_tests.txt"
 timeout 200 compute-sanitizer --tool memcheck python3 scripts/gpu/memcheck_delta_rule.py \
   --old-settings >"$R/memcheck_old.txt" 2>&1
 echo "rc=$? at $(( $(date +%s) - t0 ))s" >>"$R/memcheck_old.txt") &
side=$!
timeout 300 $PT tests/test_delta_rule_triton.py -n 6 -rfE >"$R/dr_tests.txt" 2>&1
echo "rc=$? at $(( $(date +%s) - t0 ))s" >>"$R/dr_tests.txt"
P="python3 scripts/gpu/profile_kernels.py delta_rule --shape 256,40,4,32 --shape 256,256,4,32"
for b in 1 2 2 1; do timeout 60 $P --beta-max $b >>"$R/beta$b.txt" 2>&1; done
wait $side
left=$(( 560 - ($(date +%s) - t0) )); [ $left -lt 1 ] && left=1
timeout $left tail --pid=$warm -f /dev/null
echo "call: $(( $(date +%s) - t0 ))s" >"$R/time.txt"
tail -n 3 "$R"/*tests.txt "$R/memcheck_old.txt" "$R/warm.log"; grep -h "triton:" "$R"/beta*.txt | head -20
(cd "$TRITON_CACHE_DIR" && find . -name '*.autotune.json' >/tmp/at.txt
 [ -s /tmp/at.txt ] && tar -czf "$OUT/autotune.tar.gz" -T /tmp/at.txt)
tar -czf "$OUT/c1.tar.gz" -C "$OUT" c1 && rm -rf "$R"
