"""`python -m corpora stats|binarize|contamination`: what to check before a week-long distillation run.

- stats DIR: per-language sizes, sampling probabilities, token shares, unreadable text.
- binarize DIR: tokenize once into token files for multi-epoch runs.
- contamination DIR: evaluation text (XNLI, MLQA) found in the corpus, by n-gram overlap.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from mminilm.training.atomic import atomic_write_file

from .contamination import DEFAULT_N, EVALUATION_SETS, contamination_report
from .contamination import format_markdown as contamination_markdown

from .index import corpus_scan
from .sampler import smoothed_probabilities


def stats_table(scans: dict[str, dict], alpha: float) -> list[dict[str, float | str]]:
    """Rows: language, bytes, p (natural share), q (sampling probability), upsampling q/p, and
    what reading found: invalid UTF-8 (replacement characters) and truncated shards.

    Every draw yields one block of max_length tokens, so q is also the expected share of
    training tokens per language.
    """
    sizes = {lang: scan["bytes"] for lang, scan in scans.items()}
    total = sum(sizes.values())
    q = smoothed_probabilities(sizes, alpha)
    rows = []
    for lang in sorted(sizes, key=lambda l: -sizes[l]):
        p = sizes[lang] / total
        rows.append({"language": lang, "bytes": sizes[lang], "p": p, "q": q[lang], "token_share": q[lang],
                     "upsampling": q[lang] / p, "invalid_utf8": scans[lang]["invalid_utf8"],
                     "truncated_files": scans[lang]["truncated_files"]})
    return rows


def format_markdown(rows: list[dict], alpha: float) -> str:
    lines = [f"| language | text bytes | p (natural) | q (alpha={alpha}) | expected token share | upsampling q/p | "
             "invalid UTF-8 | truncated shards |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for row in rows:
        truncated = ", ".join(row["truncated_files"]) or "–"
        lines.append(f"| {row['language']} | {row['bytes']:,} | {row['p']:.4f} | {row['q']:.4f} | "
                     f"{100 * row['token_share']:.2f}% | {row['upsampling']:.2f}x | {row['invalid_utf8']:,} | {truncated} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m corpora", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    stats = sub.add_parser("stats", help="per-language sizes, sampling probabilities and token shares")
    stats.add_argument("corpus_dir", help="directory with one {lang}.txt[.xz|.gz|.zst] per language")
    stats.add_argument("--alpha", type=float, default=0.3, help="sampling exponent in (0, 1] (default 0.3)")
    stats.add_argument("--languages", nargs="+", default=None, help="restrict to these languages")
    stats.add_argument("--cache-dir", default=None, help="where to keep the size index if the corpus is read-only")
    stats.add_argument("--json", action="store_true", help="print JSON instead of a Markdown table")
    binarize = sub.add_parser("binarize", help="tokenize once into {lang}.bin token files for multi-epoch runs")
    binarize.add_argument("corpus_dir")
    binarize.add_argument("--tokenizer", required=True, help="tokenizer dir or model dir (the teacher's)")
    binarize.add_argument("--output", required=True, help="output dir for {lang}.bin and binarized.json")
    binarize.add_argument("--languages", nargs="+", default=None)
    contamination = sub.add_parser("contamination", help="n-gram overlap between the corpus and XNLI/MLQA text")
    contamination.add_argument("corpus_dir")
    contamination.add_argument("--languages", nargs="+", default=None, help="default: every language in the corpus")
    contamination.add_argument("--against", nargs="+", default=list(EVALUATION_SETS), choices=EVALUATION_SETS)
    contamination.add_argument("--n", type=int, default=DEFAULT_N,
                               help="words per n-gram (x2 for Chinese characters, x4 for other character-segmented text)")
    contamination.add_argument("--data-dir", default=None, help="shared data folder (default: $MMINILM_DATA)")
    contamination.add_argument("--output-dir", default=None, help="also write contamination.json and contamination.md")
    args = parser.parse_args(argv)
    if args.command == "contamination":
        return _contamination(args)
    if args.command == "binarize":
        from transformers import AutoTokenizer

        from .binarize import binarize_corpus

        try:
            meta = binarize_corpus(args.corpus_dir, AutoTokenizer.from_pretrained(args.tokenizer), args.output, args.languages)
        except (FileNotFoundError, ValueError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(json.dumps(meta, indent=1))
        return 0
    try:
        rows = stats_table(corpus_scan(args.corpus_dir, args.languages, args.cache_dir), args.alpha)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(rows, indent=1) if args.json else format_markdown(rows, args.alpha))
    return 0


def _contamination(args: argparse.Namespace) -> int:
    data_dir = args.data_dir or os.environ.get("MMINILM_DATA")
    try:
        if not data_dir:
            raise FileNotFoundError("no evaluation data: pass --data-dir or set MMINILM_DATA (the shared data folder)")
        report = contamination_report(args.corpus_dir, args.languages, data_dir, args.against, args.n)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    markdown = contamination_markdown(report)
    if args.output_dir:
        out = Path(args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_file(out / "contamination.json",
                          lambda tmp: tmp.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n"))
        atomic_write_file(out / "contamination.md", lambda tmp: tmp.write_text(markdown))
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
