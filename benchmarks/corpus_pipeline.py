"""Benchmark the data pipeline: read (.xz) -> sample -> tokenize -> pack, with 0 and 2 workers.

Compresses `$MMINILM_DATA/cc100_sample` to `.txt.xz` in a temp dir first (as CC-100 ships), then
measures packed tokens per second through `CorpusDataset` + `DataLoader`. The goal is that data
is never the bottleneck: compare with what one distillation step consumes (tokens/s from
benchmarks/distill_step.py, passed as --step-json FILE or --step-tokens-per-s N). Prints JSON.

    python benchmarks/distill_step.py > step.json
    python benchmarks/corpus_pipeline.py --tokenizer runs/tiny/teacher/model --step-json step.json
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import sys
import tempfile
import time
from pathlib import Path



def compress_corpus(source: Path, target: Path) -> float:
    started = time.perf_counter()
    for path in sorted(source.glob("*.txt")):
        with open(path, "rb") as src, lzma.open(target / f"{path.name}.xz", "wb", preset=1) as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
    return time.perf_counter() - started


def measure(corpus: Path, tokenizer, workers: int, blocks: int, max_length: int, batch_size: int) -> dict:
    import torch

    from corpora import CorpusDataset, collate_blocks

    dataset = CorpusDataset(corpus, tokenizer, languages=None, max_length=max_length, seed=0)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate_blocks)
    iterator = iter(loader)
    next(iterator)  # start-up (worker spawn, first reads) is not steady-state throughput
    started = time.perf_counter()
    tokens = seen = 0
    while seen < blocks:
        batch = next(iterator)
        tokens += int(batch["attention_mask"].sum())
        seen += len(batch["languages"])
    elapsed = time.perf_counter() - started
    return {"workers": workers, "blocks": seen, "tokens": tokens, "seconds": elapsed, "tokens_per_s": tokens / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.environ.get("MMINILM_DATA"), help="shared data folder ($MMINILM_DATA)")
    parser.add_argument("--tokenizer", default=None, help="tokenizer dir (default: train a 8k SentencePiece on the sample)")
    parser.add_argument("--blocks", type=int, default=2000)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--step-json", default=None, help="output of benchmarks/distill_step.py")
    parser.add_argument("--step-tokens-per-s", type=float, default=None)
    args = parser.parse_args()
    if not args.data:
        sys.exit("set MMINILM_DATA or --data to the shared data folder")
    source = Path(args.data) / "cc100_sample"
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.tokenizer:
            tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
        else:
            from mminilm.models.tokenizer import train_xlmr_tokenizer

            tokenizer = train_xlmr_tokenizer(sorted(source.glob("*.txt")), tmp / "tok", vocab_size=8000,
                                             max_lines_per_file=2000)
        corpus = tmp / "xz"
        corpus.mkdir()
        compress_seconds = compress_corpus(source, corpus)
        results = {"corpus": str(source), "compressed_bytes": sum(p.stat().st_size for p in corpus.iterdir()),
                   "compress_seconds": compress_seconds, "max_length": args.max_length, "cpu_cores": os.cpu_count(),
                   "runs": [measure(corpus, tokenizer, w, args.blocks, args.max_length, args.batch_size) for w in (0, 2)]}
    step = args.step_tokens_per_s
    if args.step_json:
        step_results = json.loads(Path(args.step_json).read_text())
        step = step_results.get("realistic", next(iter(step_results.values())))["ours"]["tokens_per_s"]
    if step:
        results["distill_step_tokens_per_s"] = step
        results["ratio_to_distill_step"] = {str(r["workers"]): r["tokens_per_s"] / step for r in results["runs"]}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
