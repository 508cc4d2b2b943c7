#!/usr/bin/env bash
# Issue 22, the bf16-weights fix of d8ec543 on a trained `small` Stage-I (the `mask` recipe of gpu_holes_edges.sh,
# seed 0, 1 000 steps): the sampling paths scored against the real captures with the fixed kit (new variants
# included), then the old kit's bf16-weights path (commit b1b0963, unpacked into .carry/old) on the SAME model:
# before -> after on one set of weights. Resumable on a warm machine (markers in /tmp); results under $OUT.
#   here:         mkdir -p .carry/old && git archive b1b0963 sim2real_kit benchmarks | tar -x -C .carry/old
#   device call:  bash experiments/gpu_bf16_fix.sh $OUT                       (carry [".whl", ".gpu", ".carry"])
set -u
OUT=${1:-${OUT:-/tmp/bf16_out}}
START=$(date +%s)
DEADLINE=${DEADLINE:-585}
RUN=/tmp/h_mask_s0
NEW_VARIANTS=${NEW_VARIANTS:-autocast-bf16,compiled-graph,bf16-weights,tuned-graph}
left() { echo $(( DEADLINE - ($(date +%s) - START) )); }
mkdir -p "$OUT"
if [ ! -f $RUN/stage1/pipeline/model_index.json ]; then
  JOBS="mask:0" STEPS=1000 LIMIT=$(( $(left) - 15 )) HEAD_STEPS=0 bash experiments/gpu_holes_edges.sh "$OUT"
fi
if [ ! -f $RUN/stage1/pipeline/model_index.json ]; then echo "Stage-I not finished: call again (it resumes)"; exit 0; fi
quality() {  # tag kit-root variants
  local tag=$1 root=$2 variants=$3
  [ -f /tmp/q_$tag.done ] && { cp /tmp/q_$tag.* "$OUT/"; return 0; }
  [ "$(left)" -lt 90 ] && { echo "no time for $tag"; return 1; }
  PYTHONPATH=/tmp/site:$root timeout "$(left)" python3 "$root/benchmarks/bench_sample_quality.py" --run $RUN \
    --device cuda --variants "$variants" --steps 10 --frames 112 --batch-size 112 --noise-seeds 1 2 \
    --auc-seeds 0 1 --auc-steps 10 --json /tmp/q_$tag.json > /tmp/q_$tag.log 2>&1 && touch /tmp/q_$tag.done
  echo "== $tag (kit at $root)"; grep -v '^{' /tmp/q_$tag.log | tail -n 25
  cp /tmp/q_$tag.* "$OUT/" 2>/dev/null
}
quality new "$PWD" "$NEW_VARIANTS" || exit 0
# the old kit refuses the new config keys (sampling.channels_last, the distill section): a copy of the run
# without them, same weights
if [ ! -d ${RUN}_old ]; then
  cp -r $RUN ${RUN}_old.tmp && python3 -c "import sys, yaml; p = sys.argv[1]; c = yaml.safe_load(open(p)); \
c['sampling'].pop('channels_last', None); c.pop('distill', None); yaml.safe_dump(c, open(p, 'w'), sort_keys=False)" ${RUN}_old.tmp/config.yaml \
    && mv ${RUN}_old.tmp ${RUN}_old
fi
RUN=${RUN}_old quality old "$PWD/.carry/old" autocast-bf16,bf16-weights || exit 0
