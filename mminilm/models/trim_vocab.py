"""`python -m mminilm.models.trim_vocab`: keep only the vocabulary a run's languages use.

A multilingual student is mostly embedding table (250k pieces x hidden). For a known set of
languages most rows are never read, yet they cost memory, disk, optimizer state and time per step.
Trimming (Ushio et al. 2023, "An Efficient Multilingual Language Model Compression through
Vocabulary Trimming") keeps, per language, the pieces that cover `--coverage` of its corpus tokens
(or a `--max-pieces` budget shared across languages by per-language frequency), plus the special
tokens and, by default, every single-character piece (the fallback that keeps any text in a known
script free of new <unk>). Counting is per language, so a small language is not crowded out.

The output loads with plain `AutoModel`/`AutoTokenizer`: embedding rows (and an MLM head's rows
and bias) are re-indexed, `tokenizer.json`'s Unigram vocabulary and special-token ids are
rewritten, and a `sentencepiece.bpe.model` is trimmed by editing its `ModelProto` (same pieces,
scores and normaliser). A SentencePiece Unigram model without a piece re-segments with the
remaining ones, so a sentence's ids change only when its original segmentation used a dropped
piece; `trim_report.json` measures that on held-out XNLI/MLQA text per language.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from mminilm.training.atomic import atomic_write_file
from mminilm.languages import XNLI_LANGUAGES

SPM_FILE_NAME = "sentencepiece.bpe.model"
TOKENIZER_FILE = "tokenizer.json"
REPORT_FILE = "trim_report.json"
WORD_BOUNDARY = "\u2581"  # SentencePiece's meta space


@dataclass
class TrimConfig:
    model: str
    corpus: str
    output_dir: str
    languages: list[str] = field(default_factory=lambda: list(XNLI_LANGUAGES))
    coverage: float = 0.9999
    max_pieces: int = 0
    min_count: int = 1
    keep_characters: bool = True
    max_lines: int = 0
    eval_data: str | None = None
    overwrite: bool = False
    reuse: bool = False


# --reuse returns an earlier result only when these agree (the held-out check does not change the model)
_SAME_FOR_REUSE = ("model", "corpus", "languages", "coverage", "max_pieces", "min_count", "keep_characters", "max_lines")


# ---------------------------------------------------------------- counting and selection

def _lines(path: Path, max_lines: int) -> Iterable[str]:
    from corpora.reader import iter_lines

    for count, line in enumerate(iter_lines(path)):
        if max_lines and count >= max_lines:
            return
        if line.strip():
            yield line


def count_pieces(tokenizer, files: dict[str, list[Path]], max_lines: int = 0, batch: int = 1000) -> dict[str, Counter]:
    """Token-id frequencies per language over its corpus files (no special tokens).

    Corpus lines are counted whole: a line longer than the model's window is fine here, so the
    window is lifted for the count (the tokenizer warns about "indexing errors" otherwise).
    """
    with _whole_texts(tokenizer):
        return _count(tokenizer, files, max_lines, batch)


@contextlib.contextmanager
def _whole_texts(*tokenizers):
    """Lift the tokenizers' model window while whole lines/contexts are tokenized (only counted, never run)."""
    windows = [t.model_max_length for t in tokenizers]
    for tokenizer in tokenizers:
        tokenizer.model_max_length = sys.maxsize
    try:
        yield
    finally:
        for tokenizer, window in zip(tokenizers, windows):
            tokenizer.model_max_length = window


def _count(tokenizer, files: dict[str, list[Path]], max_lines: int, batch: int) -> dict[str, Counter]:
    counts: dict[str, Counter] = {}
    for lang, paths in files.items():
        counter: Counter = Counter()
        pending: list[str] = []
        for path in paths:
            for line in tqdm(_lines(path, max_lines), desc=f"counting {lang}", dynamic_ncols=True, leave=False,
                             mininterval=1.0 if sys.stderr.isatty() else 30.0):
                pending.append(line)
                if len(pending) == batch:
                    for ids in tokenizer(pending, add_special_tokens=False)["input_ids"]:
                        counter.update(ids)
                    pending = []
        if pending:
            for ids in tokenizer(pending, add_special_tokens=False)["input_ids"]:
                counter.update(ids)
        counts[lang] = counter
    return counts


