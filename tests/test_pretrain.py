"""`python -m mminilm.pretrain` in-process: a real SentencePiece vocabulary and a real (tiny) MLM run."""

from __future__ import annotations

import json

from transformers import AutoModelForMaskedLM

from mminilm.pretrain import main


def test_pretrain_hands_its_training_options_to_the_trainer(tmp_path, cc100_dir):
    out = tmp_path / "teacher"
    code = main(["--corpus", str(cc100_dir), "--languages", "sw", "yo", "--output-dir", str(out), "--vocab-size", "600",
                 "--tokenizer-lines", "300", "--layers", "1", "--hidden", "32", "--heads", "2", "--steps", "4",
                 "--batch-size", "2", "--max-length", "32", "--lr", "5e-3", "--save-every", "2", "--log-every", "2",
                 "--device", "cpu"])
    assert code == 0
    trained = json.loads((out / "config.json").read_text())  # the TrainConfig the loop ran with
    assert trained["objective"] == "mlm" and trained["student_from"] == str(out / "init")
    assert (trained["lr"], trained["steps"], trained["max_length"], trained["languages"]) == (5e-3, 4, 32, ["sw", "yo"])
    assert trained["warmup_steps"] == 100 and trained["alpha"] == 0.3  # pretraining's default, and training's own
    assert json.loads((out / "pretrain_config.json").read_text())["vocab_size"] == 600
    model = AutoModelForMaskedLM.from_pretrained(out / "model")
    assert model.config.num_hidden_layers == 1 and model.config.vocab_size == 600 + 2  # XLM-R layout: pieces shifted by one (<pad> at 1), <mask> last


def test_pretrain_without_corpus_is_one_line_exit_2(capsys):
    assert main(["--output-dir", "unused"]) == 2
    assert capsys.readouterr().err.strip() == ("error: --corpus is required (a CC-100-layout dir, e.g. "
                                               "$MMINILM_DATA/cc100_sample)")
