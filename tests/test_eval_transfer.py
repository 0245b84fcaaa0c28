"""eval/: loading the real local layouts, and an end-to-end fine-tune + evaluation + report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import XLMRobertaForMaskedLM

from conftest import small_xlmr_config
from eval.data import flatten_squad, load_nli_tsv, load_squad
from eval.efficiency import flops_per_token, model_cost
from eval.mlqa import decode_answers, eval_features, train_features, usable_training_records
from eval.report import task_rows, fine_tuning_mismatch, runs_note
from eval.xnli import XnliConfig, load_splits, resolve_protocol
from mminilm.languages import XNLI_LANGUAGES

REPO = Path(__file__).resolve().parents[1]


def test_xnli_local_layout_loads_all_rows_aligned(data_dir):
    english = load_nli_tsv(data_dir / "xnli" / "dev" / "en.tsv")
    assert len(english) == 2490 and english.labels.count(0) == english.labels.count(1) == 830
    for lang in XNLI_LANGUAGES:
        rows = load_nli_tsv(data_dir / "xnli" / "dev" / f"{lang}.tsv")
        assert len(rows) == 2490 and rows.labels == english.labels, lang  # aligned across languages


def test_xnli_test_set_is_labelled_balanced_and_aligned(data_dir):
    english = load_nli_tsv(data_dir / "xnli" / "test" / "en.tsv")
    assert len(english) == 5010 and [english.labels.count(k) for k in range(3)] == [1670, 1670, 1670]
    for lang in XNLI_LANGUAGES:
        assert load_nli_tsv(data_dir / "xnli" / "test" / f"{lang}.tsv").labels == english.labels, lang


def test_offline_protocol_trains_on_english_nli_and_tests_on_xnli_test(data_dir):
    config = XnliConfig(model="-", output_dir="-", data_dir=str(data_dir), languages=["en", "sw"])
    assert resolve_protocol(config) == "offline"
    train, dev, tests = load_splits(config)
    assert dev is None and len(train) == 2490 and len(tests["sw"]) == 5010
    assert not set(train.premises) & set(tests["en"].premises)  # dev and test premises are disjoint
    with_sick, _, _ = load_splits(XnliConfig(model="-", output_dir="-", data_dir=str(data_dir), languages=["en"],
                                             english_train="xnli-dev+sick"))
    assert len(with_sick) == 2490 + 9840 and with_sick.labels[2490:2495] == [1, 1, 0, 2, 1]  # SICK's first labels


def test_files_the_protocol_would_ignore_are_rejected(data_dir, tmp_path):
    for protocol in ("auto", "offline", "xnli-dev-split"):
        with pytest.raises(ValueError, match="--test-file belong.*--protocol standard"):
            resolve_protocol(XnliConfig(model="-", output_dir="-", protocol=protocol, test_file=str(tmp_path / "t.tsv")))
    assert resolve_protocol(XnliConfig(model="-", output_dir="-", train_file="mnli.tsv", test_file="t.tsv")) == "standard"


def test_standard_protocol_from_local_files(tmp_path, data_dir):
    train = tmp_path / "train.tsv"
    train.write_text("index\tgenre\tsentence1\tsentence2\tgold_label\n0\tfiction\tA man sleeps.\tSomeone rests.\t"
                     "entailment\n1\tfiction\tA dog runs.\tA cat sleeps.\tcontradiction\n", encoding="utf-8")
    config = XnliConfig(model="-", output_dir="-", train_file=str(train), dev_file=str(data_dir / "xnli" / "dev" / "en.tsv"),
                        test_dir=str(data_dir / "xnli" / "test"), languages=["de"])
    loaded, dev, tests = load_splits(config)
    assert loaded.labels == [0, 2] and len(dev) == 2490 and len(tests["de"]) == 5010


def test_xnli_dev_split_protocol_is_disjoint(data_dir):
    train, dev, tests = load_splits(XnliConfig(model="-", output_dir="-", data_dir=str(data_dir), languages=["en", "sw"],
                                               protocol="xnli-dev-split"))
    assert dev is None and len(train) == 1245 and train.indices == list(range(1245))
    assert tests["sw"].indices == list(range(1245, 2490))
    assert not set(train.premises) & set(tests["en"].premises)  # disjoint premises


def test_xnli_1_0_format_with_header_and_language_column(tmp_path):
    path = tmp_path / "xnli.test.tsv"
    path.write_text("language\tgold_label\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1\tsentence2\n"
                    "de\tneutral\t-\t-\tEr sagte \"Hallo.\tSie kam.\n"
                    "en\tentailment\t-\t-\tHe said \"hi.\tShe came.\n"
                    "de\tcontradiction\t-\t-\tJa.\tNein.\n", encoding="utf-8")
    german = load_nli_tsv(path, language="de")
    assert german.premises == ['Er sagte "Hallo.', "Ja."] and german.labels == [1, 2] and german.indices == [0, 2]
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tb\tmaybe\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.tsv row 0: label 'maybe'"):
        load_nli_tsv(bad)


def test_mlqa_features_recover_gold_spans(data_dir, tokenizer):
    records = flatten_squad(load_squad(data_dir / "qa_train_en" / "tydiqa.goldp.en.train.json"))[:40]
    features = train_features(tokenizer, records, max_length=128, stride=32)
    eval_feats, sample_map, offsets = eval_features(tokenizer, records, max_length=128, stride=32)
    # logits that point exactly at the labelled span must decode back to the gold answer text
    start = torch.full(eval_feats["input_ids"].shape, -10.0)
    end = torch.full(eval_feats["input_ids"].shape, -10.0)
    for i, (s, e) in enumerate(zip(features["start_positions"], features["end_positions"])):
        if s > 0:
            start[i, s], end[i, e] = 10.0, 10.0
    predictions = decode_answers(records, sample_map, offsets, start, end, n_best=5, max_answer_length=64)
    recovered = [p.strip() == r["answers"]["text"][0].strip() for p, r in zip(predictions, records)]
    assert sum(recovered) >= 0.9 * len(records)


def test_window_too_small_for_stride_is_a_clear_error(data_dir, tokenizer):
    records = flatten_squad(load_squad(data_dir / "qa_train_en" / "tydiqa.goldp.en.train.json"))[:4]
    with pytest.raises(ValueError, match="--doc-stride 64 must be smaller than the context room"):
        train_features(tokenizer, records, max_length=128, stride=64, max_query_length=64)
    long_question = [{**records[0], "question": " ".join(["why"] * 300)}]
    features = train_features(tokenizer, long_question, max_length=128, stride=32, max_query_length=64)
    assert features["input_ids"].shape[1] == 128  # the question was clipped, the context still has room


def test_training_questions_without_answers_are_skipped_and_counted(data_dir, tmp_path, capsys):
    files = sorted(str(p) for p in (data_dir / "qa_train_en").glob("*.json"))
    records, skipped = usable_training_records(files)
    assert len(records) == 3696 + 1190  # TyDiQA-GoldP en train + XQuAD en, every answer usable
    assert skipped == {} and capsys.readouterr().err == ""
    broken = json.loads(Path(files[-1]).read_text(encoding="utf-8"))
    for article in broken["data"][:2]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                qa["answers"] = [{"text": "", "answer_start": 0}]
    emptied = sum(len(p["qas"]) for a in broken["data"][:2] for p in a["paragraphs"])
    (tmp_path / "emptied.json").write_text(json.dumps(broken), encoding="utf-8")
    records, skipped = usable_training_records([str(tmp_path / "emptied.json")])
    assert len(records) == 1190 - emptied and skipped == {str(tmp_path / "emptied.json"): emptied}
    assert f"emptied.json: {emptied} questions have no answer" in capsys.readouterr().err


def test_flops_formula_and_parameter_split(tmp_path, tokenizer):
    assert flops_per_token(12, 768, 3072, 128) == 12 * (8 * 768**2 + 4 * 768 * 3072 + 4 * 128 * 768)
    torch.manual_seed(0)
    XLMRobertaForMaskedLM(small_xlmr_config(len(tokenizer), hidden_size=32, num_heads=4)).save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    cost = model_cost(str(tmp_path / "m"))
    assert cost.embedding_parameters == len(tokenizer) * 32 + 514 * 32 + 32 + 2 * 32
    assert cost.transformer_parameters == 2 * (4 * (32 * 32 + 32) + 2 * 32 * 128 + 128 + 32 + 4 * 32)


def test_chance_level_is_flagged():
    from eval.report import chance_warnings

    at_chance = task_rows({"languages": {"en": {"accuracy": 34.0, "n": 1245}}},
                          {"languages": {"en": {"accuracy": 33.0, "n": 1245}}}, "xnli")
    assert len(chance_warnings(at_chance, "xnli")) == 2
    real = task_rows({"languages": {"en": {"accuracy": 70.0, "n": 1245}}},
                     {"languages": {"en": {"accuracy": 80.0, "n": 1245}}}, "xnli")
    assert chance_warnings(real, "xnli") == [] and chance_warnings(at_chance, "mlqa") == []


def test_untrained_mlqa_is_flagged():
    from eval.report import MLQA_UNTRAINED_F1, untrained_warnings

    def rows(student_f1, teacher_f1):
        return task_rows({"languages": {"en": {"f1": student_f1, "n": 100}}},
                         None if teacher_f1 is None else {"languages": {"en": {"f1": teacher_f1, "n": 100}}}, "mlqa")

    floor = rows(10.0, 10.1)  # the e5-small preset's 500-question MLQA: both on the floor
    assert len(untrained_warnings(floor, "mlqa")) == 1 and "teacher's MLQA average F1 (10.1)" in untrained_warnings(floor, "mlqa")[0]
    assert untrained_warnings(rows(15.0, 60.0), "mlqa") == []             # a trained teacher: the student's gap is real
    assert len(untrained_warnings(rows(MLQA_UNTRAINED_F1 - 1, None), "mlqa")) == 1  # no teacher: the student decides
    assert untrained_warnings(rows(MLQA_UNTRAINED_F1, None), "mlqa") == []
    assert untrained_warnings(task_rows({"languages": {"en": {"accuracy": 34.0, "n": 10}}}, None, "xnli"), "xnli") == []


def test_report_names_the_fine_tuning_choices():
    from eval.report import fine_tuning_note

    assert fine_tuning_note({"config": {"freeze_word_embeddings": True, "group_by_length": True}}) == \
        ", word embeddings frozen while fine-tuning, length-grouped batches"
    assert fine_tuning_note({"config": {"freeze_word_embeddings": False, "group_by_length": True}}) == ", length-grouped batches"
    assert fine_tuning_note({"config": {"freeze_word_embeddings": False, "group_by_length": False}}) == ""
    assert fine_tuning_note({}) == ""  # reports written before these options existed


def test_report_rows_retention():
    student = {"languages": {"en": {"accuracy": 60.0, "n": 10}, "de": {"accuracy": 45.0, "n": 10}}}
    teacher = {"languages": {"en": {"accuracy": 80.0, "n": 10}, "de": {"accuracy": 50.0, "n": 10}}}
    rows = task_rows(student, teacher, "xnli")
    assert [r["retention"] for r in rows] == [75.0, 90.0, pytest.approx(100 * 52.5 / 65.0)]
    assert rows[-1]["language"] == "average" and rows[-1]["n"] == 20


@pytest.fixture(scope="module")
def tiny_model_dirs(tmp_path_factory, tokenizer):
    dirs = []
    for name, hidden, layers in (("student", 32, 1), ("teacher", 64, 2)):
        directory = tmp_path_factory.mktemp(name)
        torch.manual_seed(0)
        XLMRobertaForMaskedLM(small_xlmr_config(len(tokenizer), hidden_size=hidden, num_heads=4,
                                                num_layers=layers)).save_pretrained(directory)
        tokenizer.save_pretrained(directory)
        dirs.append(directory)
    return dirs


def _run(module, *args):
    result = subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=REPO, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_end_to_end_xnli_mlqa_and_report(tmp_path, data_dir, tiny_model_dirs):
    outputs = []
    for model_dir in tiny_model_dirs:
        out = tmp_path / model_dir.name
        common = ["--model", model_dir, "--output-dir", out, "--data-dir", data_dir, "--epochs", "1", "--lr", "1e-3",
                  "--device", "cpu", "--max-train-examples", "64", "--max-eval-examples", "20"]
        _run("eval.xnli", *common, "--languages", "en", "de", "sw", "--max-length", "64")
        _run("eval.mlqa", *common, "--languages", "en", "zh", "--max-length", "128", "--doc-stride", "48")
        outputs.append(out)
    student_out, teacher_out = outputs
    xnli = json.loads((student_out / "xnli" / "report.json").read_text())
    assert set(xnli["languages"]) == {"en", "de", "sw"} and xnli["protocol"] == "offline"
    assert all(v["n"] == 20 for v in xnli["languages"].values())
    predictions = [json.loads(l) for l in (student_out / "xnli" / "predictions" / "de.jsonl").read_text().splitlines()]
    assert [p["index"] for p in predictions] == list(range(20))
    assert {p["prediction"] for p in predictions} <= {"entailment", "neutral", "contradiction"}
    correct = sum(p["prediction"] == ["entailment", "neutral", "contradiction"][g]
                  for p, g in zip(predictions, load_nli_tsv(data_dir / "xnli" / "test" / "de.tsv").labels[:20]))
    assert xnli["languages"]["de"]["accuracy"] == pytest.approx(100 * correct / 20)
    mlqa = json.loads((student_out / "mlqa" / "report.json").read_text())
    assert set(mlqa["languages"]) == {"en", "zh"} and all(0 <= v["f1"] <= 100 for v in mlqa["languages"].values())
    zh_predictions = json.loads((student_out / "mlqa" / "predictions" / "zh.json").read_text())
    assert len(zh_predictions) == 20 and all(isinstance(v, str) for v in zh_predictions.values())
    _run("eval.report", student_out, "--teacher", teacher_out, "--speed-repeats", "2")
    report = json.loads((student_out / "report.json").read_text())
    markdown = (student_out / "report.md").read_text()
    for task in ("xnli", "mlqa"):
        assert (student_out / f"{task}.png").stat().st_size > 1000
        for row in report["tasks"][task]["rows"]:
            assert f"| {row['student']:.1f} | {row['teacher']:.1f} |" in markdown
    assert report["efficiency"]["speedup"] > 0
    assert report["efficiency"]["student"]["transformer_parameters"] < report["efficiency"]["teacher"]["transformer_parameters"]


@pytest.mark.parametrize("freeze", [False, True])
def test_freeze_word_embeddings_keeps_every_row_and_trains_the_rest(tmp_path, freeze):
    from transformers import XLMRobertaForSequenceClassification

    from eval.finetune import FinetuneSettings, finetune

    torch.manual_seed(0)
    model = XLMRobertaForSequenceClassification(small_xlmr_config(100, hidden_size=32, num_layers=1, num_labels=3))
    words_before = model.get_input_embeddings().weight.detach().clone()
    layer_before = model.roberta.encoder.layer[0].attention.self.query.weight.detach().clone()
    features = {"input_ids": torch.randint(3, 100, (16, 12)), "attention_mask": torch.ones(16, 12, dtype=torch.long),
                "labels": torch.randint(0, 3, (16,))}
    settings = FinetuneSettings(epochs=1, batch_size=8, lr=1e-2, precision="fp32", freeze_word_embeddings=freeze)
    finetune(model, features, settings, torch.device("cpu"), tmp_path / "log.jsonl", "test")
    words_changed = not torch.equal(model.get_input_embeddings().weight, words_before)
    assert words_changed is not freeze
    assert not torch.equal(model.roberta.encoder.layer[0].attention.self.query.weight, layer_before)


def test_report_warns_when_student_and_teacher_were_fine_tuned_differently():
    from eval.report import fine_tuning_mismatch

    same = {"config": {"epochs": 3, "lr": 1e-4, "english_train": "xnli-dev", "freeze_word_embeddings": False}}
    assert fine_tuning_mismatch(same, same) == []
    other = {"config": {**same["config"], "lr": 3e-5, "freeze_word_embeddings": True}}
    (warning,) = fine_tuning_mismatch(same, other)
    assert "lr 0.0001 vs 3e-05" in warning and "freeze_word_embeddings False vs True" in warning


def test_eval_cli_options_come_from_the_dataclass_with_yaml_below_flags(tmp_path, capsys):
    from mminilm.cli import parse_config

    options = tmp_path / "xnli.yaml"
    options.write_text("model: m\noutput_dir: o\nlr: 3e-5\nepochs: 3\nfreeze_word_embeddings: true\n")
    config = parse_config(["--config", str(options), "--lr", "1e-4"], XnliConfig)
    assert (config.lr, config.epochs, config.freeze_word_embeddings) == (1e-4, 3.0, True)  # flag > YAML > default
    assert config.data_dir is None and config.max_length == 128
    with pytest.raises(SystemExit) as exit_info:
        parse_config(["--output-dir", "o"], XnliConfig)
    assert exit_info.value.code == 2 and "--model" in capsys.readouterr().err


def test_xnli_runs_report_the_mean_of_runs_that_each_equal_a_single_seeded_run(tmp_path, data_dir, tiny_model_dirs,
                                                                                 run_cli):
    student_dir = tiny_model_dirs[0]
    common = ["--model", student_dir, "--data-dir", data_dir, "--epochs", "1", "--lr", "1e-3", "--device", "cpu",
              "--max-train-examples", "32", "--max-eval-examples", "24", "--languages", "en", "de",
              "--max-length", "48", "--precision", "fp32"]
    assert run_cli("eval.xnli", *common, "--output-dir", tmp_path / "two", "--runs", "2").returncode == 0
    singles = []
    for seed in (42, 43):
        assert run_cli("eval.xnli", *common, "--output-dir", tmp_path / f"s{seed}", "--seed", seed).returncode == 0
        singles.append(json.loads((tmp_path / f"s{seed}" / "xnli" / "report.json").read_text()))
    two = json.loads((tmp_path / "two" / "xnli" / "report.json").read_text())
    assert two["seeds"] == [42, 43] and "seeds" not in singles[0]
    for lang in ("en", "de"):
        runs = [single["languages"][lang]["accuracy"] for single in singles]
        assert two["languages"][lang]["runs"] == runs
        assert two["languages"][lang]["accuracy"] == pytest.approx(sum(runs) / 2)
    assert two["average_runs"] == pytest.approx([single["average"] for single in singles])
    assert two["average"] == pytest.approx(sum(two["average_runs"]) / 2)
    lines = [json.loads(line) for line in (tmp_path / "two" / "xnli" / "predictions" / "de.jsonl").read_text().splitlines()]
    first = [json.loads(line) for line in (tmp_path / "s42" / "xnli" / "predictions" / "de.jsonl").read_text().splitlines()]
    assert [line["prediction"] for line in lines] == [line["prediction"] for line in first]
    assert all(len(line["predictions"]) == 2 and line["predictions"][0] == line["prediction"] for line in lines)
    assert any(line["predictions"][0] != line["predictions"][1] for line in lines)  # the seeds really differ
    bad = run_cli("eval.xnli", *common, "--output-dir", tmp_path / "bad", "--runs", "0")
    assert bad.returncode == 2 and "--runs must be at least 1" in bad.stderr


def test_report_names_the_runs_behind_a_mean_and_warns_when_the_counts_differ():
    student = {"seeds": [42, 43], "average_runs": [48.4, 50.8], "config": {"runs": 2}}
    teacher = {"seeds": [42, 43], "average_runs": [60.0, 61.2], "config": {"runs": 2}}
    assert runs_note(student, teacher) == (", mean of 2 fine-tuning runs (seeds 42 43; average per run: "
                                           "student 48.4 / 50.8, teacher 60.0 / 61.2)")
    assert runs_note({"config": {"runs": 1}}, None) == ""
    assert "runs 2 vs 1" in fine_tuning_mismatch(student, {"config": {"runs": 1}})[0]


def test_report_provenance_says_how_the_student_was_distilled(tmp_path):
    from eval.report import provenance

    record = {"objective": "minilm", "teacher": "t", "student_init": "teacher", "steps": 450}
    (tmp_path / "distillation.json").write_text(json.dumps({**record, "distil_layers": "uniform", "hidden_weight": 5.0}))
    assert provenance(str(tmp_path)) == ["minilm, every layer pair + 5 x hidden-state MSE from t, student init teacher, "
                                         "450 steps"]
    (tmp_path / "distillation.json").write_text(json.dumps(record))  # saved before the layer map existed
    assert provenance(str(tmp_path)) == ["minilm from t, student init teacher, 450 steps"]


def test_length_grouped_epochs_visit_every_pair_once_and_compute_less_padding(data_dir, tokenizer):
    from eval.finetune import FinetuneSettings, epoch_order, trim_padding
    from eval.xnli import _encode

    config = XnliConfig(model="-", output_dir="-", data_dir=str(data_dir), languages=["en"])
    train, _, _ = load_splits(config)
    features = _encode(tokenizer, train, max_length=128, with_labels=True)  # the 2490 XNLI en dev pairs

    def computed_tokens(order: torch.Tensor, batch_size: int = 32) -> int:
        return sum(trim_padding(features, order[start: start + batch_size])["input_ids"].numel()
                   for start in range(0, len(order), batch_size))

    shuffled = epoch_order(features, FinetuneSettings(), torch.Generator().manual_seed(42))
    grouped = epoch_order(features, FinetuneSettings(group_by_length=True), torch.Generator().manual_seed(42))
    again = epoch_order(features, FinetuneSettings(group_by_length=True), torch.Generator().manual_seed(42))
    assert sorted(grouped.tolist()) == list(range(2490)) and torch.equal(grouped, again)  # a seeded permutation
    assert not torch.equal(grouped, shuffled)
    real = int(features["attention_mask"].sum())
    # random batches compute well over the real tokens; grouped ones barely more
    assert computed_tokens(shuffled) > 1.3 * real and computed_tokens(grouped) < 1.1 * real
