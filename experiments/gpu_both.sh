#!/usr/bin/env bash
# One device call for issues 20 and 22 at once on a single GPU: the hole model with the validity loss at a quarter
# (`gpu_holes_edges.sh`, JOBS edgesw) and the converged-Stage-I controls campaign (`gpu_stage2_controls.sh`) as
# processes sharing the GPU (small models leave most of it idle), each with its own LIMIT; both resume on a warm
# machine when called again. Packs what comes back into at most 5 files under $OUT (the device's limit is 8):
# holes.tgz, s2c.tgz (rows, losses, logs, merged table), val_seed<k>.tgz, val_ref.tgz.
#   device call:  bash experiments/gpu_both.sh $OUT        (carry [".whl", ".gpu"])
set -u
OUT=${1:-${OUT:-/tmp/both_out}}
LIMIT=${LIMIT:-540}
HJOBS=${HJOBS:-edgesw:0 edgesw:1}
SEEDS=${SEEDS:-0 1}
mkdir -p "$OUT" /tmp/holes_out /tmp/s2c_out
(
  JOBS="$HJOBS" VW=${VW:-0.25} STEPS=${HSTEPS:-1000} LIMIT=$LIMIT bash experiments/gpu_holes_edges.sh /tmp/holes_out
  for job in $HJOBS; do
    name=${job%%:*}_s${job##*:}
    f=$(find /tmp/h_$name -name losses.csv 2>/dev/null | head -1)
    [ -n "$f" ] && cp "$f" /tmp/holes_out/${name}_losses.csv
    [ -f /tmp/holes_out/$name.json ] && timeout 120 python3 experiments/hole_threshold.py --run /tmp/h_$name \
      --json /tmp/holes_out/ht_$name.json > /tmp/holes_out/ht_$name.log 2>&1
  done
) > /tmp/holes_out/holes.txt 2>&1 &
hp=$!
SEEDS="$SEEDS" CKPT=${CKPT:-150} STEPS=${STEPS:-1350} STAGE2_STEPS=${STAGE2_STEPS:-450} LR=${LR:-0.0002} \
  LIMIT=$LIMIT SKIP=${SKIP:-stage2_other} bash experiments/gpu_stage2_controls.sh /tmp/s2c_out
wait $hp
cat /tmp/holes_out/holes.txt
(cd /tmp/holes_out && tar czf "$OUT/holes.tgz" .)
(cd /tmp/s2c_out && mv val_*.tgz "$OUT"/ 2>/dev/null; tar czf "$OUT/s2c.tgz" .)
ls -la "$OUT"
