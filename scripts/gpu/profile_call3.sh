#!/bin/bash
# Session 4, device call 3: the delta rule's GPU tests with the single and the split backward
# (concurrently, with compute-sanitizer's memcheck beside them), then per-kernel profiles of
# the split backward against the single kernel. Everything comes back in $OUT/r.tar.gz.
set -u
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2 PYTHONPATH=src
OUT=${OUT:-/tmp/out}; R=$OUT/r; mkdir -p "$R"
T="python3 -m pytest tests/test_delta_rule_triton.py -m gpu -q -n 5 -p no:cacheprovider"
M="compute-sanitizer --tool memcheck python3 scripts/gpu/memcheck_delta_rule.py"
(timeout 280 $T >"$R/tests_default.txt" 2>&1; echo "rc=$?" >>"$R/tests_default.txt") &
(STATETRACK_TRITON_SPLIT_GRAD=1 timeout 280 $T >"$R/tests_split.txt" 2>&1
 echo "rc=$?" >>"$R/tests_split.txt") &
(timeout 150 $M >"$R/memcheck.txt" 2>&1; echo "rc=$?" >>"$R/memcheck.txt"
 STATETRACK_TRITON_SPLIT_GRAD=1 timeout 120 $M >"$R/memcheck_split.txt" 2>&1
 echo "rc=$?" >>"$R/memcheck_split.txt") &
wait
P="python3 scripts/gpu/profile_kernels.py delta_rule --iters 10"
timeout 130 $P --shape 4,4096,16,128 --shape 1,8192,32,128 --variant split:128=1 \
  --variant split:128=1+bkt:32 --variant split:128=1+dqk:128=64,8,1 \
  --variant split:128=1+wy:128=64,4,1 >"$R/prof128.txt" 2>&1
timeout 110 $P --shape 8,2048,16,64 --shape 8,1024,8,64 --variant prep:64=32,2,1 \
  --variant split:64=1 --variant grad:64=64,8,1 --variant grad:64=32,4,1 \
  --variant output:64=128,4,1 >"$R/prof64.txt" 2>&1
timeout 60 $P --shape 256,40,4,32 --shape 256,256,4,32 --variant split:32=1 >"$R/prof32.txt" 2>&1
tail -n 2 "$R"/tests_*.txt "$R"/memcheck*.txt
tar -czf "$OUT/r.tar.gz" -C "$OUT" r && rm -rf "$R"
