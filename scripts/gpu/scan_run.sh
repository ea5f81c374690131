#!/bin/bash
# One GPU call: scan tests (compiled kernels) then benchmarks/scan.py; logs and JSON under $OUT.
# usage: scripts/gpu/scan_run.sh [--sweep] [--layouts chunk chunk_pipe lanes]   (device machine, repo root)
export PYTHONPATH=src PYTHONUNBUFFERED=1
set -o pipefail
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/smi.log"
# every layout's GPU tests (chunk_pipe, session 5, has not run on a GPU yet)
timeout "${SCAN_TEST_TIMEOUT:-240}" python -m pytest tests/test_scan_triton.py tests/test_scan_lanes.py \
  -m gpu -q -n 6 -p no:cacheprovider 2>&1 | tail -60 | tee "$OUT/tests.log"
timeout "${SCAN_BENCH_TIMEOUT:-240}" python benchmarks/scan.py --out "$OUT/h200_scan.json" "$@" 2>&1 | tee "$OUT/bench.log"
