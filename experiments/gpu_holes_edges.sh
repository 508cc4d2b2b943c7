#!/usr/bin/env bash
# Issue 20 on one H200: the hole model at the `small` preset with and without model.cond_edges (the CAD's edge
# map as a condition), same GPU dataset (.gpu/data), seed 0, two processes sharing the GPU. Results under $OUT.
#   device call:  STEPS=1000 bash experiments/gpu_holes_edges.sh      (carry [".whl", ".gpu"])
set -u
OUT=${1:-${OUT:-/tmp/holes_out}}
STEPS=${STEPS:-1000}
LIMIT=${LIMIT:-520}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name --format=csv,noheader
for v in base edges; do
  [ -d /tmp/d_$v ] || cp -r .gpu/data /tmp/d_$v
  extra=""; [ $v = edges ] && extra="--override model.cond_edges=true"
  timeout "$LIMIT" python3 benchmarks/bench_holes.py --preset small --out /tmp/h_$v --modes model --json "$OUT/$v.json" \
    --override data.root=/tmp/d_$v --override train.steps=$STEPS --override train.batch_size=16 \
    --override train.lr=0.0002 --override train.ckpt_every=10000 --override sampling.batch_size=64 $extra \
    > "$OUT/$v.log" 2>&1 &
  pids="${pids:-} $!"
done
wait $pids
for v in base edges; do echo "== $v"; grep "^|" "$OUT/$v.log"; tail -n 3 "$OUT/$v.log" | cut -c1-300; done
