"""English lines read by English rules ("I have 3 apples" -> "I have three apples"), not Japanese ones.

num2words (pure Python, maintained) writes the numbers; only money, percent, ordinals, years and
decimals need a rule here. Latin text is otherwise kept as written: the model reads it as it is.
"""

from __future__ import annotations

import re

from num2words import num2words

_CURRENCY = {"$": "dollars", "€": "euros", "£": "pounds", "¥": "yen"}


def _words(raw: str, **kwargs: object) -> str:
    return str(num2words(raw, lang="en", **kwargs))


def _number(raw: str) -> str:
    raw = raw.replace(",", "")
    if "." in raw:
        whole, _, frac = raw.partition(".")
        return _words(int(whole or 0)) + " point " + " ".join(_words(int(d)) for d in frac)
    return _words(int(raw))


def normalize_english(text: str) -> str:
    for symbol, word in _CURRENCY.items():
        text = re.sub(re.escape(symbol) + r"\s?(\d[\d,]*(?:\.\d+)?)", lambda m, w=word: f"{_number(m.group(1))} {w}",
                      text)
    text = re.sub(r"(\d[\d,]*(?:\.\d+)?)\s?%", lambda m: f"{_number(m.group(1))} percent", text)
    text = re.sub(r"\b(\d+)(?:st|nd|rd|th)\b", lambda m: _words(int(m.group(1)), to="ordinal"), text)
    text = re.sub(r"(?i)\b(?:in|since|from|by|until) (1[1-9]\d\d|20\d\d)\b",
                  lambda m: m.group(0)[: -len(m.group(1))] + _words(int(m.group(1)), to="year"), text)
    text = re.sub(r"\b(\d{1,2}):(\d{2})\b", lambda m: _words(int(m.group(1))) + (
        "" if m.group(2) == "00" else " oh " + _words(int(m.group(2))) if m.group(2).startswith("0")
        else " " + _words(int(m.group(2)))), text)
    text = re.sub(r"(?<![\dA-Za-z.])-(?=\d)", "minus ", text)
    return re.sub(r"\d[\d,]*(?:\.\d+)?", lambda m: _number(m.group(0).rstrip(",")), text)
