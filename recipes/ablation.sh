#!/usr/bin/env bash
# MiniLM's ablation at small scale: one teacher, one corpus, one student shape, the same steps and
# tokens for every distilled variant, zero-shot XNLI (and optionally MLQA) for each.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<'TXT'
Usage: bash recipes/ablation.sh [--preset tiny|e5-small|e5-small-full] [--knob value ...]
Variants (VARIANTS): minilm (attention + value relation), attention (attention only), minilmv2
(Q-Q/K-K/V-V, RELATION_HEADS_V2 relation heads), hidden (last-layer hidden-state MSE with a learned
projection), logit_kd (soft MLM logits; teachers with an MLM head only), mlm (no teacher), ta (MiniLM
through a teacher assistant; STEPS/2 + STEPS/2 steps, the same total), none (the student as
initialised, no distillation: with STUDENT_INIT=teacher, what copying the teacher's layers alone gives),
layerwise (MiniLM at every student layer against the teacher layer it stands for, plus HIDDEN_WEIGHT x
their hidden-state MSE).
Presets: configs/ablation/{tiny,e5-small,e5-small-full}.yaml (tiny is the default; e5-small is sized
for 90 minutes on 2 cores with bf16, e5-small-full is every row in fp32, hours). Every knob of
recipes/xlmr_to_small.sh applies to every row, except what defines a row (its objective, relations
and layer pairs: every row but layerwise distils the papers' single last-layer pair).
Writes OUTPUT/ablation.md, ablation.json and ablation.png.
Knobs (default, or the value of --preset when one is given):
TXT
  knob_help ablation
}

parse_knobs "$@"
load_knobs ablation tiny
check_inputs
mkdir -p "${OUTPUT}"
started=$(date +%s)

TEACHER_DIR="$(resolve_teacher "${OUTPUT}")"
# run_variant VARIANT SEED: train (or initialise) one student and evaluate it
run_variant() {
  local variant="$1" run="${OUTPUT}/variants/$1/seed$2" model
  export SEED="$2"
  local paper=(--distil-layers last --hidden-weight 0)  # one last-layer pair, whatever the preset says
  case "${variant}" in
    minilm)    model="$(distill "${TEACHER_DIR}" "${run}" "${STEPS}" --objective minilm "${paper[@]}")" ;;
    attention) model="$(distill "${TEACHER_DIR}" "${run}" "${STEPS}" --objective minilm --relations attention "${paper[@]}")" ;;
    minilmv2)  model="$(distill "${TEACHER_DIR}" "${run}" "${STEPS}" --objective minilmv2 --relation-heads "${RELATION_HEADS_V2}" "${paper[@]}")" ;;
    layerwise) model="$(distill "${TEACHER_DIR}" "${run}" "${STEPS}" --objective minilm --distil-layers uniform \
                 --hidden-weight "${HIDDEN_WEIGHT}")" ;;
    hidden)    model="$(distill "${TEACHER_DIR}" "${run}" "${STEPS}" --objective hidden "${paper[@]}")" ;;
    logit_kd)  model="$(distill "${TEACHER_DIR}" "${run}" "${STEPS}" --objective logit_kd "${paper[@]}")" ;;
    mlm)       model="$(distill "${TEACHER_DIR}" "${run}" "${STEPS}" --objective mlm "${paper[@]}")" ;;
    ta)        local assistant
               assistant="$(distill "${TEACHER_DIR}" "${run}/assistant" $(( STEPS / 2 )) --objective minilm \
                 --student-layers "${ASSISTANT_LAYERS}" --student-hidden "${ASSISTANT_HIDDEN}" --student-heads "${ASSISTANT_HEADS}" \
                 "${paper[@]}")"
               model="$(distill "${assistant}" "${run}" $(( STEPS - STEPS / 2 )) --objective minilm --teacher-layer -1 "${paper[@]}")" ;;
    none)      model="${run}/model"
               args_for student  # the shape, init and seed the distilled rows get
               [[ -f "${model}/config.json" ]] || timed student_init "${run}" "${PYTHON}" -m mminilm.models.student "${STAGE_ARGS[@]}" --teacher "${TEACHER_DIR}" \
                 --output-dir "${run}" >/dev/null ;;
    *) die "VARIANTS: unknown variant '${variant}'" ;;
  esac
  evaluate "${model}" "${run}/eval"
}

# The reference first, and the table rewritten after every row: a run of hours (the e5-small
# preset on a CPU) shows what it has so far, and a stopped one resumes where it was.
export SEED="${SEEDS%% *}"
evaluate "${TEACHER_DIR}" "${OUTPUT}/teacher_eval"
table() { "${PYTHON}" -m eval.ablation "${OUTPUT}" --teacher-eval "${OUTPUT}/teacher_eval" "$@" >/dev/null; }
for seed in ${SEEDS}; do
  for variant in ${VARIANTS}; do run_variant "${variant}" "${seed}"; table --no-speed; done
done
for extra in ${REPEAT}; do run_variant "${extra%%:*}" "${extra##*:}"; table --no-speed; done
table
stage_summary > "${OUTPUT}/work.json"
log "ablation done in $(( $(date +%s) - started )) s: ${OUTPUT}/ablation.md"
