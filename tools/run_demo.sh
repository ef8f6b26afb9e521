#!/usr/bin/env bash
# Set up the environment, train TVMamba-T Mask R-CNN on the COCO subset in
# ../shared/data/coco128 on the CPU, then evaluate the last checkpoint and
# print bbox and segm mAP.
#
# Usage: bash tools/run_demo.sh [extra tools/train.py options]
# WORK_DIR (default: work_dirs/demo_mask-rcnn_tvmamba-t_coco128) sets where
# logs and checkpoints go.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash tools/setup_env.sh

python=${VENV_DIR:-$root/.venv}/bin/python
config=configs/demo/mask-rcnn_tvmamba-t_coco128.py
work_dir=${WORK_DIR:-work_dirs/demo_mask-rcnn_tvmamba-t_coco128}

"$python" tools/train.py "$config" --work-dir "$work_dir" "$@"
checkpoint=$(cat "$work_dir/last_checkpoint")
"$python" tools/test.py "$config" "$checkpoint" --work-dir "$work_dir"
