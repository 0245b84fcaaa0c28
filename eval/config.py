"""The evaluation CLIs' options, one dataclass each (eval.xnli, eval.mlqa, eval.retrieval), free of torch.

`mminilm.cli` generates each CLI (flags, `--help`, `--config` YAML) from these; the recipes read
their defaults (`python -m mminilm.presets help`) without importing torch or transformers.
"""

from __future__ import annotations

from dataclasses import dataclass

from mminilm.cli import REQUIRED, option
from mminilm.languages import MLQA_LANGUAGES, XNLI_LANGUAGES
from mminilm.training import PRECISIONS

SOURCES = {"xnli": "retrieval", "mlqa": "retrieval-mlqa"}  # sentence source -> task (output folder)
# An evaluation OUT already holds is reused when it was made with the same model and options, and
# refused otherwise (eval.previous); this redoes it instead.
OVERWRITE_HELP = "redo an evaluation OUT already holds even though it was made with other options or model files"
DEFAULT_MAX_SENTENCES = 1000  # per language; 1000 distinct XNLI premises take ~1 min per model on 2 CPU cores


@dataclass
class FinetuneSettings:
    epochs: float = 2.0
    batch_size: int = 32
    lr: float = 2e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    seed: int = 42
    precision: str = "auto"
    log_every: int = 10
    # English-only updates move only the English rows of the word-embedding matrix, pulling them
    # away from the other languages' rows that zero-shot transfer relies on; frozen, every
    # language keeps the alignment it had (and the step skips the largest matrix's optimiser work).
    freeze_word_embeddings: bool = False
    # Batches of similar length (transformers' group_by_length: shuffle, sort within mega-batches of
    # 50 batches): each batch is cut to its longest pair, so less padding is computed. It changes
    # which pairs share a batch, hence the result; off by default, so every number keeps its protocol.
    group_by_length: bool = False


@dataclass(kw_only=True)
class TransferConfig:
    """The options every zero-shot transfer CLI shares (eval.xnli, eval.mlqa); a task subclass adds
    its own and overrides the task-specific defaults (lr, max_length, eval_batch_size)."""
    model: str = option(REQUIRED, "transformers model dir (with its tokenizer)")
    output_dir: str = option(REQUIRED, "writes OUT/TASK/report.json and predictions/")
    data_dir: str | None = option(None, "shared data folder (default: $MMINILM_DATA)")
    max_train_examples: int = option(0, "English training examples, 0 = all")
    max_eval_examples: int = option(0, "first N test examples per language (pair), the same for every model; 0 = all")
    epochs: float = option(FinetuneSettings.epochs, "fine-tuning epochs")
    batch_size: int = option(FinetuneSettings.batch_size, "fine-tuning batch size")
    eval_batch_size: int = option(64, "inference batch size")
    lr: float = option(FinetuneSettings.lr, "peak learning rate (linear warmup 10%, then decay)")
    max_length: int = option(128, "tokens per example (window)")
    seed: int = option(FinetuneSettings.seed, "seed for init and shuffling")
    device: str = option("auto", "auto | cpu | cuda | cuda:N | mps")
    precision: str = option(FinetuneSettings.precision, "autocast: auto = bf16 where supported", choices=PRECISIONS)
    freeze_word_embeddings: bool = option(FinetuneSettings.freeze_word_embeddings,
                                          "keep the word-embedding matrix fixed while fine-tuning on English")
    group_by_length: bool = option(FinetuneSettings.group_by_length,
                                   "fine-tune on batches of similar length (less padding, other batches)")
    overwrite: bool = option(False, OVERWRITE_HELP)

    def finetune_settings(self) -> "FinetuneSettings":
        return FinetuneSettings(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, seed=self.seed,
                                precision=self.precision, freeze_word_embeddings=self.freeze_word_embeddings,
                                group_by_length=self.group_by_length)