def select_pieces(counts: dict[str, Counter], always: set[int], coverage: float, max_pieces: int = 0,
                  min_count: int = 1) -> list[int]:
    """Sorted ids to keep: `always` plus, per language, its most frequent pieces.

    Coverage mode: each language keeps its most frequent pieces until they cover `coverage` of its
    tokens. Budget mode (`max_pieces` > 0, the whole vocabulary size): pieces are ranked by their
    largest per-language share (count / language total), so every language's frequent pieces come
    before any language's rare ones.
    """
    if max_pieces:
        share: dict[int, float] = {}
        for counter in counts.values():
            total = sum(counter.values()) or 1
            for piece, count in counter.items():
                if count >= min_count:
                    share[piece] = max(share.get(piece, 0.0), count / total)
        budget = max_pieces - len(always)
        if budget < 0:
            raise ValueError(f"--max-pieces {max_pieces} is smaller than the {len(always)} pieces always kept "
                             f"(special tokens and single characters; --no-keep-characters drops the latter)")
        ranked = [p for p, _ in sorted(share.items(), key=lambda item: (-item[1], item[0])) if p not in always]
        return sorted(always | set(ranked[:budget]))
    kept = set(always)
    for counter in counts.values():
        total = sum(counter.values())
        covered = 0
        for piece, count in sorted(counter.items(), key=lambda item: (-item[1], item[0])):
            if covered >= coverage * total or count < min_count:
                break
            kept.add(piece)
            covered += count
    return sorted(kept)


def character_pieces(vocab: Sequence[str]) -> set[int]:
    """Ids of pieces that are one character (with or without the word-boundary mark)."""
    return {i for i, piece in enumerate(vocab) if len(piece.removeprefix(WORD_BOUNDARY)) <= 1}


# ---------------------------------------------------------------- rewriting tokenizer and model

def trim_tokenizer_json(data: dict[str, Any], kept: list[int]) -> dict[str, Any]:
    """tokenizer.json with only `kept` Unigram pieces (same order, scores, normaliser) and remapped special ids."""
    model = data["model"]
    if model.get("type") != "Unigram":
        raise ValueError(f"tokenizer.json has a {model.get('type')} model; trimming supports SentencePiece Unigram "
                         f"vocabularies (XLM-R and its descendants)")
    new_id = {old: new for new, old in enumerate(kept)}
    trimmed = json.loads(json.dumps(data))
    trimmed["model"]["vocab"] = [model["vocab"][i] for i in kept]
    if model.get("unk_id") is not None:
        trimmed["model"]["unk_id"] = new_id[model["unk_id"]]
    for token in trimmed.get("added_tokens", []):
        token["id"] = new_id[token["id"]]
    processor = trimmed.get("post_processor") or {}
    processors = processor.get("processors", [processor]) if processor else []
    for part in processors:
        for special in (part.get("special_tokens") or {}).values():
            special["ids"] = [new_id[i] for i in special["ids"]]
        for key in ("sep", "cls"):  # RobertaProcessing / BertProcessing: [token, id]
            if isinstance(part.get(key), list):
                part[key][1] = new_id[part[key][1]]
    return trimmed


def trim_tokenizer_config(data: dict[str, Any], kept: list[int]) -> dict[str, Any]:
    """tokenizer_config.json with its `added_tokens_decoder` keyed by the new ids."""
    new_id = {old: new for new, old in enumerate(kept)}
    trimmed = dict(data)
    if "added_tokens_decoder" in data:
        trimmed["added_tokens_decoder"] = {str(new_id[int(k)]): v for k, v in data["added_tokens_decoder"].items()}
    return trimmed


def trim_sentencepiece(source: Path, target: Path, vocab: Sequence[str], kept: list[int]) -> int:
    """Write `target`: `source`'s ModelProto without the normal pieces whose tokenizer.json id was dropped.

    The tokenizer.json ids of a SentencePiece model are its piece ids shifted by a constant (XLM-R:
    +1, four fairseq specials in front); the shift is found from the pieces themselves and checked
    on every piece. Control and unknown pieces are always kept. Returns the number of pieces kept.
    """
    from sentencepiece import sentencepiece_model_pb2 as model_pb2

    proto = model_pb2.ModelProto()
    proto.ParseFromString(source.read_bytes())
    normal = [j for j, piece in enumerate(proto.pieces) if piece.type == model_pb2.ModelProto.SentencePiece.NORMAL]
    if not normal:
        raise ValueError(f"{source} has no normal pieces")
    index = {piece: i for i, piece in enumerate(vocab)}
    first = proto.pieces[normal[0]].piece
    if first not in index:
        raise ValueError(f"{source} does not belong to this tokenizer.json (piece {first!r} is not in it)")
    offset = index[first] - normal[0]
    mismatched = [j for j in normal if not 0 <= j + offset < len(vocab) or vocab[j + offset] != proto.pieces[j].piece]
    if mismatched:
        raise ValueError(f"{source} does not match tokenizer.json ({len(mismatched)} pieces at other ids); "
                         f"trim a model whose two tokenizer files agree")
    keep = set(kept)
    pieces = [piece for j, piece in enumerate(proto.pieces)
              if piece.type != model_pb2.ModelProto.SentencePiece.NORMAL or j + offset in keep]
    del proto.pieces[:]
    proto.pieces.extend(pieces)
    atomic_write_file(target, lambda tmp: tmp.write_bytes(proto.SerializeToString()))
    return len(pieces)


