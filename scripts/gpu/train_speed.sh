#!/bin/bash
# Training steps/s of each paper model on one GPU (parity, batch 256, lengths 3–40, bf16
# autocast): 600 steps each, then a small evaluation. Run on the device machine from the repo
# root; summaries, metrics and logs land under $OUT (checkpoints are deleted: too large to
# bring back).   [EXTRA_SET='--set k=v ...'] bash scripts/gpu/train_speed.sh [MODEL...]
export PYTHONPATH=src PYTHONUNBUFFERED=1 OMP_NUM_THREADS=4
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
models=${*:-deltanet_neg deltanet mamba_neg mamba transformer mlstm slstm}
for m in $models; do
  run="$OUT/runs/$m"
  timeout "${RUN_TIMEOUT:-75}" python3 -m statetrack train "configs/chomsky/parity/$m.yaml" \
    --set training.steps=600 --set training.warmup_steps=100 --set training.log_every=100 \
    --set training.val_every=100000 --set training.checkpoint_every=100000 \
    --set evaluation.n=1024 $EXTRA_SET --out "$run" >"$OUT/$m.log" 2>&1
  echo "== $m rc=$? $(grep -Eo '[0-9.]+ steps/s' "$OUT/$m.log" | tail -3 | tr '\n' ' ')"
  tail -1 "$OUT/$m.log"
  rm -rf "$run/checkpoint"
done
