#!/bin/bash
# Session 5, device call 3 (about 5 min): per-kernel profiles of launch-setting variants of the
# split backward at K = 128 (software pipelining of dqk's and wy's V-loops, dqk over the whole
# key dim), then the benchmark's new CUDA-graph β timing on two shapes (no fla).
set -u
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2 PYTHONPATH=src
OUT=${OUT:-/tmp/out}; R=$OUT/c3; mkdir -p "$R"
P="python3 scripts/gpu/profile_kernels.py delta_rule --iters 20 --shape 1,8192,32,128 --shape 4,4096,16,128"
timeout 300 $P --variant dqk:128=32,8,2 --variant dqk:128=32,8,3 --variant dqk:128=64,8,2 \
  --variant bkt:128 --variant bkt:128+dqk:128=32,8,2 --variant wy:128=32,4,2 \
  --variant wy:128=64,4,2 --variant wy:128=64,8,1 --variant prep:128=32,4,2 >"$R/prof.txt" 2>&1
echo "rc=$?" >>"$R/prof.txt"
timeout 120 python3 benchmarks/delta_rule.py --no-fla --shape 256,40,4,32 --shape 1,8192,32,128 \
  --beta-repeats 3 --out "$R/bench.json" >"$R/bench.txt" 2>&1; echo "rc=$?" >>"$R/bench.txt"
grep -h "=== variant\|ms of kernels\|rc=" "$R/prof.txt"; grep -v "relative error" "$R/bench.txt"
tar -czf "$OUT/c3.tar.gz" -C "$OUT" c3 && rm -rf "$R"
