#!/usr/bin/env bash
# Issue 22 ("the fewest steps whose quality holds", 640x480 >= 30 FPS): distill a trained `small` Stage-I (the seed-0
# `mask` run that experiments/gpu_bf16_fix.sh trains at /tmp/h_mask_s0) from 10 DDIM steps to 5 and 2
# (`sim2real distill`, sim2real_kit/distill.py), then score the students beside the teacher at 2 / 5 / 10 steps on
# the same 112 val frames (bench_sample_quality.py --pipelines; held = W1 within 2 noise-spreads of the teacher at
# 10 steps; two-sample AUC, 2 seeds). Resumable on a warm machine (the students resume from their checkpoints).
#   device call:  bash experiments/gpu_distill.sh $OUT                   (carry [".whl", ".gpu"]; after gpu_bf16_fix.sh)
set -u
OUT=${1:-${OUT:-/tmp/distill_out}}
RUN=${RUN:-/tmp/h_mask_s0}
STUDENTS=${STUDENTS:-5 2}
DSTEPS=${DSTEPS:-400}
START=$(date +%s)
DEADLINE=${DEADLINE:-585}
left() { echo $(( DEADLINE - ($(date +%s) - START) )); }
mkdir -p "$OUT"
nvidia-smi --query-gpu=name --format=csv,noheader
[ -f $RUN/stage1/pipeline/model_index.json ] || { echo "no Stage-I at $RUN: run experiments/gpu_bf16_fix.sh first"; exit 0; }
pipes=""
for M in $STUDENTS; do
  if [ ! -f $RUN/stage1/distill_s$M/pipeline/model_index.json ]; then
    timeout $(( $(left) - 120 )) python3 -m sim2real_kit.cli distill --run $RUN distill.teacher_steps=10 \
      distill.student_steps=$M distill.steps=$DSTEPS distill.lr=0.0001 train.batch_size=16 train.ckpt_every=100 \
      train.keep_checkpoints=1 > "$OUT/distill_s$M.log" 2>&1
    echo "== distill 10 -> $M (rc $?, $(( $(date +%s) - START )) s)"; tail -c 300 "$OUT/distill_s$M.log"; echo
    cp $RUN/stage1/distill_s$M/losses.csv "$OUT/distill_s${M}_losses.csv" 2>/dev/null
  fi
  [ -f $RUN/stage1/distill_s$M/pipeline/model_index.json ] && pipes="$pipes d$M=$RUN/stage1/distill_s$M/pipeline"
done
[ -z "$pipes" ] && { echo "no student finished: call again (it resumes)"; exit 0; }
timeout "$(left)" python3 benchmarks/bench_sample_quality.py --run $RUN --device cuda --variants autocast-bf16 \
  --steps 2 5 10 --frames 112 --batch-size 112 --noise-seeds 1 2 --auc-seeds 0 1 --auc-steps 2 5 10 \
  --pipelines $pipes --compare-steps 10 --json "$OUT/distill_quality.json" 2>&1 | tee "$OUT/distill_quality.log" | grep -v '^{'
