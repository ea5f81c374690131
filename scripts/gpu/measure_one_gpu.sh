#!/bin/bash
# One device call on a single GPU: every GPU test, then the kernel and training-step timings
# one after another on the quiet GPU (fla's column left out: its autotuning alone takes
# minutes; scripts/gpu/delta_rule_run.sh measures it).
#
#   bash scripts/gpu/measure_one_gpu.sh SECONDS         (6 minutes on an H200 in session 3)
#
# Everything comes back in $OUT/measure.tar.gz: tests.txt, the benchmarks' JSON and logs.
set -u
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1  # xdist workers x torch threads would thrash
OUT=${OUT:-/tmp/out}; M=$OUT/measure; mkdir -p "$M"
budget=$1; start=$(date +%s)
left() { echo $(( budget - ($(date +%s) - start) )); }
export PYTHONPATH=$PWD/src
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu --format=csv >"$M/gpu.txt"

python3 -c "import torch, torch.nn.functional as F
x = torch.randn(4, 8, device='cuda', dtype=torch.bfloat16)
with torch.autocast('cuda', dtype=torch.bfloat16):
    print('F.normalize under CUDA bf16 autocast returns', F.normalize(x, dim=-1).dtype)" \
  >"$M/tests.txt" 2>&1
# the tests compile every kernel variant they use; the benchmarks then find them cached
timeout "${TEST_TIMEOUT:-250}" python3 -m pytest tests -m gpu -q -n 8 -p no:cacheprovider \
  >>"$M/tests.txt" 2>&1
echo "rc=$?" >>"$M/tests.txt"

timeout 100 python3 benchmarks/delta_rule.py --no-fla --out "$M/h200_delta_rule_nofla.json" \
  >"$M/delta_rule.txt" 2>&1
timeout 80 python3 benchmarks/scan.py --no-torch \
  --out "$M/h200_scan.json" >"$M/scan.txt" 2>&1
timeout $(( $(left) - 10 )) python3 benchmarks/train_step.py --warmup 20 --steps 100 \
  --models deltanet_neg deltanet slstm mamba_neg --out "$M/h200_train_step.json" \
  >"$M/train_step.txt" 2>&1
tar -czf "$OUT/measure.tar.gz" -C "$OUT" measure && rm -rf "$M"
