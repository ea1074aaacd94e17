"""Readings and pitch accents from OpenJTalk (pyopenjtalk-plus bundles its dictionary: offline).

Shown to the user before synthesis ("the text as it will be read") so a misread kanji is caught
before a minute of audio is generated: the katakana pronunciation and the accent of each phrase in
the common notation ``[`` = pitch rises after this mora, ``]`` = pitch falls after this mora.

An accent the user set (a dictionary entry with an accent type) is in the normalised text already,
as katakana with those marks: it is taken as set, never re-guessed by OpenJTalk. The preview gives
each accent phrase with its morae and type, so the UI can edit the accent mora by mora.
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


def accent_of_marked(marked: str) -> tuple[list[str], int]:
    """The morae and accent type of a marked reading (``ト[ーキョー`` -> 0, ``ハ]シ`` -> 1)."""
    morae = split_morae(marked.replace("[", "").replace("]", ""))
    if "]" not in marked:
        return morae, 0
    return morae, len(split_morae(marked[: marked.index("]")].replace("[", "")))


@dataclass
class Phrase:
    surface: str  # the text OpenJTalk read as this phrase (the marked reading for a user's accent)
    morae: list[str]
    accent: int
    user: bool = False  # the accent comes from the user's dictionary

    def to_dict(self) -> dict[str, object]:
        return {"surface": self.surface, "morae": self.morae, "accent": self.accent, "user": self.user}


@dataclass
class Reading:
    kana: str  # the pronunciation, katakana
    accent: str  # phrases with accent marks, separated by spaces
    available: bool = True
    phrases: list[Phrase] | None = None

    def to_dict(self) -> dict[str, object]:
        return {"kana": self.kana, "accent": self.accent, "available": self.available,
                "phrases": [p.to_dict() for p in self.phrases or []]}


def katakana(text: str) -> str:
    return "".join(chr(ord(c) + 0x60) if "ぁ" <= c <= "ゖ" else c for c in text)


_katakana = katakana


def _spell_acronyms(text: str) -> str:
    """Upper-case runs (LDK, ABC, the A of A4) letter by letter: glued to kana, OpenJTalk drops
    letters (にLDK -> ニディーケー, よんK -> ヨン)."""
    from lora_factory.plugins.audio.text_norm.letters import LETTER_NAMES

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
    from lora_factory.plugins.audio.text_norm.letters import is_english

    if is_english(text):  # read by English rules: OpenJTalk would spell it letter by letter
        return Reading(kana="", accent="", available=False)
    try:
        import pyopenjtalk
    except Exception:
        return Reading(kana="", accent="", available=False)
    phrases: list[tuple[list[str], int, str, bool]] = []
    last = 0
    for start, end in sorted(spans or []) + [(len(text), len(text))]:
        piece = text[start:end]
        if "[" in piece or "]" in piece:  # an accent the user set: taken as set
            phrases += _frontend_phrases(pyopenjtalk, text[last:start], _within(spans or [], last, start))
            morae, accent = accent_of_marked(piece)
            phrases.append((morae, accent, piece, True))
            last = end
    phrases += _frontend_phrases(pyopenjtalk, text[last:], _within(spans or [], last, len(text)))
    kana = "".join("".join(m) for m, *_ in phrases)
    marked = " ".join("".join(m) if acc < 0 else mark_accent(m, acc) for m, acc, *_ in phrases)
    words = [Phrase(surface, m, acc, user) for m, acc, surface, user in phrases if acc >= 0]
    return Reading(kana=kana, accent=marked.replace(" 、", "、").replace(" 。", "。"), phrases=words)


def _within(spans: list[tuple[int, int]], start: int, end: int) -> list[tuple[int, int]]:
    return [(a - start, b - start) for a, b in spans if start <= a and b <= end]


def _frontend_phrases(pyopenjtalk: object, text: str, spans: list[tuple[int, int]]) -> list[tuple[list[str], int, str, bool]]:
    """OpenJTalk's accent phrases of ``text``: (morae, accent type or -1 for a pause, surface, False)."""
    if not text.strip():
        return []
    phrases: list[tuple[list[str], int, str, bool]] = []
    for node in pyopenjtalk.run_frontend(literal_kana(text, spans)):  # type: ignore[attr-defined]
        pron = str(node.get("pron", "")).replace("’", "")
        if node.get("pos") == "記号" or not pron or pron in ("、", "。", "？", "！"):
            if pron in ("、", "。", "？", "！"):
                phrases.append(([pron], -1, pron, False))
            continue
        morae = split_morae(pron)
        surface = str(node.get("string", ""))
        if phrases and node.get("chain_flag") == 1 and phrases[-1][1] >= 0:
            last = phrases[-1]
            phrases[-1] = (last[0] + morae, last[1], last[2] + surface, False)
        else:
            phrases.append((morae, int(node.get("acc", 0)), surface, False))
    return phrases
