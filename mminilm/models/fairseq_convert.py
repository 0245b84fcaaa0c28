"""Convert an original fairseq XLM-R checkpoint to a transformers XLM-R dir, with torch alone.

Why not fairseq: it does not import on current Python without a patched fork, drags in
hydra/omegaconf/torchaudio, and users only need its tensors. The published XLM-R `model.pt`
is a pickle holding an `argparse.Namespace` (old checkpoints) or a plain-dict `cfg` (fairseq
≥0.10) next to the `model` state dict; torch ≥2.6 loads with `weights_only=True`, so
`argparse.Namespace` has to be allow-listed explicitly.

The fairseq dictionary is <s>=0 <pad>=1 </s>=2 <unk>=3, then `dict.txt` in order, then <mask>;
`dict.txt` lists the SentencePiece pieces from id 3 on, which is exactly the layout of
transformers' XLM-R tokenizer (piece id + 1), so the SentencePiece model is reused unchanged.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, XLMRobertaConfig, XLMRobertaForMaskedLM, XLMRobertaTokenizer

from mminilm.training.atomic import atomic_write_dir

FAIRSEQ_FILES = ("model.pt", "dict.txt", "sentencepiece.bpe.model")

_LAYER_KEY_MAP = {
    "self_attn.q_proj": "attention.self.query",
    "self_attn.k_proj": "attention.self.key",
    "self_attn.v_proj": "attention.self.value",
    "self_attn.out_proj": "attention.output.dense",
    "self_attn_layer_norm": "attention.output.LayerNorm",
    "fc1": "intermediate.dense",
    "fc2": "output.dense",
    "final_layer_norm": "output.LayerNorm",
}


def is_fairseq_checkpoint_dir(path: str | os.PathLike) -> bool:
    directory = Path(path)
    return directory.is_dir() and (directory / "model.pt").is_file() and (directory / "dict.txt").is_file()


def load_fairseq_checkpoint(path: str | os.PathLike, trust_pickle: bool = False) -> dict[str, Any]:
    """torch.load with weights_only=True and `argparse.Namespace` allowed (what fairseq pickles)."""
    if trust_pickle:
        return torch.load(path, map_location="cpu", weights_only=False)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle.UnpicklingError and friends carry the offending global
        raise ValueError(
            f"{path}: cannot be loaded with torch.load(weights_only=True) even with argparse.Namespace "
            f"allowed ({error}). If you trust the file, convert with trust_pickle=True "
            f"(--trust-fairseq-pickle)."
        ) from error


def _model_args(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The model hyper-parameters, from `args` (Namespace) or `cfg["model"]` (dict)."""
    if checkpoint.get("args") is not None:
        return vars(checkpoint["args"])
    cfg = checkpoint.get("cfg") or {}
    model_cfg = cfg.get("model") if isinstance(cfg, dict) else None
    if isinstance(model_cfg, argparse.Namespace):
        return vars(model_cfg)
    if isinstance(model_cfg, dict):
        return model_cfg
    raise ValueError("fairseq checkpoint has neither 'args' nor 'cfg[\"model\"]' hyper-parameters")


def _strip_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Normalise fairseq 0.9 (`decoder.*`, `emb_layer_norm`) and 0.10+ (`encoder.*`) key names."""
    normalised = {}
    for key, value in state.items():
        key = re.sub(r"^(encoder|decoder)\.", "", key)
        key = key.replace("sentence_encoder.emb_layer_norm", "sentence_encoder.layernorm_embedding")
        normalised[key] = value
    return normalised


def fairseq_to_hf_state_dict(state: dict[str, torch.Tensor], num_layers: int) -> dict[str, torch.Tensor]:
    """Map fairseq RoBERTa/XLM-R parameter names onto XLMRobertaForMaskedLM's."""
    state = _strip_prefix(state)
    hidden = state["sentence_encoder.embed_tokens.weight"].shape[1]
    hf: dict[str, torch.Tensor] = {
        "roberta.embeddings.word_embeddings.weight": state["sentence_encoder.embed_tokens.weight"],
        "roberta.embeddings.position_embeddings.weight": state["sentence_encoder.embed_positions.weight"],
        # fairseq has no segment embeddings: a single all-zero type embedding is equivalent.
        "roberta.embeddings.token_type_embeddings.weight": torch.zeros(1, hidden),
        "roberta.embeddings.LayerNorm.weight": state["sentence_encoder.layernorm_embedding.weight"],
        "roberta.embeddings.LayerNorm.bias": state["sentence_encoder.layernorm_embedding.bias"],
        "lm_head.dense.weight": state["lm_head.dense.weight"],
        "lm_head.dense.bias": state["lm_head.dense.bias"],
        "lm_head.layer_norm.weight": state["lm_head.layer_norm.weight"],
        "lm_head.layer_norm.bias": state["lm_head.layer_norm.bias"],
        "lm_head.decoder.weight": state["lm_head.weight"],
        "lm_head.bias": state["lm_head.bias"],
    }
    for index in range(num_layers):
        for source, target in _LAYER_KEY_MAP.items():
            for kind in ("weight", "bias"):
                hf[f"roberta.encoder.layer.{index}.{target}.{kind}"] = state[
                    f"sentence_encoder.layers.{index}.{source}.{kind}"
                ]
    return hf


