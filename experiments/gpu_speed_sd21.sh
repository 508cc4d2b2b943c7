#!/usr/bin/env bash
# Issue 22 ("Speed") on one H200: the whole sd21 training step (the VAE encode of the step's maps included),
# eager vs optimized (compiled denoiser + compiled VAE encoder, channels_last, fused AdamW), with
# torch.profiler kernel tables of each. Results under $OUT.
#   device call:  bash experiments/gpu_speed_sd21.sh $OUT                      (carry [".whl"])
set -u
OUT=${1:-${OUT:-/tmp/speed_out}}
mkdir -p "$OUT/profile"
nvidia-smi --query-gpu=name --format=csv,noheader
timeout ${LIMIT:-560} python3 benchmarks/bench_train.py --preset sd21-random --device cuda --whole \
  --variants ${VARIANTS:-eager,optimized} --batch-size ${BATCH:-16} --steps ${STEPS:-10} --repeats 2 --warmup 3 \
  --profile "$OUT/profile" --json "$OUT/train_whole.json" 2>&1 | tee "$OUT/train_whole.log" | grep -v '^{'