def trim_model_vocabulary(model: torch.nn.Module, kept: list[int]) -> torch.nn.Module:
    """Re-index the input embedding rows (and an output head's rows and bias) to `kept`, in place."""
    index = torch.tensor(kept, dtype=torch.long)
    embeddings = model.get_input_embeddings()
    trimmed = torch.nn.Embedding(len(kept), embeddings.embedding_dim, padding_idx=embeddings.padding_idx,
                                 dtype=embeddings.weight.dtype)
    trimmed.weight.data = embeddings.weight.data[index].clone()
    model.set_input_embeddings(trimmed)
    head = model.get_output_embeddings()
    if head is not None:
        new_head = torch.nn.Linear(head.in_features, len(kept), bias=head.bias is not None, dtype=head.weight.dtype)
        new_head.weight.data = head.weight.data[index].clone()
        if head.bias is not None:
            new_head.bias.data = head.bias.data[index].clone()
        model.set_output_embeddings(new_head)
        owner = next((m for m in model.modules() if getattr(m, "decoder", None) is new_head), None)
        if owner is not None and isinstance(getattr(owner, "bias", None), torch.nn.Parameter):
            owner.bias = new_head.bias  # XLM-R/BERT heads keep their bias twice (head.bias is decoder.bias)
    model.config.vocab_size = len(kept)
    if getattr(model.config, "tie_word_embeddings", False) and head is not None:
        model.tie_weights()
    return model


# ---------------------------------------------------------------- held-out check

def heldout_sentences(data_dir: Path, language: str) -> list[str]:
    """Distinct XNLI test premises and hypotheses, and MLQA dev contexts and questions, of one language."""
    from corpora.contamination import evaluation_texts

    return [item.text for item in evaluation_texts(data_dir, language, ("xnli", "mlqa"), xnli_splits=("test",))]


def compare_tokenization(original, trimmed, kept: list[int], sentences: list[str]) -> dict[str, Any]:
    """How many sentences keep identical ids (after mapping), and why the others changed."""
    new_id = {old: new for new, old in enumerate(kept)}
    with _whole_texts(original, trimmed):
        before = original(sentences, add_special_tokens=False)["input_ids"] if sentences else []
        after = trimmed(sentences, add_special_tokens=False)["input_ids"] if sentences else []
    unk_before, unk_after = original.unk_token_id, trimmed.unk_token_id
    identical = explained = unexplained = new_unk = 0
    tokens_before = tokens_after = 0
    examples: list[dict[str, Any]] = []
    for text, old, new in zip(sentences, before, after):
        tokens_before += len(old)
        tokens_after += len(new)
        new_unk += max(0, sum(i == unk_after for i in new) - sum(i == unk_before for i in old))
        if [new_id.get(i, -1) for i in old] == new:
            identical += 1
        elif any(i not in new_id for i in old):
            explained += 1
            if len(examples) < 3:
                examples.append({"text": text[:120], "dropped": [original.convert_ids_to_tokens(i) for i in old
                                                               if i not in new_id][:5]})
        else:
            unexplained += 1
    n = max(1, len(sentences))
    return {"sentences": len(sentences), "identical": identical, "identical_share": 100.0 * identical / n,
            "changed_by_dropped_pieces": explained, "changed_otherwise": unexplained, "new_unk_tokens": new_unk,
            "tokens_before": tokens_before, "tokens_after": tokens_after, "examples": examples}


# ---------------------------------------------------------------- the command

def _model_class(config):
    import transformers

    for name in getattr(config, "architectures", None) or []:
        if hasattr(transformers, name):
            return getattr(transformers, name)
    return transformers.AutoModel


