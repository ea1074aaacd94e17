"""Latin letters in Japanese text: their katakana names, and whether a sentence is English.

Its own module because the reading (OpenJTalk) and the normaliser both need it, and the user
dictionary, which the normaliser uses, needs the reading: here none of them imports another in a ring.
"""

from __future__ import annotations

import re

LETTER_NAMES = {
    "A": "エー", "B": "ビー", "C": "シー", "D": "ディー", "E": "イー", "F": "エフ", "G": "ジー", "H": "エイチ",
    "I": "アイ", "J": "ジェー", "K": "ケー", "L": "エル", "M": "エム", "N": "エヌ", "O": "オー", "P": "ピー",
    "Q": "キュー", "R": "アール", "S": "エス", "T": "ティー", "U": "ユー", "V": "ブイ", "W": "ダブリュー",
    "X": "エックス", "Y": "ワイ", "Z": "ゼット",
}

_JAPANESE = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uff66-\uff9f々〆〒]")


def is_english(text: str) -> bool:
    """A sentence of Latin words (two or more, some lower case) and no kana or kanji is read by
    English rules ("I have 3 apples"); a code or an acronym (2LDK, ABC123) stays with the Japanese."""
    return (not _JAPANESE.search(text) and re.search(r"[a-z]", text) is not None
            and len(re.findall(r"[A-Za-z]+", text)) >= 2)
