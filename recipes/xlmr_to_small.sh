#!/usr/bin/env bash
# Distil a multilingual teacher into a small student with MiniLM, then measure zero-shot transfer
# (XNLI, MLQA) for student and teacher and write the per-language report.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<'TXT'
Usage: bash recipes/xlmr_to_small.sh [--preset e5-small|tiny] [--knob value ...]
Every knob is an environment variable (STEPS=1000) or a flag (--steps 1000). The default preset
is the real thing: teacher xlm-roberta-base, CORPUS (required) with the 15 XNLI languages,
student L12-H384-A12, MiniLM on the last layer, 512-token blocks, 400k steps. A preset
(configs/PRESET.yaml) holds only what it changes. Re-running continues where a run stopped
(checkpoints are resumed, finished stages skipped).
Knobs (default, or the value of --preset when one is given):
TXT
  knob_help xlmr_to_small
}

parse_knobs "$@"
load_knobs xlmr_to_small default
check_inputs
mkdir -p "${OUTPUT}"
started=$(date +%s)

TEACHER_DIR="$(resolve_teacher "${OUTPUT}")"
STUDENT_DIR="$(distill "${TEACHER_DIR}" "${OUTPUT}/student" "${STEPS}")"

evaluate_and_report "${STUDENT_DIR}" "${TEACHER_DIR}"
work="$(stage_summary)"  # the work per stage over every invocation on OUTPUT (a resumed run's wall time is less)
echo "{\"student\": \"${STUDENT_DIR}\", \"teacher\": \"${TEACHER_DIR}\", \"wall_time_s\": $(( $(date +%s) - started )), \"work\": ${work}}" \
  > "${OUTPUT}/recipe_summary.json"
log "done in $(( $(date +%s) - started )) s: student ${STUDENT_DIR}"
