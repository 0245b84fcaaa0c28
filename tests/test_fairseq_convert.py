"""fairseq XLM-R checkpoint -> transformers, cross-checked against fairseq itself (when installed)."""

from __future__ import annotations

import argparse
import shutil

import pytest
import sentencepiece as spm
import torch

from mminilm.models.fairseq_convert import convert_fairseq_xlmr, load_fairseq_checkpoint
from mminilm.models.teacher import load_teacher

fairseq = pytest.importorskip("fairseq", reason="fairseq-fixed not installed (pip install -r requirements-fairseq.txt)")


def _write_fairseq_dir(directory, tokenizer_dir, style: str):
    """A small XLM-R built and saved the way fairseq does: model.pt + dict.txt + sentencepiece.bpe.model."""
    from fairseq.data import Dictionary
    from fairseq.models.roberta import RobertaModel
    from fairseq.models.roberta.model import base_architecture

    directory.mkdir()
    shutil.copyfile(tokenizer_dir / "sentencepiece.bpe.model", directory / "sentencepiece.bpe.model")
    processor = spm.SentencePieceProcessor(model_file=str(directory / "sentencepiece.bpe.model"))
    with open(directory / "dict.txt", "w", encoding="utf-8") as handle:
        for piece_id in range(3, processor.get_piece_size()):
            handle.write(f"{processor.id_to_piece(piece_id)} {1000 - piece_id % 1000}\n")
    dictionary = Dictionary.load(str(directory / "dict.txt"))
    dictionary.add_symbol("<mask>")
    args = argparse.Namespace(arch="roberta_base", encoder_layers=2, encoder_embed_dim=64, encoder_ffn_embed_dim=128,
                              encoder_attention_heads=4, max_positions=512, dropout=0.1, attention_dropout=0.1)
    base_architecture(args)

    task = argparse.Namespace(source_dictionary=dictionary, dictionary=dictionary)

    torch.manual_seed(0)
    model = RobertaModel.build_model(args, task).eval()
    with torch.no_grad():  # non-trivial LayerNorm/bias values, so a mis-mapped tensor cannot hide
        for name, param in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                param.add_(0.1 * torch.randn_like(param))
    state = model.state_dict()
    if style == "args":  # original XLM-R release (fairseq 0.9): a pickled argparse.Namespace
        checkpoint = {"args": args, "model": state, "optimizer_history": [], "extra_state": {}}
    else:  # fairseq >= 0.10: a plain-dict cfg
        checkpoint = {"args": None, "cfg": {"model": vars(args)}, "model": state, "optimizer_history": []}
    torch.save(checkpoint, directory / "model.pt")
    return model, dictionary


@pytest.mark.slow
@pytest.mark.parametrize("style", ["args", "cfg"])
def test_converted_model_matches_fairseq_outputs(tmp_path, tokenizer_dir, tokenizer, style):
    fairseq_model, dictionary = _write_fairseq_dir(tmp_path / "fairseq", tokenizer_dir, style)
    converted = convert_fairseq_xlmr(tmp_path / "fairseq", tmp_path / "hf")
    model, hf_tokenizer = load_teacher(str(converted), masked_lm=True)  # the logits are compared too
    assert (model.config.layer_norm_eps, model.config.type_vocab_size, model.config.pad_token_id) == (1e-5, 1, 1)
    assert model.config.max_position_embeddings == 514
    assert len(hf_tokenizer) == len(dictionary) == model.config.vocab_size
    sentences = ["Hello world, this is XLM-R.", "Привет мир", "你好，世界！这是一个测试。"]
    batch = hf_tokenizer(sentences, padding=True, return_tensors="pt")
    # fairseq's own encoding of the same text (spm pieces -> dictionary) must give the same ids
    processor = spm.SentencePieceProcessor(model_file=str(tmp_path / "fairseq" / "sentencepiece.bpe.model"))
    for row, sentence in enumerate(sentences):
        pieces = " ".join(processor.encode(sentence, out_type=str))
        fairseq_ids = dictionary.encode_line(pieces, append_eos=True, add_if_not_exist=False).long()
        fairseq_ids = torch.cat([torch.tensor([dictionary.bos()]), fairseq_ids])
        length = int(batch["attention_mask"][row].sum())
        assert torch.equal(batch["input_ids"][row, :length], fairseq_ids)
    with torch.no_grad():
        fairseq_features, _ = fairseq_model(batch["input_ids"], features_only=True)
        fairseq_logits, _ = fairseq_model(batch["input_ids"])
        hf_out = model(**batch, output_hidden_states=True)
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(hf_out.hidden_states[-1][real], fairseq_features[real], rtol=0, atol=1e-5)
    torch.testing.assert_close(hf_out.logits[real], fairseq_logits[real], rtol=0, atol=1e-4)


def test_weights_only_loading_and_clear_errors(tmp_path, tokenizer_dir):
    _write_fairseq_dir(tmp_path / "fairseq", tokenizer_dir, "args")
    checkpoint = load_fairseq_checkpoint(tmp_path / "fairseq" / "model.pt")  # weights_only=True + Namespace
    assert isinstance(checkpoint["args"], argparse.Namespace)
    # a dict.txt from another vocabulary is refused instead of silently shifting token ids
    lines = (tmp_path / "fairseq" / "dict.txt").read_text(encoding="utf-8").splitlines()
    (tmp_path / "fairseq" / "dict.txt").write_text("\n".join([lines[1], lines[0], *lines[2:]]) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="does not belong to this SentencePiece model"):
        convert_fairseq_xlmr(tmp_path / "fairseq", tmp_path / "hf")
    (tmp_path / "fairseq" / "sentencepiece.bpe.model").unlink()
    with pytest.raises(FileNotFoundError, match="missing \\['sentencepiece.bpe.model'\\]"):
        convert_fairseq_xlmr(tmp_path / "fairseq", tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_load_teacher_converts_a_fairseq_dir_once(tmp_path, tokenizer_dir):
    _write_fairseq_dir(tmp_path / "fairseq", tokenizer_dir, "args")
    model, tok = load_teacher(str(tmp_path / "fairseq"), cache_dir=str(tmp_path / "cache"))
    converted = list((tmp_path / "cache" / "fairseq-converted").iterdir())
    assert len(converted) == 1 and (converted[0] / "config.json").is_file()
    stamp = (converted[0] / "config.json").stat().st_mtime_ns
    load_teacher(str(tmp_path / "fairseq"), cache_dir=str(tmp_path / "cache"))
    assert (converted[0] / "config.json").stat().st_mtime_ns == stamp
