"""Decode a user's text file, and the cheap text measures shared by inspection and refinement.

Why a careful order: Japanese users hand us UTF-8 (with or without a BOM, Excel adds one) and
Shift_JIS/CP932 files (Excel's default "CSV" on a Japanese Windows). Statistical detectors guess
wrong on short Japanese snippets, so strict decoders come first: UTF-16 only when a BOM says so,
then UTF-8 (``utf-8-sig`` strips a BOM), then CP932 (a superset of Shift_JIS), and only then
charset-normalizer. The encoding actually used is reported so the UI can show it.
"""

from __future__ import annotations

import codecs
import unicodedata

from lora_factory.kit import LoRAFactoryError

AUTO = "auto"


def _encoding_error(file_name: str, tried: str, reason: str) -> LoRAFactoryError:
    return LoRAFactoryError(
        "DATASET_ENCODING",
        f"「{file_name}」の文字コードを判別できません({tried})。UTF-8 で保存し直すか、encoding を指定してください。",
        f"Could not decode '{file_name}' ({tried}). Save it as UTF-8 or give the encoding explicitly.",
        http_status=422,
        detail={"file": file_name, "encoding": tried, "reason": reason},
    )


def decode_bytes(data: bytes, encoding: str = AUTO, file_name: str = "") -> tuple[str, str]:
    """Decode ``data``; returns ``(text, encoding_used)``.

    ``encoding`` is ``"auto"`` or a Python codec name (``utf-8``, ``cp932``, ``shift_jis`` ...),
    which is then applied strictly. Raises ``DATASET_ENCODING`` (422) when nothing decodes.
    """
    encoding = (encoding or AUTO).strip().lower()
    if encoding != AUTO:
        try:
            codecs.lookup(encoding)
        except LookupError as exc:
            raise _encoding_error(file_name, encoding, f"unknown encoding: {exc}") from exc
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError as exc:
            raise _encoding_error(file_name, encoding, str(exc)) from exc
        if text.startswith("\ufeff"):
            text = text[1:]
        return text, encoding

    if data.startswith(codecs.BOM_UTF16_LE) or data.startswith(codecs.BOM_UTF16_BE):
        try:
            return data.decode("utf-16"), "utf-16"
        except UnicodeDecodeError:
            pass
    try:
        if data.startswith(codecs.BOM_UTF8):
            return data.decode("utf-8-sig"), "utf-8-sig"
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp932"), "cp932"
    except UnicodeDecodeError:
        pass
    try:
        from charset_normalizer import from_bytes
    except ImportError:  # pragma: no cover - charset-normalizer is a declared dependency
        best = None
    else:
        best = from_bytes(data).best()
    if best is None or not best.encoding:
        raise _encoding_error(file_name, AUTO, "neither UTF-8 nor CP932, and no other encoding fits")
    return str(best), str(best.encoding).lower()


# -- cheap measures -----------------------------------------------------------------------------

def is_japanese_char(ch: str) -> bool:
    """Hiragana, katakana (full and half width), CJK ideographs, the iteration and long-vowel marks."""
    code = ord(ch)
    return (
        0x3040 <= code <= 0x30FF  # hiragana, katakana
        or 0x31F0 <= code <= 0x31FF  # katakana phonetic extensions
        or 0x3400 <= code <= 0x4DBF  # CJK extension A
        or 0x4E00 <= code <= 0x9FFF  # CJK unified ideographs
        or 0xF900 <= code <= 0xFAFF  # CJK compatibility ideographs
        or 0xFF66 <= code <= 0xFF9F  # half-width katakana
        or 0x20000 <= code <= 0x2FA1F  # CJK extensions B+
        or ch in "々〆ヵヶ"
    )


def japanese_ratio(text: str) -> float:
    """Share of Japanese characters among letters (digits, spaces and punctuation do not count)."""
    letters = 0
    japanese = 0
    for ch in text:
        if is_japanese_char(ch):
            japanese += 1
            letters += 1
        elif ch.isalpha():
            letters += 1
    return japanese / letters if letters else 0.0


def estimate_tokens(text: str) -> int:
    """A tokenizer-free token estimate: about one token per Japanese/CJK character, about four
    characters per token for everything else (the usual rule of thumb for BPE vocabularies).
    Good enough for length filters and the dataset overview; the trainer counts real tokens."""
    cjk = 0
    other = 0
    for ch in text:
        if is_japanese_char(ch) or unicodedata.east_asian_width(ch) in ("W", "F"):
            cjk += 1
        elif not ch.isspace():
            other += 1
    spaces = sum(1 for ch in text if ch.isspace())
    return cjk + (other + spaces + 3) // 4
