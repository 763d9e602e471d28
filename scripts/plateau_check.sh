#!/usr/bin/env bash
# The plateau check of issue 23 (docs/instrument.md section 9): scratch, KD and LS at seeds 0-2 trained
# twice as long as the default (student_recipe.optim.epochs 8 -> 16), evaluated and dissected with the
# default's frozen instrument, into a scratch folder (nothing in outputs/ or dvc.lock changes).
# Run from the repository root after `make repro` (it reads the teacher and the data):
#   scripts/plateau_check.sh [WORK]      # WORK defaults to /tmp/kdinterp-plateau; ~10 min alone on 2 cores
# docs/plateau/plateau.csv holds what it produced on 2026-12-07 beside the committed 8-epoch run.
set -euo pipefail
root="$(pwd)"
work="${1:-/tmp/kdinterp-plateau}"
kdinterp="$root/.venv/bin/kdinterp"
[ -x "$kdinterp" ] || { echo "error: $kdinterp not found: run \`make venv\` first" >&2; exit 1; }
[ -f "$root/outputs/models/teachers/teacher.safetensors" ] || {
  echo "error: outputs/models/teachers/teacher.safetensors not found: run \`make repro\` (or \`make pull\`) first" >&2; exit 1; }
mkdir -p "$work/outputs/models/teachers"
ln -sfn "$root/data" "$work/data"
cp "$root/outputs/models/teachers/teacher.safetensors" "$work/outputs/models/teachers/"
# the students' epochs only (the teacher's own `epochs: 15` is indented deeper)
sed 's/^    epochs: 8$/    epochs: 16/' "$root/params.yaml" > "$work/params.yaml"
grep -q '^    epochs: 16$' "$work/params.yaml" || { echo "error: params.yaml has no student 'epochs: 8' line to double" >&2; exit 1; }
cd "$work"
for model in scratch kd ls; do
  for seed in 0 1 2; do
    for command in train evaluate dissect; do
      "$kdinterp" "$command" "$model-$seed" --params params.yaml --outputs outputs
    done
  done
done
echo "done: $work/outputs/evaluation/*/metrics.json and $work/outputs/dissection/*/summary.json"
