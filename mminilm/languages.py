"""The language lists every part of the toolkit agrees on (defined here once)."""

XNLI_LANGUAGES = ("ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh")
MLQA_LANGUAGES = ("en", "es", "de", "ar", "hi", "vi", "zh")