def trim(config: TrimConfig) -> dict[str, Any]:
    """Count, select, rewrite; returns (and writes) the report."""
    from transformers import AutoConfig, AutoTokenizer

    from corpora import discover_languages

    started = time.time()
    source, output = Path(config.model), Path(config.output_dir)
    if not (source / "config.json").is_file() or not (source / TOKENIZER_FILE).is_file():
        raise FileNotFoundError(f"--model {source} needs config.json and {TOKENIZER_FILE} (a transformers model dir "
                                f"with a fast tokenizer)")
    if not 0 < config.coverage <= 1:
        raise ValueError(f"--coverage must be in (0, 1], got {config.coverage}")
    if config.reuse and (output / REPORT_FILE).is_file():
        previous = json.loads((output / REPORT_FILE).read_text())
        differences = [name for name in _SAME_FOR_REUSE if previous["config"].get(name) != getattr(config, name)]
        if differences:
            raise FileExistsError(f"--output-dir {output} was trimmed with other settings ({', '.join(differences)}); "
                                  f"use another directory or --overwrite")
        return previous
    if output.exists() and any(output.iterdir()) and not config.overwrite:
        raise FileExistsError(f"--output-dir {output} is not empty; pass --overwrite to replace it (or --reuse)")
    files = discover_languages(config.corpus, list(config.languages))
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    data = json.loads((source / TOKENIZER_FILE).read_text(encoding="utf-8"))
    vocab = [piece for piece, _ in data["model"]["vocab"]]
    specials = set(tokenizer.all_special_tokens)
    always = {i for i, piece in enumerate(vocab) if piece in specials}
    always |= {token["id"] for token in data.get("added_tokens", [])}
    if config.keep_characters:
        always |= character_pieces(vocab)
    if config.max_pieces and config.max_pieces < len(always):
        raise ValueError(f"--max-pieces {config.max_pieces} is smaller than the {len(always)} pieces always kept "
                         f"(special tokens and single characters; --no-keep-characters drops the latter)")
    counts = count_pieces(tokenizer, files, config.max_lines)
    kept = select_pieces(counts, always, config.coverage, config.max_pieces, config.min_count)

    model_config = AutoConfig.from_pretrained(str(source))
    model, loading = _model_class(model_config).from_pretrained(str(source), output_loading_info=True)
    if loading["missing_keys"] and all(k.startswith("pooler.") for k in loading["missing_keys"]):
        model.pooler = None  # the source has no pooler (e.g. the e5 conversion): do not save a random one
    parameters_before = sum(p.numel() for p in model.parameters())
    embedding_before = model.get_input_embeddings().weight.numel()
    rows_before = model.get_input_embeddings().num_embeddings
    if rows_before < len(vocab):
        raise ValueError(f"--model {source}: {rows_before} embedding rows but {len(vocab)} tokenizer pieces")
    trim_model_vocabulary(model, kept)

    if output.exists() and config.overwrite:
        shutil.rmtree(output)
    staging = output.with_name(f".{output.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    model.save_pretrained(staging)
    (staging / TOKENIZER_FILE).write_text(json.dumps(trim_tokenizer_json(data, kept), ensure_ascii=False),
                                          encoding="utf-8")
    tokenizer_config = source / "tokenizer_config.json"
    if tokenizer_config.is_file():
        (staging / tokenizer_config.name).write_text(json.dumps(
            trim_tokenizer_config(json.loads(tokenizer_config.read_text()), kept), indent=2, ensure_ascii=False) + "\n")
    for name in ("special_tokens_map.json", "conversion.json"):
        if (source / name).is_file():
            shutil.copyfile(source / name, staging / name)
    spm_pieces = None
    if (source / SPM_FILE_NAME).is_file():
        spm_pieces = trim_sentencepiece(source / SPM_FILE_NAME, staging / SPM_FILE_NAME, vocab, kept)
    trimmed_tokenizer = AutoTokenizer.from_pretrained(str(staging))

    per_language: dict[str, Any] = {}
    kept_set = set(kept)
    for lang, counter in counts.items():
        total = sum(counter.values())
        covered = sum(c for piece, c in counter.items() if piece in kept_set)
        per_language[lang] = {"corpus_tokens": total, "corpus_coverage": 100.0 * covered / max(1, total),
                              "distinct_pieces_seen": len(counter)}
    eval_root = config.eval_data or os.environ.get("MMINILM_DATA")
    if eval_root and Path(eval_root).is_dir():
        for lang in config.languages:
            sentences = heldout_sentences(Path(eval_root), lang)
            if sentences:
                per_language[lang]["heldout"] = compare_tokenization(tokenizer, trimmed_tokenizer, kept, sentences)
    report = {
        "source_model": str(source), "output_dir": str(output), "languages": list(config.languages),
        "vocabulary_before": len(vocab), "vocabulary_after": len(kept),
        "vocabulary_share": 100.0 * len(kept) / len(vocab), "embedding_rows_before": rows_before,
        "parameters_before": parameters_before, "parameters_after": sum(p.numel() for p in model.parameters()),
        "embedding_parameters_before": embedding_before,
        "embedding_parameters_after": model.get_input_embeddings().weight.numel(),
        "always_kept": len(always), "sentencepiece_pieces_after": spm_pieces,
        "kept_ids": kept, "per_language": per_language,
        "heldout_data": eval_root if eval_root and Path(eval_root).is_dir() else None,
        "seconds": time.time() - started, "config": asdict(config),
    }
    (staging / REPORT_FILE).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    (staging / "trim_report.md").write_text(markdown_report(report))
    os.replace(staging, output)
    return report


def markdown_report(report: dict[str, Any]) -> str:
    lines = ["# Vocabulary trimming", "",
             f"Model {report['source_model']} -> {report['output_dir']}, languages {' '.join(report['languages'])}.", "",
             "| | before | after |", "|---|---:|---:|",
             f"| vocabulary | {report['vocabulary_before']:,} | {report['vocabulary_after']:,} "
             f"({report['vocabulary_share']:.1f}%) |",
             f"| embedding parameters | {report['embedding_parameters_before'] / 1e6:.1f}M | "
             f"{report['embedding_parameters_after'] / 1e6:.1f}M |",
             f"| all parameters | {report['parameters_before'] / 1e6:.1f}M | {report['parameters_after'] / 1e6:.1f}M |", "",
             "Per language: corpus coverage of the kept pieces, and held-out text (XNLI test premises and hypotheses, "
             "MLQA dev contexts and questions) whose ids are identical after trimming (ids mapped). A sentence changes "
             "only when its original segmentation used a dropped piece: it then falls back to shorter kept pieces.", "",
             "| language | corpus tokens | corpus coverage % | held-out sentences | identical % | changed (dropped piece) | "
             "changed otherwise | new <unk> | tokens before -> after |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for lang, entry in report["per_language"].items():
        held = entry.get("heldout")
        tail = (f"{held['sentences']} | {held['identical_share']:.2f} | {held['changed_by_dropped_pieces']} | "
                f"{held['changed_otherwise']} | {held['new_unk_tokens']} | {held['tokens_before']:,} -> "
                f"{held['tokens_after']:,}") if held else "– | – | – | – | – | –"
        lines.append(f"| {lang} | {entry['corpus_tokens']:,} | {entry['corpus_coverage']:.3f} | {tail} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mminilm.models.trim_vocab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="transformers model dir with tokenizer.json (teacher or student)")
    parser.add_argument("--corpus", required=True, help="CC-100-layout dir: one {lang}.txt[.xz] per language")
    parser.add_argument("--languages", nargs="+", default=list(XNLI_LANGUAGES), help="languages to keep pieces for")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--coverage", type=float, default=TrimConfig.coverage,
                        help="per language, keep the most frequent pieces covering this share of its corpus tokens")
    budget.add_argument("--max-pieces", type=int, default=0, help="instead: the whole vocabulary size to keep")
    parser.add_argument("--min-count", type=int, default=TrimConfig.min_count,
                        help="a piece needs this many occurrences in some language")
    parser.add_argument("--no-keep-characters", dest="keep_characters", action="store_false",
                        help="also drop unused single-character pieces (their text may become <unk>)")
    parser.add_argument("--max-lines", type=int, default=0, help="corpus lines counted per language (0 = all)")
    parser.add_argument("--eval-data", default=None,
                        help="shared data folder for the held-out identity check (default: $MMINILM_DATA)")
    parser.add_argument("--output-dir", required=True, help="the trimmed model dir (must be new or empty)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --output-dir")
    parser.add_argument("--reuse", action="store_true",
                        help="if --output-dir already holds a trim with these settings, keep it (recipes re-run)")
    args = parser.parse_args(argv)
    try:
        report = trim(TrimConfig(**vars(args)))
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps({key: report[key] for key in ("vocabulary_before", "vocabulary_after", "vocabulary_share",
                                                   "parameters_before", "parameters_after")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