PROTOCOLS = ("auto", "standard", "offline", "xnli-dev-split")
ENGLISH_TRAIN = {"xnli-dev": ("xnli/dev/en.tsv",), "xnli-dev+sick": ("xnli/dev/en.tsv", "nli_en/SICK.txt")}
STANDARD_ONLY = ("train_file", "dev_file", "test_file", "test_dir")


@dataclass(kw_only=True)
class XnliConfig(TransferConfig):
    output_dir: str = option(REQUIRED, "writes OUT/xnli/report.json and predictions/")
    languages: list[str] = option(list(XNLI_LANGUAGES), "test languages")
    protocol: str = option("auto", "auto: standard when --train-file is given, else offline (see above)",
                           choices=PROTOCOLS)
    english_train: str = option("xnli-dev", "offline protocol: English NLI to fine-tune on", choices=tuple(ENGLISH_TRAIN))
    train_file: str | None = option(None, "MNLI train TSV (standard protocol)")
    dev_file: str | None = option(None, "XNLI dev TSV, English rows select the best epoch")
    test_file: str | None = option(None, "XNLI-1.0 xnli.test.tsv (all languages)")
    test_dir: str | None = option(None, "dir of per-language {lang}.tsv test files")
    eval_batch_size: int = option(128, "inference batch size")
    lr: float = option(2e-5, "peak learning rate (linear warmup 10%, then decay)")
    runs: int = option(1, "fine-tune this many times (seeds seed, seed+1, ...) and report the mean: on 2490 English "
                          "pairs one run's average moves by about 2 points with the seed alone")


@dataclass(kw_only=True)
class MlqaConfig(TransferConfig):
    model: str = option(REQUIRED, "transformers model dir (with its fast tokenizer)")
    output_dir: str = option(REQUIRED, "writes OUT/mlqa/report.json and predictions/")
    languages: list[str] = option(list(MLQA_LANGUAGES), "context (= question) languages")
    train_files: list[str] = option([], "English SQuAD v1.1-format training files (default: $MMINILM_DATA/qa_train_en/*.json)")
    mlqa_dir: str | None = option(None, "dir of MLQA dev/test-context-*-question-*.json files")
    gxlt: bool = option(False, "also the 7x7 generalized cross-lingual matrix")
    lr: float = option(3e-5, "peak learning rate (linear warmup 10%, then decay)")
    max_length: int = option(384, "tokens per window")
    doc_stride: int = option(128, "overlap of consecutive windows, in tokens")
    max_answer_length: int = option(30, "longest predicted answer, in tokens")
    max_query_length: int = option(64, "questions are cut to this many tokens")
    n_best: int = option(20, "start/end candidates per window")


@dataclass(kw_only=True)
class RetrievalConfig:
    model: str = option(REQUIRED, "transformers model dir (with its tokenizer)")
    output_dir: str = option(REQUIRED, "writes OUT/retrieval[-mlqa]/report.json and predictions/")
    languages: list[str] = option(list(XNLI_LANGUAGES), "languages paired with English")
    sources: list[str] = option(list(SOURCES), "xnli: distinct XNLI test premises; mlqa: MLQA dev questions",
                                choices=tuple(SOURCES))
    layer: str = option("-1", "hidden_states index to pool (0 = embeddings, -1 = last), or 'all' (every layer in "
                              "by_layer; the table shows the last)")
    max_sentences: int = option(DEFAULT_MAX_SENTENCES, "first N aligned pairs per language, the same for every "
                                                       "model; 0 = all")
    batch_size: int = option(64, "inference batch size")
    max_length: int = option(128, "tokens per sentence")
    data_dir: str | None = option(None, "shared data folder (default: $MMINILM_DATA)")
    device: str = option("auto", "auto | cpu | cuda | cuda:N | mps")
    precision: str = option("auto", "autocast: auto = bf16 where supported", choices=PRECISIONS)
    overwrite: bool = option(False, OVERWRITE_HELP)
