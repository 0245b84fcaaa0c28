"""MLQA scoring, written to behave exactly like the official `mlqa_evaluation_v1.py`.

Per language: lower-case; drop every Unicode punctuation character (category P*) and ASCII
punctuation; drop articles (en: a an the; es: un una unos unas el la los las; de: ein eine
einen einem eines einer der die das den dem des; vi: của là cái chiếc những; ar: every "ال";
hi and zh: none); split on white space, except zh where each Han character (U+4E00–U+9FA5)
stands alone. EM and token F1, max over the gold answers; an unanswered question scores 0.
The order (punctuation, then articles, then segmentation) matters and is the official one.
"""

from __future__ import annotations

import re
import string
import sys
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from mminilm.languages import MLQA_LANGUAGES
WHITESPACE_LANGUAGES = ("en", "es", "hi", "vi", "de", "ar")
MIXED_SEGMENTATION_LANGUAGES = ("zh",)

PUNCTUATION = frozenset(chr(i) for i in range(sys.maxunicode + 1) if unicodedata.category(chr(i)).startswith("P")) | frozenset(
    string.punctuation)

_ARTICLES = {
    "en": re.compile(r"\b(a|an|the)\b"),
    "es": re.compile(r"\b(un|una|unos|unas|el|la|los|las)\b"),
    "de": re.compile(r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b"),
    "vi": re.compile(r"\b(của|là|cái|chiếc|những)\b"),
    "ar": re.compile(r"\sال^|ال"),
}
_HAN = re.compile(r"[\u4e00-\u9fa5]")


def _check_language(language: str) -> None:
    if language not in MLQA_LANGUAGES:
        raise ValueError(f"MLQA has no scoring rules for language {language!r} (expected one of {MLQA_LANGUAGES})")


def mixed_segmentation(text: str) -> list[str]:
    """Han characters (and punctuation) stand alone; the rest is split on white space."""
    tokens: list[str] = []
    pending = ""
    for char in text:
        if _HAN.search(char) or char in PUNCTUATION:
            tokens.extend(pending.split())
            pending = ""
            tokens.append(char)
        else:
            pending += char
    tokens.extend(pending.split())
    return tokens


def normalize_answer(text: str, language: str) -> str:
    _check_language(language)
    text = text.lower()
    text = "".join(char for char in text if char not in PUNCTUATION)
    if language in _ARTICLES:
        text = _ARTICLES[language].sub(" ", text)
    tokens = mixed_segmentation(text) if language in MIXED_SEGMENTATION_LANGUAGES else text.split()
    return " ".join(token for token in tokens if token.strip())


def f1_score(prediction: str, ground_truth: str, language: str) -> float:
    prediction_tokens = normalize_answer(prediction, language).split()
    truth_tokens = normalize_answer(ground_truth, language).split()
    same = sum((Counter(prediction_tokens) & Counter(truth_tokens)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(prediction_tokens), same / len(truth_tokens)
    return 2 * precision * recall / (precision + recall)


def exact_match_score(prediction: str, ground_truth: str, language: str) -> float:
    return float(normalize_answer(prediction, language) == normalize_answer(ground_truth, language))


def score_question(prediction: str, answers: Iterable[str], language: str) -> tuple[float, float]:
    """(exact_match, f1) in [0, 1], max over the gold answers."""
    answers = list(answers)
    return (max(exact_match_score(prediction, a, language) for a in answers),
            max(f1_score(prediction, a, language) for a in answers))


def evaluate(dataset: list[dict[str, Any]], predictions: Mapping[str, str], language: str) -> dict[str, float]:
    """Official-style scores (0-100) over a SQuAD-format `data` list; unanswered questions count as 0."""
    exact = f1 = 0.0
    total = 0
    for article in dataset:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                total += 1
                if qa["id"] not in predictions:
                    continue
                em, f = score_question(predictions[qa["id"]], [a["text"] for a in qa["answers"]], language)
                exact += em
                f1 += f
    if total == 0:
        raise ValueError("no questions to score")
    return {"exact_match": 100.0 * exact / total, "f1": 100.0 * f1 / total, "n": total}
