"""Readings and pitch accents from OpenJTalk (pyopenjtalk-plus bundles its dictionary: offline).

Shown to the user before synthesis ("the text as it will be read") so a misread kanji is caught
before a minute of audio is generated: the katakana pronunciation and the accent of each phrase in
the common notation ``[`` = pitch rises after this mora, ``]`` = pitch falls after this mora.
"""

from __future__ import annotations

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


def reading_of(text: str) -> Reading:
    """The katakana pronunciation and accent phrases of a normalised text (OpenJTalk)."""
    try:
        import pyopenjtalk
    except Exception:
        return Reading(kana="", accent="", available=False)
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
