#!/usr/bin/env bash
# Issue 20 on one H200: the hole model at the `small` preset with and without model.cond_edges (the CAD's edge
# map as a condition) and the `mask` reference, same GPU dataset (.gpu/data), the jobs as processes sharing the
# GPU. JOBS: "variant:seed ..." with variant base (data.holes=model with the validity channel), edges (base +
# cond_edges), mask, head
# (model + model.validity=head: a mask denoiser and a separate validity head), or edgesw
# (edges with train.validity_weight=$VW, default 0.25: the validity loss at a quarter of the residual's).
# Results under $OUT: <variant>_s<seed>.json / .log; headfit_s<seed>.json / .log: a head fit on the mask run's
# samples (not head_s<seed>: that is the kit's `head` job). Run folders /tmp/h_<variant>_s<seed> (resume on a warm
# machine: checkpoints every 200 steps).
#   device call:  STEPS=1000 bash experiments/gpu_holes_edges.sh $OUT                      (carry [".whl", ".gpu"])
#                 JOBS="edges:1 edges:2 mask:0" STEPS=1000 bash experiments/gpu_holes_edges.sh $OUT
#                 JOBS="edgesw:0 edgesw:1" VW=0.25 STEPS=1000 bash experiments/gpu_holes_edges.sh $OUT
set -u
OUT=${1:-${OUT:-/tmp/holes_out}}
STEPS=${STEPS:-1000}
LIMIT=${LIMIT:-520}
JOBS=${JOBS:-base:0 edges:0}
VW=${VW:-0.25}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name --format=csv,noheader
for job in $JOBS; do
  v=${job%%:*}; seed=${job##*:}; name=${v}_s$seed
  [ -d /tmp/d_$name ] || cp -r .gpu/data /tmp/d_$name
  mode=model; extra="--override model.validity=channel"   # base / edges / edgesw: the validity channel
  [ $v = edges ] && extra="$extra --override model.cond_edges=true"
  [ $v = edgesw ] && extra="$extra --override model.cond_edges=true --override train.validity_weight=$VW"
  [ $v = head ] && extra="--override model.validity=head"   # the denoiser as mask's, holes from a validity head
  [ $v = mask ] && mode=mask
  timeout "$LIMIT" python3 benchmarks/bench_holes.py --preset small --out /tmp/h_$name --modes $mode --seed $seed \
    --json "$OUT/$name.json" --override data.root=/tmp/d_$name --override train.steps=$STEPS \
    --override train.batch_size=16 --override train.lr=0.0002 --override train.ckpt_every=200 \
    --override train.keep_checkpoints=1 --override sampling.batch_size=64 $extra >> "$OUT/$name.log" 2>&1 &
  pids="${pids:-} $!"
done
wait $pids
# W1 of each seed's runs on the pixels all of them keep (the jobs run one mode each: their own "common" is their own)
for seed in $(for job in $JOBS; do echo "${job##*:}"; done | sort -u); do
  runs=""
  for job in $JOBS; do
    [ "${job##*:}" = "$seed" ] && [ -f "/tmp/h_${job%%:*}_s$seed/stage1/samples/val/samples.json" ] && runs="$runs /tmp/h_${job%%:*}_s$seed"
  done
  [ $(echo $runs | wc -w) -ge 2 ] && python3 benchmarks/bench_holes.py --common $runs --json "$OUT/common_s$seed.json" \
    > "$OUT/common_s$seed.log" 2>&1
  # the holes from a separate validity head on the mask run's samples (experiments/validity_head.py; HEAD_STEPS=0: off)
  mask_run=/tmp/h_mask_s$seed
  hole_run=$(for r in $runs; do [ "$r" != "$mask_run" ] && echo "$r"; done | head -n 1)
  if [ "${HEAD_STEPS:-1500}" -gt 0 ] && [ -f "$mask_run/stage1/samples/val/samples.json" ]; then
    python3 experiments/validity_head.py --mask-run "$mask_run" ${hole_run:+--hole-run "$hole_run"} --seed "$seed" \
      --steps "${HEAD_STEPS:-1500}" --fit-on "${HEAD_FIT:-frames}" --json "$OUT/headfit_s$seed.json" 2>&1 \
      | tr '\r' '\n' | grep -v "^validity head:" > "$OUT/headfit_s$seed.log"
  fi
done
for job in $JOBS; do
  name=${job%%:*}_s${job##*:}
  echo "== $name"; grep "^|" "$OUT/$name.log"; tail -n 3 "$OUT/$name.log" | cut -c1-300
done
cat "$OUT"/common_s*.log "$OUT"/headfit_s*.log 2>/dev/null
