#!/usr/bin/env bash
# Issue 22 ("Simulation throughput a robotics user can compare"): frames/s of CAD-only simulation on whole
# 640x480 frames in one pass (`Sim2RealPipeline(native=True)`, no tiles), per preset and sampling path, at 1, 2, 4
# and 10 DDIM steps (2: where a distilled student holds quality on the CPU model, `sim2real distill`; random
# weights: speed only, a student costs what its teacher does per step; quality is bench_sample_quality.py's).
# Results under $OUT: frames_<preset>.json / .log. Each preset gets at most LIMIT seconds.
#   device call:  bash experiments/gpu_frames.sh $OUT                                   (carry [".whl"])
set -u
OUT=${1:-${OUT:-/tmp/frames_out}}
LIMIT=${LIMIT:-200}
STEPS=${STEPS:-1 2 4 10}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name --format=csv,noheader
bench() {  # preset batch variants [extra args]
  local preset=$1 batch=$2 variants=$3; shift 3
  timeout "$LIMIT" python3 benchmarks/bench_sample.py --preset "$preset" --device cuda --frame 480x640 \
    --steps $STEPS --batch-size "$batch" --repeats 2 --variants "$variants" "$@" \
    --json "$OUT/frames_$preset.json" > "$OUT/frames_$preset.log" 2>&1
  echo "== $preset (rc $?)"; grep -v '^{' "$OUT/frames_$preset.log" | tail -n 30
}
for preset in ${PRESETS:-tiny small sd21-random}; do
  case $preset in
    tiny) bench tiny 8 "${TINY_VARIANTS:-autocast-bf16,compiled-graph,tuned-graph,tuned-bf16-weights}" ;;
    small) bench small 8 "${SMALL_VARIANTS:-autocast-bf16,tuned-graph,tuned-bf16-weights}" ;;
    # SD 2.1's UNet compiles for minutes: the graph paths without torch.compile
    sd21-random) bench sd21-random 4 "${SD_VARIANTS:-autocast-bf16,graph,tuned-graph}" --no-compile ;;
  esac
done
