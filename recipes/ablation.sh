#!/usr/bin/env bash
# Reproduce MiniLM's ablation at small scale: one teacher, one corpus, one student shape, the same
# steps and tokens for every variant, zero-shot XNLI (and optionally MLQA) for each, >= 2 seeds.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<'TXT'
Usage: bash recipes/ablation.sh [--knob value ...]      (tiny-scale by default, real scale by knobs)
Variants (VARIANTS): minilm (attention + value relation, last layer), attention (attention only),
minilmv2 (Q-Q/K-K/V-V, RELATION_HEADS_V2 relation heads), logit_kd (soft MLM logits), mlm (no teacher),
ta (MiniLM through a teacher assistant; STEPS/2 + STEPS/2 steps, the same total).
  TEACHER           'tiny' (pretrain one, as the tiny preset) or a model dir   (tiny)
  SEEDS             seeds per variant                                          (1 2)
  VARIANTS          which rows                                                 (minilm attention minilmv2 logit_kd mlm ta)
  RELATION_HEADS_V2 MiniLMv2 relation heads                                    (8)
  EVAL_TASKS        xnli and/or mlqa                                           (xnli)
  OUTPUT            run directory                                              (runs/ablation)
  ASSISTANT_LAYERS / ASSISTANT_HIDDEN / ASSISTANT_HEADS  teacher assistant    (3 / 192 / 4)
All knobs of recipes/xlmr_to_small.sh --preset tiny apply (STEPS, STUDENT_*, MAX_LENGTH, LR, XNLI_*, ...).
Writes OUTPUT/ablation.md, ablation.json and ablation.png.
TXT
}

parse_knobs "$@"
: "${OUTPUT:=runs/ablation}"
: "${EVAL_TASKS:=xnli}"
apply_tiny_preset
apply_default_knobs
: "${SEEDS:=1 2}"
: "${VARIANTS:=minilm attention minilmv2 logit_kd mlm ta}"
: "${RELATION_HEADS_V2:=8}"
: "${ASSISTANT_LAYERS:=3}"
: "${ASSISTANT_HIDDEN:=192}"
: "${ASSISTANT_HEADS:=4}"
check_inputs
mkdir -p "${OUTPUT}"
started=$(date +%s)

TEACHER_DIR="$(resolve_teacher "${OUTPUT}")"
shape=(--student-layers "${STUDENT_LAYERS}" --student-hidden "${STUDENT_HIDDEN}" --student-heads "${STUDENT_HEADS}")
for seed in ${SEEDS}; do
  for variant in ${VARIANTS}; do
    run="${OUTPUT}/variants/${variant}/seed${seed}"
    export SEED="${seed}"
    case "${variant}" in
      minilm)    model="$(distill "${TEACHER_DIR}" "${run}" "${STEPS}" --objective minilm "${shape[@]}")" ;;
      attention) model="$(distill "${TEACHER_DIR}" "${run}" "${STEPS}" --objective minilm --relations attention "${shape[@]}")" ;;
      minilmv2)  model="$(distill "${TEACHER_DIR}" "${run}" "${STEPS}" --objective minilmv2 --relation-heads "${RELATION_HEADS_V2}" "${shape[@]}")" ;;
      logit_kd)  model="$(distill "${TEACHER_DIR}" "${run}" "${STEPS}" --objective logit_kd "${shape[@]}")" ;;
      mlm)       model="$(distill "${TEACHER_DIR}" "${run}" "${STEPS}" --objective mlm "${shape[@]}")" ;;
      ta)        assistant="$(distill "${TEACHER_DIR}" "${run}/assistant" $(( STEPS / 2 )) --objective minilm \
                   --student-layers "${ASSISTANT_LAYERS}" --student-hidden "${ASSISTANT_HIDDEN}" --student-heads "${ASSISTANT_HEADS}")"
                 model="$(distill "${assistant}" "${run}" $(( STEPS - STEPS / 2 )) --objective minilm "${shape[@]}")" ;;
      *) die "VARIANTS: unknown variant '${variant}'" ;;
    esac
    evaluate "${model}" "${run}/eval"
  done
done
export SEED="${SEEDS%% *}"
evaluate "${TEACHER_DIR}" "${OUTPUT}/teacher_eval"
"${PYTHON}" -m eval.ablation "${OUTPUT}" --teacher-eval "${OUTPUT}/teacher_eval" >/dev/null
log "ablation done in $(( $(date +%s) - started )) s: ${OUTPUT}/ablation.md"
