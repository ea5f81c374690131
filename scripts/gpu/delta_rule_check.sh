#!/bin/bash
# One device call (about 5 min) for what session 4 left open in the delta rule's checks:
#   1. every delta-rule GPU test at the final launch settings, on a quiet machine;
#   2. per-kernel device time at β ≤ 1 against β ≤ 2 at the paper's shapes (the benchmark's
#      β2/β1 of 1.10 at (256, 256, 4, 32) is wall time of a launch-bound step);
#   3. compute-sanitizer memcheck of the shape order that once ended in an illegal memory
#      access, at the state-kernel settings of that run (BV 32, one stage at K = 64).
#   bash scripts/gpu/delta_rule_check.sh        (everything in $OUT/check.tar.gz)
set -u
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2 PYTHONPATH=src
OUT=${OUT:-/tmp/out}; R=$OUT/check; mkdir -p "$R"
timeout 280 python3 -m pytest tests/test_delta_rule_triton.py -m gpu -q -n 8 -p no:cacheprovider \
  >"$R/tests.txt" 2>&1; echo "rc=$?" >>"$R/tests.txt"
P="python3 scripts/gpu/profile_kernels.py delta_rule --shape 256,40,4,32 --shape 256,256,4,32"
for b in 1 2 1 2; do timeout 60 $P --beta-max $b >>"$R/beta$b.txt" 2>&1; done
timeout 200 compute-sanitizer --tool memcheck python3 scripts/gpu/memcheck_delta_rule.py \
  --old-settings >"$R/memcheck_old.txt" 2>&1; echo "rc=$?" >>"$R/memcheck_old.txt"
tail -n 2 "$R/tests.txt" "$R/memcheck_old.txt"; grep "triton:" "$R"/beta*.txt
tar -czf "$OUT/check.tar.gz" -C "$OUT" check && rm -rf "$R"
