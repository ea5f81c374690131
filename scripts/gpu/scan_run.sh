#!/bin/bash
# One GPU call: scan tests (compiled kernels) then benchmarks/scan.py; logs and JSON under $OUT.
# Exits with the GPU tests' status.
# usage: [SCAN_NCU="chunk chunk_pipe"] [SCAN_ABLATE=1] [SCAN_TAR=1] scripts/gpu/scan_run.sh \
#          [--sweep [LAYOUT ...]] [--layouts chunk chunk_pipe lanes]
export PYTHONPATH=src PYTHONUNBUFFERED=1
set -o pipefail
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/smi.log"
# every layout's GPU tests, compiled for this GPU
timeout "${SCAN_TEST_TIMEOUT:-240}" python -m pytest tests/test_scan_triton.py tests/test_scan_lanes.py \
  -m gpu -q -n 6 -p no:cacheprovider 2>&1 | tail -60 | tee "$OUT/tests.log"
tests_rc=${PIPESTATUS[0]}  # the exit status: a caller can start other GPU work only on success
timeout "${SCAN_BENCH_TIMEOUT:-240}" python benchmarks/scan.py --out "$OUT/h200_scan.json" "$@" 2>&1 | tee "$OUT/bench.log"
# SCAN_ABLATE=1: what each part of the default backward costs (scripts/dev/scan_ablate.py)
if [ -n "${SCAN_ABLATE:-}" ]; then
  timeout "${SCAN_ABLATE_TIMEOUT:-150}" python scripts/dev/scan_ablate.py 2>&1 | tee "$OUT/ablate.log"
fi
# Nsight Compute, when the machine has it: one forward and one backward launch per layout
if [ -n "${SCAN_NCU:-}" ] && command -v ncu >/dev/null; then
  for layout in ${SCAN_NCU}; do
    timeout 150 ncu --kernel-name regex:ss_ --launch-skip 2 --launch-count 2 --set full \
      -o "$OUT/ncu_$layout" python scripts/gpu/scan_ncu.py 8,2048,2048,16 --layout "$layout" \
      > "$OUT/ncu_$layout.log" 2>&1
    ncu --import "$OUT/ncu_$layout.ncu-rep" >> "$OUT/ncu_$layout.log" 2>&1
    # per SASS instruction (shared-memory wavefronts and excess among the columns): which
    # instructions carry the bank conflicts
    ncu --import "$OUT/ncu_$layout.ncu-rep" --page source --print-source sass --csv \
      > "$OUT/ncu_${layout}_sass.csv" 2>&1 && gzip -f "$OUT/ncu_${layout}_sass.csv"
  done
  # one archive: a call brings back at most 8 files
  (cd "$OUT" && tar czf ncu.tar.gz ncu_* && rm -f ncu_*)
fi
# SCAN_TAR=1: everything above in one archive, so the same call can run table3_call.sh after
# this and stay within the 8 files a call brings back
if [ -n "${SCAN_TAR:-}" ]; then
  (cd "$OUT" && tar czf scan.tar.gz --ignore-failed-read smi.log tests.log h200_scan.json \
     bench.log ablate.log ncu.tar.gz 2>/dev/null
   rm -f smi.log tests.log h200_scan.json bench.log ablate.log ncu.tar.gz)
fi
exit "$tests_rc"
