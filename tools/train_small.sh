#!/usr/bin/env bash
# The shipped `small` checkpoint, as a chain of recorded stages, each warm-started from the last: the flow branch
# (stage 1), then the segmentation side (stage 2), then the mask prior (stage 3), then more flow training leaning on
# real motion (stage 4), then the segmentation side again on windows with distractors (stage 5), then the segmentation
# side and the appearance encoder on relit, zoomed windows for 75 minutes (stage 6). Resumable: a stage that has its
# final.pt is skipped, one with a state.pt resumes.
#   tools/train_small.sh
#   .venv/bin/python tools/export_weights.py runs/small_1_flow runs/small_2_seg runs/small_3_prior runs/small_4_flow_real \
#     runs/small_5_distractors runs/small_6_augmented
set -euo pipefail
cd "$(dirname "$0")/.."
SEGFLOW=${SEGFLOW:-.venv/bin/segflow}
for stage in small_1_flow small_2_seg small_3_prior small_4_flow_real small_5_distractors small_6_augmented; do
  if [ -f "runs/$stage/final.pt" ]; then echo "$stage: done"; continue; fi
  resume=()
  if [ -f "runs/$stage/state.pt" ]; then resume=(--resume); fi
  echo "$stage: $(date -u +%H:%M:%S) start"
  "$SEGFLOW" train --config "configs/$stage.yaml" --no-progress "${resume[@]}"
  echo "$stage: $(date -u +%H:%M:%S) end"
done
