"""corpora/: readers, the language-balanced sampler, packing and the dataset, on real files."""

from __future__ import annotations

import gzip
import json
import lzma
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from corpora import (CorpusDataset, LanguageBalancedSampler, ReadStats, TruncatedShardWarning, collate_blocks,
                     corpus_sizes, discover_languages, iter_documents)
from corpora.stream import LanguageStream


# ---------------------------------------------------------------- sampler
def test_probability_formula():
    sizes = {"en": 55_000_000, "sw": 300_000, "de": 10_000_000}
    sampler = LanguageBalancedSampler(sizes, alpha=0.3, seed=0)
    total = sum(sizes.values())
    weights = {k: (v / total) ** 0.3 for k, v in sizes.items()}
    for lang in sizes:
        assert sampler.probabilities[lang] == pytest.approx(weights[lang] / sum(weights.values()), rel=1e-12)
    proportional = LanguageBalancedSampler(sizes, alpha=1.0).probabilities
    assert proportional["sw"] == pytest.approx(300_000 / total)
    near_uniform = LanguageBalancedSampler(sizes, alpha=1e-6).probabilities
    assert max(near_uniform.values()) - min(near_uniform.values()) < 1e-4


def test_empirical_frequencies_match_probabilities():
    sampler = LanguageBalancedSampler({"en": 1000, "fr": 100, "sw": 1}, alpha=0.5, seed=3)
    draws = 60_000
    counts = Counter(sampler.draw() for _ in range(draws))
    for lang, q in sampler.probabilities.items():
        stderr = (q * (1 - q) / draws) ** 0.5
        assert abs(counts[lang] / draws - q) < 5 * stderr, (lang, counts[lang] / draws, q)


def test_determinism_state_restore_and_rank_streams():
    sizes = {"en": 5, "de": 3, "sw": 1}
    a, b = LanguageBalancedSampler(sizes, seed=7), LanguageBalancedSampler(sizes, seed=7)
    assert [a.draw() for _ in range(200)] == [b.draw() for _ in range(200)]
    state = json.loads(json.dumps(a.state_dict()))  # must survive a JSON checkpoint
    continuation = [a.draw() for _ in range(100)]
    restored = LanguageBalancedSampler(sizes, seed=7)
    restored.load_state_dict(state)
    assert [restored.draw() for _ in range(100)] == continuation
    rank0 = LanguageBalancedSampler(sizes, seed=7, rank=0, world_size=2)
    rank1 = LanguageBalancedSampler(sizes, seed=7, rank=1, world_size=2)
    assert [rank0.draw() for _ in range(100)] != [rank1.draw() for _ in range(100)]


@pytest.mark.parametrize("sizes,alpha,match", [
    ({}, 0.3, "empty"), ({"en": 0}, 0.3, "positive"), ({"en": -3, "de": 1}, 0.3, "positive"),
    ({"en": 1}, 0.0, "alpha"), ({"en": 1}, 1.5, "alpha"),
])
def test_sampler_rejects_bad_input(sizes, alpha, match):
    with pytest.raises(ValueError, match=match):
        LanguageBalancedSampler(sizes, alpha=alpha)


