#!/bin/bash
# Session 4, device call 2: reproduce the illegal memory access seen in the delta rule's
# per-kernel profile at (8, 2048, 16, 64) after two K = 32 shapes, then more launch-setting
# variants, then the delta rule's GPU tests.
set -u
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=4 PYTHONPATH=src
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
P="python3 scripts/gpu/profile_kernels.py"
(which compute-sanitizer; ls /usr/local/cuda*/bin 2>/dev/null | head -30) >"$OUT/tools.txt" 2>&1
timeout 60 $P delta_rule --shape 8,2048,16,64 --iters 5 >"$OUT/repro_alone.txt" 2>&1
CUDA_LAUNCH_BLOCKING=1 timeout 90 $P delta_rule --shape 256,40,4,32 --shape 256,256,4,32 \
  --shape 8,2048,16,64 --iters 5 >"$OUT/repro_seq_blocking.txt" 2>&1
timeout 90 python3 benchmarks/delta_rule.py --no-fla --out "$OUT/seq_bench.json" \
  >"$OUT/repro_bench_order.txt" 2>&1
V=""
for v in prep:128=32,4,1 prep:128=64,4,1 prep:128=16,4,2 grad:128=128,8,1 grad:128=64,4,1 \
         grad:128=64,16,1 output:128=128,4,1; do V="$V --variant $v"; done
timeout 150 $P delta_rule --shape 4,4096,16,128 --shape 1,8192,32,128 --iters 10 $V \
  >"$OUT/variants128.txt" 2>&1
V=""
for v in prep:64=32,4,1 prep:64=16,4,1 grad:64=64,8,1 grad:64=32,4,1 grad:64=64,4,1 \
         output:64=64,8,1 state_fwd:64=64,4,1 state_bwd:64=64,8,1; do V="$V --variant $v"; done
timeout 150 $P delta_rule --shape 8,2048,16,64 --shape 8,1024,8,64 --iters 10 $V \
  >"$OUT/variants64.txt" 2>&1
V=""
for v in prep:32=32,2,1 prep:32=32,8,1 grad:32=32,2,1 grad:32=32,8,1; do V="$V --variant $v"; done
timeout 100 $P delta_rule --shape 256,40,4,32 --shape 256,256,4,32 --iters 10 $V \
  >"$OUT/variants32.txt" 2>&1
timeout 200 python3 -m pytest tests/test_delta_rule_triton.py -m gpu -q -n 6 -p no:cacheprovider \
  >"$OUT/tests.txt" 2>&1; echo "rc=$?" >>"$OUT/tests.txt"
tail -3 "$OUT/tests.txt"; grep -l "Error\|error" "$OUT"/*.txt
