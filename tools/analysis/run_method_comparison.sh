#!/usr/bin/env bash
# Compare FP, Slender-Mamba*, LSQ-Ternary, TVMamba-F and TVMamba-T on the
# ants and bees photos, on the CPU.
#
# 1. Pre-trains the mini full-precision VMamba of
#    configs/demo/hymenoptera/vmamba-mini_fp-pretrain_hymenoptera.py
#    (skipped when its checkpoint exists).
# 2. Fine-tunes it with each method for the same number of epochs.
# 3. Evaluates each fine-tuned checkpoint with tools/test.py and prints a
#    table of top-1 accuracies on the 153 validation photos.
#
# Usage: bash tools/analysis/run_method_comparison.sh [WORK_DIR]
# WORK_DIR defaults to work_dirs/comparison.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
python=${PYTHON:-$root/.venv/bin/python}
work_dir=${1:-work_dirs/comparison}
configs=configs/demo/hymenoptera
methods=(fp slender lsq-ternary tvmamba-f tvmamba-t)
mkdir -p "$work_dir"

pretrained=$work_dir/fp-pretrain/epoch_20.pth
if [[ ! -f $pretrained ]]; then
  "$python" tools/train.py $configs/vmamba-mini_fp-pretrain_hymenoptera.py \
    --work-dir "$work_dir/fp-pretrain" > "$work_dir/fp-pretrain.log" 2>&1
fi

for method in "${methods[@]}"; do
  if [[ ! -f $work_dir/$method/epoch_6.pth ]]; then
    "$python" tools/train.py $configs/vmamba-mini_${method}_hymenoptera.py \
      --work-dir "$work_dir/$method" \
      --cfg-options load_from="$pretrained" \
      > "$work_dir/$method-train.log" 2>&1
  fi
  "$python" tools/test.py $configs/vmamba-mini_${method}_hymenoptera.py \
    "$work_dir/$method/epoch_6.pth" --work-dir "$work_dir/$method" \
    > "$work_dir/$method-test.log" 2>&1
done

printf '| method | top-1 (%%) |\n|---|---|\n'
printf '| FP (pre-trained, before fine-tuning) | %s |\n' "$(grep -o \
  'accuracy/top1: [0-9.]*' "$work_dir/fp-pretrain.log" | tail -1 | \
  cut -d' ' -f2)"
for method in "${methods[@]}"; do
  printf '| %s | %s |\n' "$method" "$(grep -o 'accuracy/top1: [0-9.]*' \
    "$work_dir/$method-test.log" | tail -1 | cut -d' ' -f2)"
done
