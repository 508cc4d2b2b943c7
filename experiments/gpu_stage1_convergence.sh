#!/usr/bin/env bash
# Issue 22: Stage-I of the `small` preset trained to convergence on the GPU dataset (gpu_experiment.py make-data),
# scored at each milestone (experiments/stage1_convergence.py). Resumable: the same command again on the warm
# machine continues from the last checkpoint and skips the milestones already scored. Results under $OUT (or $1).
#   device call:  bash experiments/gpu_stage1_convergence.sh $OUT      (carry [".whl", ".gpu"])
#   the small preset keeps an EMA since the EMA arm (docs/results_gpu.md); the first arm, without it:
#   EXTRA="train.ema=false" RUN=/tmp/conv_noema bash experiments/gpu_stage1_convergence.sh $OUT
set -u
OUT=${1:-${OUT:-/tmp/conv_out}}
SEED=${SEED:-0}
LIMIT=${LIMIT:-570}
MILESTONES=${MILESTONES:-450 900 1350 1800 2400 3000 3600 4200 4800}
RUN=${RUN:-/tmp/conv_$SEED}
EXTRA=${EXTRA:-}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee -a "$OUT/device.txt"
[ -d /tmp/d$SEED ] || cp -r .gpu/data /tmp/d$SEED
timeout "$LIMIT" python3 experiments/stage1_convergence.py --run "$RUN" --data /tmp/d$SEED --out "$OUT" \
  --preset small --seed "$SEED" --milestones $MILESTONES -- \
  train.batch_size=32 train.lr=0.0002 train.lr_warmup_steps=50 train.ckpt_every=225 train.keep_checkpoints=1 \
  train.log_every=10 train.val_frames=16 sampling.steps=20 sampling.batch_size=112 data.num_workers=4 $EXTRA \
  >> "$OUT/conv_seed$SEED.log" 2>&1
echo "rc=$? after $SECONDS s"
tail -n 14 "$OUT/conv_seed$SEED.log"
cp "$RUN"/stage1/losses.csv "$OUT/stage1_losses_now.csv" 2>/dev/null; ls "$RUN"/stage1/checkpoints 2>/dev/null