# ---------------------------------------------------------------- readers
def _write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def test_documents_txt_xz_gz_zst_and_shards_are_equal(tmp_path, cc100_dir):
    import zstandard

    raw = (cc100_dir / "sw.txt").read_bytes()
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "sw.txt").write_bytes(raw)
    for ext, compress in ((".xz", lzma.compress), (".gz", gzip.compress), (".zst", zstandard.ZstdCompressor().compress)):
        directory = tmp_path / ext.strip(".")
        directory.mkdir()
        (directory / f"sw.txt{ext}").write_bytes(compress(raw))
        assert [d for p in discover_languages(directory)["sw"] for d in iter_documents(p)] == list(iter_documents(plain / "sw.txt"))
    # split shards: documents of shard 0 then shard 1, in name order
    shards = tmp_path / "shards"
    shards.mkdir()
    cut = raw.index(b"\n\n", len(raw) // 2) + 2
    (shards / "sw.00.txt.xz").write_bytes(lzma.compress(raw[:cut]))
    (shards / "sw.01.txt.xz").write_bytes(lzma.compress(raw[cut:]))
    files = discover_languages(shards)["sw"]
    assert [p.name for p in files] == ["sw.00.txt.xz", "sw.01.txt.xz"]
    assert [d for p in files for d in iter_documents(p)] == list(iter_documents(plain / "sw.txt"))
    assert corpus_sizes(shards, cache_dir=tmp_path / "cache")["sw"] == len(raw)


def test_document_boundaries(tmp_path):
    path = _write(tmp_path / "xx.txt", "a1\na2\n\nb1\n\n\n\nc1\nc2\nc3\n")
    stats = ReadStats()
    assert list(iter_documents(path, stats)) == [["a1", "a2"], ["b1"], ["c1", "c2", "c3"]]
    assert stats.documents == 3


def test_invalid_utf8_is_replaced_and_counted(tmp_path):
    path = tmp_path / "xx.txt"
    path.write_bytes("good line\n".encode() + b"bad \xff\xfe bytes\n" + "ok \ufffd kept\n".encode())
    stats = ReadStats()
    documents = list(iter_documents(path, stats))
    assert documents == [["good line", "bad \ufffd\ufffd bytes", "ok \ufffd kept"]]
    assert (stats.invalid_utf8_lines, stats.invalid_utf8_replacements) == (1, 2)


def test_truncated_xz_warns_with_file_and_line(tmp_path, cc100_dir):
    raw = (cc100_dir / "sw.txt").read_bytes()
    compressed = lzma.compress(raw)
    path = tmp_path / "sw.txt.xz"
    path.write_bytes(compressed[: len(compressed) // 2])
    stats = ReadStats()
    with pytest.warns(TruncatedShardWarning, match=r"sw\.txt\.xz: compressed stream is truncated .* after line \d+"):
        documents = list(iter_documents(path, stats))
    assert 0 < len(documents) < len(list(iter_documents(_write(tmp_path / "full.txt", raw.decode()))))
    assert stats.truncated_files == [str(path)]


def test_missing_and_empty_languages_are_errors(tmp_path):
    _write(tmp_path / "en.txt", "hello\n")
    (tmp_path / "sw.txt").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"languages \['fr'\] not found in corpus directory .*found: en sw"):
        discover_languages(tmp_path, ["en", "fr"])
    with pytest.raises(ValueError, match="'sw'.*is empty"):
        discover_languages(tmp_path, ["sw"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        discover_languages(tmp_path / "nope")


def test_size_index_is_cached_outside_a_read_only_corpus(tmp_path, cc100_dir):
    sizes = corpus_sizes(cc100_dir, ["en", "jv"], cache_dir=tmp_path)
    assert sizes == {"en": (cc100_dir / "en.txt").stat().st_size, "jv": (cc100_dir / "jv.txt").stat().st_size}
    compressed = tmp_path / "xz"
    compressed.mkdir()
    (compressed / "jv.txt.xz").write_bytes(lzma.compress((cc100_dir / "jv.txt").read_bytes()))
    assert corpus_sizes(compressed) == {"jv": sizes["jv"]}
    assert (compressed / ".mminilm_sizes.json").is_file()


def test_binary_file_named_like_text_is_an_error_naming_it(tmp_path):
    binary = Path(sys.executable).resolve().read_bytes()[: 2 << 20]  # a real ELF executable
    assert binary[:4] == b"\x7fELF"
    (tmp_path / "de.txt").write_bytes(binary)
    _write(tmp_path / "en.txt", "hello\n")
    with pytest.raises(ValueError, match=r"de\.txt is not UTF-8 text: .*% of its first MB are NUL or undecodable"):
        corpus_sizes(tmp_path, cache_dir=tmp_path / "cache")


def test_invalid_utf8_and_truncation_are_counted_and_named_in_stats(tmp_path, cc100_dir):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    good = b"".join(b"a fine line of text number %d\n" % i for i in range(300))  # 3 bad bytes in ~9 KB: < 1%
    (corpus / "en.txt").write_bytes(good + b"\nbad \xff\xfe here\nand \xc3 here\n")
    raw = (cc100_dir / "jv.txt").read_bytes()  # 7 KB: well under 1 MB
    compressed = lzma.compress(raw)
    (corpus / "jv.txt.xz").write_bytes(compressed[: len(compressed) // 2])
    # a real process: the truncation warning reaches the user on stderr (in-process, pytest keeps warnings)
    result = subprocess.run([sys.executable, "-m", "corpora", "stats", str(corpus), "--json"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    rows = {row["language"]: row for row in json.loads(result.stdout)}
    assert rows["en"]["invalid_utf8"] == 3 and rows["en"]["truncated_files"] == []
    assert rows["jv"]["truncated_files"] == [str(corpus / "jv.txt.xz")] and 0 < rows["jv"]["bytes"] < len(raw)
    assert "jv.txt.xz: compressed stream is truncated" in result.stderr
    (corpus / "jv.txt.xz").write_bytes(compressed[:24])  # truncated before any text
    with pytest.raises(ValueError, match=r"'jv' .* has no text: its shard\(s\) .*jv\.txt\.xz are truncated"):
        with pytest.warns(TruncatedShardWarning):
            corpus_sizes(corpus)


# ---------------------------------------------------------------- streams, packing, dataset
def test_rank_partitions_are_disjoint_and_cover_the_language(cc100_dir):
    all_docs = list(iter_documents(cc100_dir / "jv.txt"))
    seen = []
    for part in range(3):
        stream = LanguageStream("jv", [cc100_dir / "jv.txt"], part, 3)
        count = len(range(part, len(all_docs), 3))
        seen.extend(tuple(map(tuple, stream.take(count))))
        assert stream.epoch == 0
    assert sorted(seen) == sorted(tuple(map(tuple, all_docs))) and len(seen) == len(all_docs)


def test_blocks_are_bos_eos_framed_and_document_mode_never_spans(tmp_path, tokenizer):
    _write(tmp_path / "en.txt", "one two three\n\nfour five\nsix\n\nseven eight nine ten eleven twelve\n")
    concat = CorpusDataset(tmp_path, tokenizer, max_length=16, cache_dir=tmp_path / "c")
    block = next(iter(concat))
    ids = block["input_ids"].tolist()
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id and len(ids) == 16
    assert block["attention_mask"].sum() == 16 and block["language"] == "en"
    assert tokenizer.eos_token_id in ids[1:-1]  # the document separator is explicit
    document = CorpusDataset(tmp_path, tokenizer, max_length=16, packing="document", cache_dir=tmp_path / "c")
    first = next(iter(document))
    real = first["input_ids"][first["attention_mask"].bool()].tolist()
    assert tokenizer.decode(real, skip_special_tokens=True).strip() == "one two three"
    assert first["input_ids"][first["attention_mask"] == 0].eq(tokenizer.pad_token_id).all()


def test_dataset_resume_is_exact_and_txt_equals_xz(tmp_path, cc100_dir, tokenizer):
    langs = ["sw", "jv", "yo"]
    xz_dir = tmp_path / "xz"
    xz_dir.mkdir()
    for lang in langs:
        (xz_dir / f"{lang}.txt.xz").write_bytes(lzma.compress((cc100_dir / f"{lang}.txt").read_bytes()))
    sizes = corpus_sizes(cc100_dir, langs)
    plain = CorpusDataset(cc100_dir, tokenizer, langs, max_length=64, sizes=sizes, seed=1)
    packed = CorpusDataset(xz_dir, tokenizer, langs, max_length=64, sizes=sizes, seed=1)
    stream_a, stream_b = iter(plain), iter(packed)
    first = [next(stream_a) for _ in range(150)]  # jv/yo are tiny: this wraps around their epochs
    assert all(torch.equal(a["input_ids"], next(stream_b)["input_ids"]) for a in first)
    state = json.loads(json.dumps(plain.state_dict()))
    expected = [next(stream_a) for _ in range(40)]
    resumed = CorpusDataset(cc100_dir, tokenizer, langs, max_length=64, sizes=sizes, seed=1)
    resumed.load_state_dict(state)
    got = list(zip(range(40), iter(resumed)))
    assert [g["language"] for _, g in got] == [e["language"] for e in expected]
    assert all(torch.equal(g["input_ids"], e["input_ids"]) for (_, g), e in zip(got, expected))
    with pytest.raises(ValueError, match="saved with"):
        CorpusDataset(cc100_dir, tokenizer, langs, max_length=32, sizes=sizes, seed=1).load_state_dict(state)


def test_resume_state_is_a_position_not_tokens(tmp_path, tokenizer):
    words = " ".join(f"word{i % 997}" for i in range(60_000))  # one 470 KB line, no newline inside
    _write(tmp_path / "en.txt", words + "\n\nsecond document\n")
    dataset = CorpusDataset(tmp_path, tokenizer, ["en"], max_length=64, sizes={"en": 1}, seed=0)
    stream = iter(dataset)
    [next(stream) for _ in range(5)]
    state = json.loads(json.dumps(dataset.state_dict()))
    assert len(json.dumps(state)) < 2000  # the pending tokens of the long line are not in it
    expected = [next(stream)["input_ids"] for _ in range(3)]
    resumed = CorpusDataset(tmp_path, tokenizer, ["en"], max_length=64, sizes={"en": 1}, seed=0)
    resumed.load_state_dict(state)
    again = iter(resumed)
    assert all(torch.equal(next(again)["input_ids"], e) for e in expected)


def test_dataloader_workers_and_ranks_do_not_duplicate(tmp_path, tokenizer):
    # 40 distinct one-line documents: every block (document mode) is one document, so duplicates are visible
    _write(tmp_path / "en.txt", "\n\n".join(f"document number {i} here" for i in range(40)) + "\n")
    def blocks(dataset, count, workers):
        loader = DataLoader(dataset, batch_size=4, num_workers=workers, collate_fn=collate_blocks)
        out = []
        for batch in loader:
            out.extend(tokenizer.decode(ids[mask.bool()], skip_special_tokens=True)
                       for ids, mask in zip(batch["input_ids"], batch["attention_mask"]))
            if len(out) >= count:
                return out[:count]
    with_workers = blocks(CorpusDataset(tmp_path, tokenizer, max_length=16, packing="document", cache_dir=tmp_path / "c"), 40, 2)
    assert len(set(with_workers)) == 40  # one epoch's worth: no duplicates across the 2 workers
    ranks = [blocks(CorpusDataset(tmp_path, tokenizer, max_length=16, packing="document", rank=r, world_size=2,
                                  cache_dir=tmp_path / "c"), 20, 0) for r in range(2)]
    assert not set(ranks[0]) & set(ranks[1]) and len(set(ranks[0]) | set(ranks[1])) == 40


def test_stats_cli(tmp_path, cc100_dir, run_cli):
    result = run_cli("corpora.__main__", "stats", cc100_dir, "--languages", "en", "sw", "jv", "--cache-dir", tmp_path,
                     "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["language"]: row for row in json.loads(result.stdout)}
    assert sum(row["q"] for row in rows.values()) == pytest.approx(1.0)
    assert rows["jv"]["upsampling"] > 1 > rows["en"]["upsampling"]
    bad = run_cli("corpora.__main__", "stats", cc100_dir, "--languages", "xx")
    assert bad.returncode == 2 and "languages ['xx'] not found" in bad.stderr


def test_binarized_corpus_matches_tokenizer_and_resumes(tmp_path, cc100_dir, tokenizer):
    from corpora.binarize import binarize_corpus
    import numpy as np

    meta = binarize_corpus(cc100_dir, tokenizer, tmp_path / "bin", languages=["jv", "yo"])
    expected = []
    for document in iter_documents(cc100_dir / "jv.txt"):
        expected += tokenizer(" ".join(document), add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert np.fromfile(tmp_path / "bin" / "jv.bin", dtype=np.uint32).tolist() == expected
    assert meta["languages"]["jv"]["tokens"] == len(expected)
    dataset = CorpusDataset(tmp_path / "unused", tokenizer, ["jv", "yo"], max_length=32, binarized_dir=tmp_path / "bin")
    stream = iter(dataset)
    first = [next(stream) for _ in range(30)]
    jv_blocks = [b["input_ids"].tolist() for b in first if b["language"] == "jv"]
    assert jv_blocks[0] == [tokenizer.bos_token_id, *expected[:30], tokenizer.eos_token_id]
    state = json.loads(json.dumps(dataset.state_dict()))
    expected_next = [next(stream)["input_ids"] for _ in range(10)]
    resumed = CorpusDataset(tmp_path / "unused", tokenizer, ["jv", "yo"], max_length=32, binarized_dir=tmp_path / "bin")
    resumed.load_state_dict(state)
    assert all(torch.equal(a, b["input_ids"]) for a, (_, b) in zip(expected_next, zip(range(10), iter(resumed))))
