"""The user's dictionary: surface -> reading, kept in the workspace, applied before every rule.

Stored as JSON (``{"entries": [{"surface", "reading", "accent", "note"}]}``) so it is readable,
diffable and travels with the workspace. The longest surface wins where two overlap (東京タワー before
東京). ``accent`` is the accent type set in the reading preview (OpenJTalk's convention: 0 flat, n =
the pitch falls after mora n); an entry with one is written into the text as katakana with the pitch
marks ``[`` (rises) and ``]`` (falls), which is how the accent reaches the TTS model (see reading.py).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

USER_DICT_FILE = "audio_user_dictionary.json"
MAX_ENTRIES = 5000
_READING = re.compile(r"^[\u3040-\u30ffー・、。！？ a-zA-Z]+$")


# accent marks while the rules run (private-use: the symbol rules drop "[" and "]"); normalize_with_spans
# turns them into "[" / "]" (or drops them when accent marks are off)
RISE, FALL = "\ue002", "\ue003"


@dataclass
class DictionaryEntry:
    surface: str
    reading: str
    note: str = ""
    accent: int | None = None  # accent type (0 flat, n: falls after mora n); None: OpenJTalk's own

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"surface": self.surface, "reading": self.reading, "note": self.note}
        if self.accent is not None:
            out["accent"] = self.accent
        return out

    def spoken(self, accents: bool = True) -> str:
        """What replaces the surface: the reading, or with an accent its katakana with pitch marks."""
        if self.accent is None or not accents:
            return self.reading
        from lora_factory.plugins.audio.text_norm.reading import katakana, mark_accent, split_morae

        marked = mark_accent(split_morae(katakana(self.reading)), self.accent)
        return marked.replace("[", RISE).replace("]", FALL)


def validate_entry(raw: dict[str, Any]) -> DictionaryEntry:
    """Clean one entry; raises ValueError (with the field) for an empty surface or a non-kana reading."""
    surface = unicodedata.normalize("NFKC", str(raw.get("surface", ""))).strip()
    reading = unicodedata.normalize("NFKC", str(raw.get("reading", ""))).strip()
    if not surface or len(surface) > 64:
        raise ValueError("surface: 1-64 characters")
    if not reading or len(reading) > 128 or not _READING.match(reading):
        raise ValueError("reading: kana (hiragana / katakana), 1-128 characters")
    accent = raw.get("accent")
    if accent is not None and accent != "":
        from lora_factory.plugins.audio.text_norm.reading import katakana, split_morae

        morae = len(split_morae(katakana(reading)))
        if isinstance(accent, bool) or not isinstance(accent, int | str) or not str(accent).isdigit() \
                or int(accent) > morae:
            raise ValueError(f"accent: 0 (flat) to {morae} (the morae of the reading)")
        if not re.fullmatch(r"[\u3040-\u30ffー]+", reading):
            raise ValueError("accent: only for a reading in kana alone")
        return DictionaryEntry(surface, reading, str(raw.get("note", ""))[:200], int(accent))
    return DictionaryEntry(surface, reading, str(raw.get("note", ""))[:200])


@dataclass
class UserDictionary:
    entries: list[DictionaryEntry] = field(default_factory=list)

    @classmethod
    def from_list(cls, items: list[dict[str, Any]] | None) -> UserDictionary:
        entries: dict[str, DictionaryEntry] = {}
        for raw in items or []:
            entry = validate_entry(raw)
            entries[entry.surface] = entry  # the last one of a surface wins
        return cls(list(entries.values()))

    @classmethod
    def load(cls, path: Path) -> UserDictionary:
        if not path.is_file():
            return cls()
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls.from_list(data.get("entries") if isinstance(data, dict) else data)

    def to_list(self) -> list[dict[str, str]]:
        return [e.to_dict() for e in self.entries]

    def to_json(self) -> str:
        return json.dumps({"entries": self.to_list()}, ensure_ascii=False, indent=2) + "\n"

    def apply(self, text: str, mark: Callable[[str], str] | None = None, accents: bool = True) -> str:
        """Each surface *word* replaced by its reading (``mark`` wraps the reading, for the preview);
        with ``accents``, an entry's accent as pitch marks (:meth:`DictionaryEntry.spoken`).

        A word, not a substring: ``AI`` leaves ``EMAIL`` alone and ``京都`` leaves ``東京都`` alone.
        A match must start and end where OpenJTalk's own word segmentation has a boundary, and a
        Latin or digit surface must not touch another Latin letter or digit.
        """
        if not self.entries:
            return text
        by_surface = {e.surface: e.spoken(accents) for e in self.entries}
        pattern = "|".join(re.escape(s) for s in sorted(by_surface, key=len, reverse=True))
        wrap = mark or (lambda reading: reading)
        bounds = word_boundaries(text)

        def one(m: re.Match[str]) -> str:
            start, end = m.span()
            alnum = re.compile(r"[A-Za-z0-9]")
            if (start > 0 and alnum.match(text[start - 1]) and alnum.match(text[start])) or \
                    (end < len(text) and alnum.match(text[end]) and alnum.match(text[end - 1])):
                return m.group(0)
            if bounds is not None and (start not in bounds or end not in bounds):
                return m.group(0)
            return wrap(by_surface[m.group(0)])

        return re.sub(pattern, one, text)


def word_boundaries(text: str) -> set[int] | None:
    """Offsets where OpenJTalk's segmentation puts a word boundary (None without pyopenjtalk, or
    when its tokens do not add up to the text)."""
    try:
        import pyopenjtalk
    except Exception:
        return None
    offsets, at = {0}, 0
    for node in pyopenjtalk.run_frontend(text):
        at += len(str(node.get("string", "")))
        offsets.add(at)
    return offsets if at == len(text) else None
