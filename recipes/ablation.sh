#!/usr/bin/env bash
# MiniLM's ablation at small scale: one teacher, one corpus, one student shape, the same steps and
# tokens for every distilled variant, zero-shot XNLI (and optionally MLQA) for each.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<'TXT'
Usage: bash recipes/ablation.sh [--preset e5-small|tiny] [--knob value ...]
Variants (VARIANTS): minilm (attention + value relation), attention (attention only), minilmv2
(Q-Q/K-K/V-V, RELATION_HEADS_V2 relation heads), hidden (last-layer hidden-state MSE with a learned
projection), logit_kd (soft MLM logits; teachers with an MLM head only), mlm (no teacher), ta (MiniLM
through a teacher assistant; STEPS/2 + STEPS/2 steps, the same total), none (the student as
initialised, no distillation: with STUDENT_INIT=teacher, what copying the teacher's layers alone gives).
  PRESET            tiny (pretrains its own teacher) | e5-small (the real teacher, 4-bit weights)  (tiny)
  SEEDS             seeds for every variant                                    (1)
  REPEAT            extra runs, variant:seed, to show the noise                (minilm:2)
  VARIANTS          which rows       (tiny: minilm attention minilmv2 logit_kd mlm ta;
                                      e5-small: minilm attention minilmv2 hidden mlm ta none)
  RELATION_HEADS_V2 MiniLMv2 relation heads                                    (tiny 8, e5-small 12)
  EVAL_TASKS        retrieval, xnli and/or mlqa                                (retrieval xnli)
  OUTPUT            run directory                                              (runs/ablation[-e5-small])
  ASSISTANT_LAYERS / ASSISTANT_HIDDEN / ASSISTANT_HEADS  teacher assistant    (tiny 3/192/4, e5-small 9/384/12)
All knobs of recipes/xlmr_to_small.sh apply (STEPS, STUDENT_*, TEACHER_LAYER, RELATIONS, MAX_LENGTH,
LR, XNLI_*, ...). Writes OUTPUT/ablation.md, ablation.json and ablation.png.
TXT
}

RECIPE_KNOBS="SEEDS REPEAT VARIANTS RELATION_HEADS_V2 ASSISTANT_LAYERS ASSISTANT_HIDDEN ASSISTANT_HEADS"
parse_knobs "$@"
PRESET="${PRESET:-tiny}"
: "${EVAL_TASKS:=retrieval xnli}"
case "${PRESET}" in
  tiny) : "${OUTPUT:=runs/ablation}"; apply_tiny_preset
        : "${VARIANTS:=minilm attention minilmv2 logit_kd mlm ta}"; : "${RELATION_HEADS_V2:=8}"
        : "${ASSISTANT_LAYERS:=3}"; : "${ASSISTANT_HIDDEN:=192}"; : "${ASSISTANT_HEADS:=4}" ;;
  # e5-small: a 4-layer student and 100 steps per row, so a row costs ~10 minutes on 2 CPU cores;
  # XNLI exactly as the e5-small preset (same rows, epochs, lr), so its teacher evaluation applies.
  # The rows measured so far (docs/results/ablation-e5-small*) ran untrimmed in fp32: pinned, so new
  # rows stay comparable (the run dirs refuse a changed configuration anyway).
  e5-small) : "${OUTPUT:=runs/ablation-e5-small}"; : "${STUDENT_LAYERS:=4}"; : "${STEPS:=100}"; : "${WARMUP:=10}"
        : "${TRIM_VOCAB:=0}"; : "${PRECISION:=fp32}"; : "${SAVE_EVERY:=50}"; : "${PROBE_EVERY:=25}"
        apply_e5_small_preset
        : "${VARIANTS:=minilm attention minilmv2 hidden mlm ta none}"; : "${RELATION_HEADS_V2:=12}"
        : "${ASSISTANT_LAYERS:=8}"; : "${ASSISTANT_HIDDEN:=384}"; : "${ASSISTANT_HEADS:=12}" ;;
  *) die "PRESET must be 'tiny' or 'e5-small', got '${PRESET}'" ;;
esac
apply_default_knobs
: "${SEEDS:=1}"
REPEAT="${REPEAT-minilm:2}"  # REPEAT= (empty) runs no extra seeds
check_inputs
mkdir -p "${OUTPUT}"
started=$(date +%s)

TEACHER_DIR="$(resolve_teacher "${OUTPUT}")"
shape=(--student-layers "${STUDENT_LAYERS}" --student-hidden "${STUDENT_HIDDEN}" --student-heads "${STUDENT_HEADS}")
layer=(--teacher-layer "${TEACHER_LAYER}")

# run_variant VARIANT SEED: train (or initialise) one student and evaluate it
run_variant() {
  local variant="$1" run="${OUTPUT}/variants/$1/seed$2" model
  export SEED="$2"
  case "${variant}" in
    minilm)    model="$(distill "${TEACHER_DIR}" "${run}" "${STEPS}" --objective minilm --relations "${RELATIONS}" "${layer[@]}" "${shape[@]}")" ;;
    attention) model="$(distill "${TEACHER_DIR}" "${run}" "${STEPS}" --objective minilm --relations attention "${layer[@]}" "${shape[@]}")" ;;
    minilmv2)  model="$(distill "${TEACHER_DIR}" "${run}" "${STEPS}" --objective minilmv2 --relation-heads "${RELATION_HEADS_V2}" "${layer[@]}" "${shape[@]}")" ;;
    hidden)    model="$(distill "${TEACHER_DIR}" "${run}" "${STEPS}" --objective hidden "${shape[@]}")" ;;
    logit_kd)  model="$(distill "${TEACHER_DIR}" "${run}" "${STEPS}" --objective logit_kd "${shape[@]}")" ;;
    mlm)       model="$(distill "${TEACHER_DIR}" "${run}" "${STEPS}" --objective mlm "${shape[@]}")" ;;
    ta)        local assistant
               assistant="$(distill "${TEACHER_DIR}" "${run}/assistant" $(( STEPS / 2 )) --objective minilm --relations "${RELATIONS}" \
                 "${layer[@]}" --student-layers "${ASSISTANT_LAYERS}" --student-hidden "${ASSISTANT_HIDDEN}" --student-heads "${ASSISTANT_HEADS}")"
               model="$(distill "${assistant}" "${run}" $(( STEPS - STEPS / 2 )) --objective minilm --relations "${RELATIONS}" "${shape[@]}")" ;;
    none)      model="${run}/model"
               [[ -f "${model}/config.json" ]] || "${PYTHON}" -m mminilm.student --teacher "${TEACHER_DIR}" --output-dir "${run}" \
                 "${shape[@]}" --student-init "${STUDENT_INIT}" --seed "${SEED}" >/dev/null ;;
    *) die "VARIANTS: unknown variant '${variant}'" ;;
  esac
  evaluate "${model}" "${run}/eval"
}

for seed in ${SEEDS}; do
  for variant in ${VARIANTS}; do run_variant "${variant}" "${seed}"; done
done
for extra in ${REPEAT}; do run_variant "${extra%%:*}" "${extra##*:}"; done
export SEED="${SEEDS%% *}"
evaluate "${TEACHER_DIR}" "${OUTPUT}/teacher_eval"
"${PYTHON}" -m eval.ablation "${OUTPUT}" --teacher-eval "${OUTPUT}/teacher_eval" >/dev/null
log "ablation done in $(( $(date +%s) - started )) s: ${OUTPUT}/ablation.md"
