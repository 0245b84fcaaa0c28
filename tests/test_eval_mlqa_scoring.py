"""The MLQA scorer on hand-made cases for each language (the official script's behaviour)."""

import pytest

from eval.mlqa_scoring import evaluate, exact_match_score, f1_score, mixed_segmentation, normalize_answer


@pytest.mark.parametrize("language,text,expected", [
    ("en", "The Quick, brown fox!", "quick brown fox"),
    ("en", "an apple a day", "apple day"),
    ("en", "theatre", "theatre"),  # articles only as whole words
    ("es", "Los perros de la casa", "perros de casa"),
    ("es", "El niño ¿vino?", "niño vino"),  # Unicode punctuation (¿) is removed too
    ("de", "Der Hund und die Katze des Nachbarn", "hund und katze nachbarn"),
    ("de", "Einem „großen“ Mann", "großen mann"),
    ("vi", "những cái bàn của tôi", "bàn tôi"),
    ("ar", "الكتاب في المكتبة", "كتاب في مكتبة"),  # every ال, even inside words
    ("ar", "قال", "ق"),
    ("hi", "भारत की राजधानी।", "भारत की राजधानी"),  # danda is punctuation; no articles removed
    ("zh", "北京是中国的首都。", "北 京 是 中 国 的 首 都"),
    ("zh", "2008年北京奥运会", "2008 年 北 京 奥 运 会"),
    ("zh", "The 北京", "the 北 京"),  # zh removes no English articles
])
def test_normalization_per_language(language, text, expected):
    assert normalize_answer(text, language) == expected


def test_mixed_segmentation_splits_han_and_keeps_words():
    assert mixed_segmentation("abc 中文 def") == ["abc", "中", "文", "def"]


def test_em_and_f1():
    assert exact_match_score("the Eiffel Tower", "Eiffel tower.", "en") == 1.0
    assert f1_score("Eiffel Tower in Paris", "the Eiffel Tower", "en") == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert f1_score("北京大学", "北京", "zh") == pytest.approx(2 * 0.5 * 1.0 / 1.5)
    assert f1_score("the", "a", "en") == 0.0  # both normalise to nothing
    assert exact_match_score("die", "der", "de") == 1.0  # both are only an article
    with pytest.raises(ValueError, match="no scoring rules for language 'fr'"):
        normalize_answer("x", "fr")


def test_evaluate_max_over_answers_and_unanswered_count_zero():
    data = [{"paragraphs": [{"qas": [
        {"id": "q1", "answers": [{"text": "Paris"}, {"text": "the city of Paris"}]},
        {"id": "q2", "answers": [{"text": "1889"}]},
        {"id": "q3", "answers": [{"text": "Gustave Eiffel"}]},
    ]}]}]
    scores = evaluate(data, {"q1": "city of Paris", "q2": "in 1889"}, "en")
    assert scores["n"] == 3
    assert scores["exact_match"] == pytest.approx(100 / 3)
    assert scores["f1"] == pytest.approx(100 * (1.0 + 2 * 0.5 * 1 / 1.5) / 3)