def _check_dictionary_matches_sentencepiece(directory: Path, vocab_size: int) -> None:
    """dict.txt must list the SentencePiece pieces 3.. in order, or token ids would silently shift."""
    import sentencepiece as spm

    processor = spm.SentencePieceProcessor(model_file=str(directory / "sentencepiece.bpe.model"))
    with open(directory / "dict.txt", encoding="utf-8") as handle:
        entries = [line.rsplit(" ", 1)[0] for line in handle if line.strip()]
    for position, piece in enumerate(entries[:1000]):
        spm_id = position + 3
        if spm_id >= processor.get_piece_size():
            break
        if processor.id_to_piece(spm_id) != piece:
            raise ValueError(
                f"{directory / 'dict.txt'} line {position + 1} is {piece!r} but sentencepiece.bpe.model id {spm_id} "
                f"is {processor.id_to_piece(spm_id)!r}: the dictionary does not belong to this SentencePiece model"
            )
    if vocab_size < len(entries) + 4:
        raise ValueError(f"the checkpoint's embedding has {vocab_size} rows, fewer than dict.txt's {len(entries)} + 4 specials")


def convert_fairseq_xlmr(checkpoint_dir: str | os.PathLike, output_dir: str | os.PathLike,
                         trust_pickle: bool = False) -> Path:
    """Convert `checkpoint_dir` (model.pt, dict.txt, sentencepiece.bpe.model) to an HF dir."""
    directory = Path(checkpoint_dir)
    missing = [name for name in FAIRSEQ_FILES if not (directory / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{directory} is not a fairseq XLM-R checkpoint dir: missing {missing} (expected {FAIRSEQ_FILES})")
    checkpoint = load_fairseq_checkpoint(directory / "model.pt", trust_pickle=trust_pickle)
    args = _model_args(checkpoint)
    state = _strip_prefix(checkpoint["model"])
    if args.get("encoder_normalize_before", False):
        raise ValueError(f"{directory}: pre-LayerNorm fairseq models are not XLM-R (encoder_normalize_before=True)")
    layer_ids = {int(m.group(1)) for key in state if (m := re.match(r"sentence_encoder\.layers\.(\d+)\.", key))}
    num_layers = len(layer_ids)
    word_embeddings = state["sentence_encoder.embed_tokens.weight"]
    vocab_size, hidden = word_embeddings.shape
    positions = state["sentence_encoder.embed_positions.weight"].shape[0]
    _check_dictionary_matches_sentencepiece(directory, vocab_size)
    heads = int(args.get("encoder_attention_heads") or 0)
    if heads <= 0 or hidden % heads:
        raise ValueError(f"{directory}: encoder_attention_heads={heads} is missing or does not divide hidden size {hidden}")
    activation = args.get("activation_fn", "gelu")
    config = XLMRobertaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=num_layers,
        num_attention_heads=heads,
        intermediate_size=state["sentence_encoder.layers.0.fc1.weight"].shape[0],
        hidden_act="gelu" if activation in ("gelu", "gelu_accurate") else activation,
        max_position_embeddings=positions,  # fairseq: max_positions + padding_idx + 1
        type_vocab_size=1,
        layer_norm_eps=1e-5,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        hidden_dropout_prob=float(args.get("dropout", 0.1)),
        attention_probs_dropout_prob=float(args.get("attention_dropout", 0.1)),
    )
    config.architectures = ["XLMRobertaForMaskedLM"]
    model = XLMRobertaForMaskedLM(config)
    hf_state = fairseq_to_hf_state_dict(checkpoint["model"], num_layers)
    missing_keys, unexpected = model.load_state_dict(hf_state, strict=False)
    missing_keys = [k for k in missing_keys if k not in ("lm_head.decoder.bias",) and "position_ids" not in k]
    if missing_keys or unexpected:
        raise ValueError(f"fairseq -> transformers key mapping incomplete: missing {missing_keys}, unexpected {unexpected}")
    model.tie_weights()
    model.eval()

    def write(tmp: Path) -> None:
        model.save_pretrained(str(tmp))
        shutil.copyfile(directory / "sentencepiece.bpe.model", tmp / "sentencepiece.bpe.model")
        XLMRobertaTokenizer.from_pretrained(str(tmp)).save_pretrained(str(tmp))
        AutoTokenizer.from_pretrained(str(tmp))  # fail now, not at training time, if it cannot load

    return atomic_write_dir(output_dir, write)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=convert_fairseq_xlmr.__doc__)
    parser.add_argument("checkpoint_dir", help="dir with model.pt, dict.txt, sentencepiece.bpe.model")
    parser.add_argument("output_dir", help="where to write the transformers model + tokenizer")
    parser.add_argument("--trust-fairseq-pickle", action="store_true",
                        help="load model.pt with weights_only=False (only for files you trust)")
    args = parser.parse_args(argv)
    print(convert_fairseq_xlmr(args.checkpoint_dir, args.output_dir, trust_pickle=args.trust_fairseq_pickle))


if __name__ == "__main__":
    main()
