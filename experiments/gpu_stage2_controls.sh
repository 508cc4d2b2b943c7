#!/usr/bin/env bash
# Issue 17 / 22 on one H200: Stage-I, Stage-I + Stage-II's steps (control), Stage-II, Stage-II w/o re-weighting
# at the `small` preset on the GPU dataset (gpu_experiment.py make-data), three seeds as three processes sharing
# the GPU (one process alone leaves most of it idle). Resumable: run the same command again on the warm machine
# and each seed continues from its checkpoints / samples. Results under $OUT (or $1).
#   device call:  bash experiments/gpu_stage2_controls.sh      (carry [".whl", ".gpu"])
#   STEPS=900 STAGE2_STEPS=450 LR=0.0002 bash experiments/gpu_stage2_controls.sh   # from an EMA Stage-I (issue 22)
# The small preset keeps an EMA since 77410cd (docs/results_gpu.md, "Stage-I with an EMA"); runs before had none.
set -u
OUT=${1:-${OUT:-/tmp/s2c_out}}
STEPS=${STEPS:-800}
SEEDS=${SEEDS:-0 1 2}
BATCH=${BATCH:-16}
LR=${LR:-0.0001}
SKIP=${SKIP:-stage2_other}
LIMIT=${LIMIT:-540}
SBATCH=${SBATCH:-56}  # sampling batch per process: 112 ran out of memory on an H100 with three seeds (2026-12-06)
CKPT=${CKPT:-200}  # checkpoint every CKPT steps: a call stopped by LIMIT loses at most this many steps
STAGE2_STEPS=${STAGE2_STEPS:-}  # Stage-II's (and the control's extra) steps; empty: the same as STEPS
S2ARG=${STAGE2_STEPS:+--stage2-steps $STAGE2_STEPS}
mkdir -p "$OUT" /tmp/logs  # at most 8 files come back from $OUT: logs, rows and losses travel in run.tgz
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, diffusers; print('torch', torch.__version__, 'diffusers', diffusers.__version__)"
(sleep 240; nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv,noheader > "$OUT/nvsmi.txt") &
for k in $SEEDS; do
  [ -d /tmp/d$k ] || cp -r .gpu/data /tmp/d$k
  timeout "$LIMIT" python3 benchmarks/bench_stage2_controls.py --preset small --seeds $k --out /tmp/s2c_$k \
    --no-progress ${S2ARG:-} data.root=/tmp/d$k train.steps=$STEPS train.batch_size=$BATCH train.lr=$LR \
    train.lr_warmup_steps=50 train.ckpt_every=$CKPT train.keep_checkpoints=1 train.log_every=10 train.val_frames=16 \
    sampling.steps=20 sampling.batch_size=$SBATCH data.num_workers=4 --skip $SKIP >> "/tmp/logs/seed$k.log" 2>&1 &
  pids="${pids:-} $!"
done
wait $pids
for k in $SEEDS; do
  echo "== seed $k: $(tail -n 2 "/tmp/logs/seed$k.log" | tr '\n' ' ' | cut -c1-300)"
  for f in /tmp/s2c_$k/seed$k/stage1/losses.csv /tmp/s2c_$k/seed$k/stage2/losses.csv; do
    [ -f "$f" ] && echo "   $f: $(wc -l < "$f") rows, last: $(tail -n 1 "$f")"
  done
done
# the val samples of every row (each row's own sims; gt and scan once): the figure of issue 22 (same frames for every
# row) and the two-sample AUC, both computed off the device (experiments/s2c_offline.py); ~13 MB a seed at 128 px
for k in $SEEDS; do
  [ -d /tmp/s2c_$k/seed$k ] || continue
  (cd /tmp/s2c_$k && find seed$k -path "*samples/val/*" \( -name "*_sim*.png" -o -name "*.json" \) \
    | grep -v "stage2/samples/val/.*_sim1.png" | tar czf "$OUT/val_seed$k.tgz" -T -)
done
k0=$(echo $SEEDS | cut -d" " -f1)
[ -d /tmp/s2c_$k0/seed$k0/stage1/samples/val ] && (cd /tmp/s2c_$k0 && find seed$k0/stage1/samples/val \
  \( -name "*_gt.png" -o -name "*_scan.png" \) | tar czf "$OUT/val_ref.tgz" -T -)
# every row measured so far (each seed's rows.json is rewritten after each row): a stopped call still tables them
done_dirs=""
for k in $SEEDS; do
  [ -f /tmp/s2c_$k/seed$k/rows.json ] && done_dirs="$done_dirs /tmp/s2c_$k"
done
[ -n "$done_dirs" ] && python3 benchmarks/bench_stage2_controls.py --out "$OUT/merged" --merge $done_dirs
tar czf "$OUT/run.tgz" /tmp/logs $(ls /tmp/s2c_*/results.json /tmp/s2c_*/seed*/rows.json /tmp/s2c_*/seed*/*/losses.csv \
  /tmp/s2c_*/seed*/controls/*/*/losses.csv /tmp/s2c_*/seed*/disc/metrics.json 2>/dev/null) 2>/dev/null
ls -la "$OUT" "$OUT/merged" 2>/dev/null
