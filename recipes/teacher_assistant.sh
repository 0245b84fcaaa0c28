#!/usr/bin/env bash
# Teacher assistant (MiniLM §4): distil teacher -> mid-size assistant, then assistant -> student.
# A large width/depth gap distils worse than two smaller ones. Same knobs as xlmr_to_small.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<'TXT'
Usage: bash recipes/teacher_assistant.sh [--preset tiny] [--knob value ...]
All knobs of recipes/xlmr_to_small.sh (see its --help), plus:
  ASSISTANT_LAYERS / ASSISTANT_HIDDEN / ASSISTANT_HEADS   assistant shape (12 / 768 / 12; tiny: 3 / 192 / 4)
  ASSISTANT_STEPS   stage-1 steps (default STEPS/2, so both stages together cost STEPS steps)
  STUDENT_STEPS     stage-2 steps (default STEPS - ASSISTANT_STEPS)
MiniLM (v1) needs the assistant to have the teacher's head count and the student the assistant's.
TXT
}

RECIPE_KNOBS="ASSISTANT_LAYERS ASSISTANT_HIDDEN ASSISTANT_HEADS ASSISTANT_STEPS STUDENT_STEPS"
parse_knobs "$@"
PRESET="${PRESET:-default}"
case "${PRESET}" in
  tiny) apply_tiny_preset; : "${OUTPUT:=runs/tiny_ta}"; : "${ASSISTANT_LAYERS:=3}"; : "${ASSISTANT_HIDDEN:=192}"; : "${ASSISTANT_HEADS:=4}" ;;
  default) : "${OUTPUT:=runs/teacher_assistant}" ;;
  *) die "PRESET must be 'default' or 'tiny', got '${PRESET}'" ;;
esac
apply_default_knobs
: "${ASSISTANT_LAYERS:=12}"
: "${ASSISTANT_HIDDEN:=768}"
: "${ASSISTANT_HEADS:=12}"
: "${ASSISTANT_STEPS:=$(( STEPS / 2 ))}"
: "${STUDENT_STEPS:=$(( STEPS - ASSISTANT_STEPS ))}"
check_inputs
mkdir -p "${OUTPUT}"
started=$(date +%s)

TEACHER_DIR="$(resolve_teacher "${OUTPUT}")"
common=(--objective "${METHOD}" --relations "${RELATIONS}" --relation-heads "${RELATION_HEADS}")
ASSISTANT_DIR="$(distill "${TEACHER_DIR}" "${OUTPUT}/assistant" "${ASSISTANT_STEPS}" "${common[@]}" \
  --teacher-layer "${TEACHER_LAYER}" --student-layers "${ASSISTANT_LAYERS}" --student-hidden "${ASSISTANT_HIDDEN}" \
  --student-heads "${ASSISTANT_HEADS}")"
STUDENT_DIR="$(distill "${ASSISTANT_DIR}" "${OUTPUT}/student" "${STUDENT_STEPS}" "${common[@]}" \
  --student-layers "${STUDENT_LAYERS}" --student-hidden "${STUDENT_HIDDEN}" --student-heads "${STUDENT_HEADS}")"

evaluate_and_report "${STUDENT_DIR}" "${TEACHER_DIR}"
echo "{\"student\": \"${STUDENT_DIR}\", \"assistant\": \"${ASSISTANT_DIR}\", \"teacher\": \"${TEACHER_DIR}\", \"wall_time_s\": $(( $(date +%s) - started ))}" \
  > "${OUTPUT}/recipe_summary.json"
log "done in $(( $(date +%s) - started )) s: student ${STUDENT_DIR}"
