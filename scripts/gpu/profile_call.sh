#!/bin/bash
# One device call: per-kernel profiles of the delta rule (statetrack triton against fla, and
# statetrack under alternative launch settings at K = 128) and of the selective scan.
#   bash scripts/gpu/profile_call.sh         (carry .whl for fla's rows; logs under $OUT)
set -u
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=4
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
if ls .whl/fla_core-*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/fla_core-*.whl
fi
export PYTHONPATH=src:/tmp/site
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu --format=csv >"$OUT/gpu.txt"
P="python3 scripts/gpu/profile_kernels.py"
K128="--shape 4,4096,16,128 --shape 1,8192,32,128"
timeout 240 $P delta_rule --impl triton fla $K128 >"$OUT/dr_fla.txt" 2>&1
V=""
for v in chunk:128=32 grad:128=16,8,1 grad:128=64,8,1 grad:128=32,4,1 \
         state_fwd:128=16,4,0 state_fwd:128=64,4,0 state_fwd:128=32,8,0 \
         state_bwd:128=32,8,0 state_bwd:128=16,4,0 state_bwd:128=64,8,0 \
         output:128=128,8,1 output:128=32,4,1 prep:128=64,8,1 prep:128=16,4,1; do
  V="$V --variant $v"
done
timeout 200 $P delta_rule $K128 --iters 10 $V >"$OUT/dr_variants.txt" 2>&1
timeout 60 $P delta_rule --shape 256,40,4,32 --shape 256,256,4,32 --shape 8,2048,16,64 \
  >"$OUT/dr_small.txt" 2>&1
timeout 90 $P selective_scan --shape 8,2048,2048,16 --shape 256,256,256,16 \
  --shape 256,40,256,16 >"$OUT/scan.txt" 2>&1
ls -la "$OUT"
