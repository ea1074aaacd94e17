"""CER and WER: edit distances between a transcript and its reference.

CER is the measure for Japanese (no spaces between words); WER splits on whitespace and is the
measure for English. Both compare after NFKC, lower-casing and dropping punctuation, so 「、」 vs
「,」 or a trailing 「。」 is not an error.
"""

from __future__ import annotations

import re
import unicodedata

_PUNCT = re.compile(r"[\s、。，．,.!?！？「」『』（）()\[\]・…ー~〜:;：；\"'`-]+")


def _clean(text: str) -> str:
    return unicodedata.normalize("NFKC", text or "").lower()


def edit_distance(a: list[str] | str, b: list[str] | str) -> int:
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        current = [i]
        for j, y in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def cer(hypothesis: str, reference: str) -> float:
    ref = _PUNCT.sub("", _clean(reference))
    hyp = _PUNCT.sub("", _clean(hypothesis))
    if not ref:
        return 0.0 if not hyp else 1.0
    return edit_distance(hyp, ref) / len(ref)


def wer(hypothesis: str, reference: str) -> float:
    ref = [w for w in _PUNCT.sub(" ", _clean(reference)).split() if w]
    hyp = [w for w in _PUNCT.sub(" ", _clean(hypothesis)).split() if w]
    if not ref:
        return 0.0 if not hyp else 1.0
    return edit_distance(hyp, ref) / len(ref)


def corpus_rates(pairs: list[tuple[str, str]]) -> dict[str, float]:
    """Micro-averaged CER and WER over (hypothesis, reference) pairs."""
    char_err = char_total = word_err = word_total = 0
    for hyp, ref in pairs:
        r, h = _PUNCT.sub("", _clean(ref)), _PUNCT.sub("", _clean(hyp))
        char_err += edit_distance(h, r)
        char_total += max(1, len(r))
        rw = [w for w in _PUNCT.sub(" ", _clean(ref)).split() if w]
        hw = [w for w in _PUNCT.sub(" ", _clean(hyp)).split() if w]
        word_err += edit_distance(hw, rw)
        word_total += max(1, len(rw))
    return {"cer": round(char_err / max(1, char_total), 4), "wer": round(word_err / max(1, word_total), 4)}
