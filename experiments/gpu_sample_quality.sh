#!/usr/bin/env bash
# Issue 22 ("Speed") on one H200: the sampling paths and DDIM step counts of a trained `small` run scored
# against the real captures (benchmarks/bench_sample_quality.py), and frames/s at 640x480. RUN: a trained run
# folder on the machine (default: the hole model + edge map of gpu_holes_edges.sh, seed 1, trained first if
# missing). Results under $OUT.
#   device call:  bash experiments/gpu_sample_quality.sh $OUT                      (carry [".whl", ".gpu"])
#   NATIVE=1 VARIANTS=graph,bf16-weights bash experiments/gpu_sample_quality.sh $OUT  # + frames/s at 640x480
set -u
OUT=${1:-${OUT:-/tmp/quality_out}}
RUN=${RUN:-/tmp/h_edges_s1}
VARIANTS=${VARIANTS:-eager-fp32,autocast-bf16,graph,bf16-weights,compiled-graph}
STEPS=${STEPS:-1 2 4 10 20}
FRAMES=${FRAMES:-112}
START=$(date +%s)
DEADLINE=${DEADLINE:-585}  # seconds after the start: the bench gets what training left
mkdir -p "$OUT"
nvidia-smi --query-gpu=name --format=csv,noheader
if [ ! -f "$RUN/stage1/pipeline/model_index.json" ] && [ "$RUN" = /tmp/h_edges_s1 ]; then
  JOBS="edges:1" LIMIT=${TRAIN_LIMIT:-300} bash experiments/gpu_holes_edges.sh "$OUT"
fi
LIMIT=$(( DEADLINE - ($(date +%s) - START) ))
echo "training done after $(( $(date +%s) - START )) s; the bench gets $LIMIT s"
native=""
[ -n "${NATIVE:-}" ] && native="--native 640x480 --native-frames ${NATIVE_FRAMES:-8} --native-steps ${NATIVE_STEPS:-1 4 20} --tile-batch ${TILE_BATCH:-140} --native-variants ${NATIVE_VARIANTS:-graph,bf16-weights}"
timeout "$LIMIT" python3 benchmarks/bench_sample_quality.py --run "$RUN" --device cuda --variants "$VARIANTS" \
  --steps $STEPS --frames $FRAMES --batch-size 112 --noise-seeds 1 2 --auc-seeds ${AUC_SEEDS:-0 1} \
  --auc-steps ${AUC_STEPS:-2 4 20} $native --json "$OUT/quality${TAG:-}.json" 2>&1 | tee "$OUT/quality${TAG:-}.log" | grep -v '^{'
