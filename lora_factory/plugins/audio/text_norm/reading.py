"""Readings and pitch accents from OpenJTalk (pyopenjtalk-plus bundles its dictionary: offline).

Shown to the user before synthesis ("the text as it will be read") so a misread kanji is caught
before a minute of audio is generated: the katakana pronunciation and the accent of each phrase in
the common notation ``[`` = pitch rises after this mora, ``]`` = pitch falls after this mora.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SMALL = set("ャュョァィゥェォヮ")


def split_morae(kana: str) -> list[str]:
    morae: list[str] = []
    for ch in kana:
        if ch in _SMALL and morae:
            morae[-1] += ch
        else:
            morae.append(ch)
    return morae


def mark_accent(morae: list[str], accent: int) -> str:
    """ト[ーキョー (accent 0, flat), ハ]シ (1, head-high), オ[ト]コ (2)."""
    if not morae:
        return ""
    out = []
    for i, mora in enumerate(morae, start=1):
        out.append(mora)
        if accent == 1 and i == 1:
            out.append("]")
        elif accent != 1 and i == 1 and len(morae) > 1:
            out.append("[")
        elif accent > 1 and i == accent and i != len(morae):
            out.append("]")
    return "".join(out)


@dataclass
class Reading:
    kana: str  # the pronunciation, katakana
    accent: str  # phrases with accent marks, separated by spaces
    available: bool = True

    def to_dict(self) -> dict[str, object]:
        return {"kana": self.kana, "accent": self.accent, "available": self.available}


def _katakana(text: str) -> str:
    return "".join(chr(ord(c) + 0x60) if "ぁ" <= c <= "ゖ" else c for c in text)


def _spell_acronyms(text: str) -> str:
    """Upper-case runs (LDK, ABC, the A of A4) letter by letter: glued to kana, OpenJTalk drops
    letters (にLDK -> ニディーケー, よんK -> ヨン)."""
    from lora_factory.plugins.audio.text_norm.normalize import LETTER_NAMES

    return re.sub(r"(?<![A-Za-z])[A-Z]{1,6}(?![A-Za-z])", lambda m: "".join(LETTER_NAMES[c] for c in m.group(0)), text)


def literal_kana(text: str, spans: list[tuple[int, int]]) -> str:
    """``text`` with the readings the rules wrote turned to katakana: OpenJTalk reads katakana as it
    is, where hiragana is parsed into words again (令和はちねん -> 令和 + は + ちねん)."""
    out, last = [], 0
    for start, end in sorted(spans):
        out += [_spell_acronyms(text[last:start]), _katakana(text[start:end])]
        last = end
    return "".join(out) + _spell_acronyms(text[last:])


def reading_of(text: str, spans: list[tuple[int, int]] | None = None) -> Reading:
    """The katakana pronunciation and accent phrases of a normalised text (OpenJTalk); ``spans``
    (from ``normalize_with_spans``) mark the readings to take literally."""
    from lora_factory.plugins.audio.text_norm.normalize import is_english

    if is_english(text):  # read by English rules: OpenJTalk would spell it letter by letter
        return Reading(kana="", accent="", available=False)
    try:
        import pyopenjtalk
    except Exception:
        return Reading(kana="", accent="", available=False)
    text = literal_kana(text, spans or [])
    phrases: list[tuple[list[str], int]] = []
    for node in pyopenjtalk.run_frontend(text):
        pron = str(node.get("pron", "")).replace("’", "")
        if node.get("pos") == "記号" or not pron or pron in ("、", "。", "？", "！"):
            if pron in ("、", "。", "？", "！"):
                phrases.append(([pron], -1))
            continue
        morae = split_morae(pron)
        if phrases and node.get("chain_flag") == 1 and phrases[-1][1] >= 0:
            phrases[-1][0].extend(morae)
        else:
            phrases.append((morae, int(node.get("acc", 0))))
    kana = "".join("".join(m) for m, _ in phrases)
    marked = " ".join("".join(m) if acc < 0 else mark_accent(m, acc) for m, acc in phrases)
    return Reading(kana=kana, accent=marked.replace(" 、", "、").replace(" 。", "。"))
