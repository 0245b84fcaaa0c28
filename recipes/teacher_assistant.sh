#!/usr/bin/env bash
# Teacher assistant (MiniLM §4): distil teacher -> mid-size assistant, then assistant -> student.
# A large width/depth gap distils worse than two smaller ones. Same knobs as xlmr_to_small.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<'TXT'
Usage: bash recipes/teacher_assistant.sh [--preset tiny] [--knob value ...]
All knobs of recipes/xlmr_to_small.sh, plus ASSISTANT_LAYERS / ASSISTANT_HIDDEN / ASSISTANT_HEADS
(the assistant's shape), ASSISTANT_STEPS (stage 1, default STEPS/2, so both stages together cost
STEPS steps) and STUDENT_STEPS (stage 2, default STEPS - ASSISTANT_STEPS). MiniLM (v1) needs the
assistant to have the teacher's head count and the student the assistant's.
Knobs (default, or the value of --preset when one is given):
TXT
  knob_help teacher_assistant
}

parse_knobs "$@"
load_knobs teacher_assistant default
: "${ASSISTANT_STEPS:=$(( STEPS / 2 ))}"
: "${STUDENT_STEPS:=$(( STEPS - ASSISTANT_STEPS ))}"
check_inputs
mkdir -p "${OUTPUT}"
started=$(date +%s)

TEACHER_DIR="$(resolve_teacher "${OUTPUT}")"
# Stage 1 distils TEACHER_LAYER of the teacher into the assistant; stage 2 the assistant's last layer.
ASSISTANT_DIR="$(distill "${TEACHER_DIR}" "${OUTPUT}/assistant" "${ASSISTANT_STEPS}" \
  --student-layers "${ASSISTANT_LAYERS}" --student-hidden "${ASSISTANT_HIDDEN}" --student-heads "${ASSISTANT_HEADS}")"
STUDENT_DIR="$(distill "${ASSISTANT_DIR}" "${OUTPUT}/student" "${STUDENT_STEPS}" --teacher-layer -1)"

evaluate_and_report "${STUDENT_DIR}" "${TEACHER_DIR}"
work="$(stage_summary)"  # the work per stage over every invocation on OUTPUT (a resumed run's wall time is less)
echo "{\"student\": \"${STUDENT_DIR}\", \"assistant\": \"${ASSISTANT_DIR}\", \"teacher\": \"${TEACHER_DIR}\", \"wall_time_s\": $(( $(date +%s) - started )), \"work\": ${work}}" \
  > "${OUTPUT}/recipe_summary.json"
log "done in $(( $(date +%s) - started )) s: student ${STUDENT_DIR}"
