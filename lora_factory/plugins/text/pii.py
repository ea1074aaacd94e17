"""Mask personal data (e-mail addresses, phone numbers, optionally URLs) with placeholder tokens.

Why placeholders rather than deletion: the sentence stays grammatical (「<EMAIL> までご連絡ください」)
so the model still learns the pattern without memorising anyone's address.

Phone numbers cover the Japanese forms (``03-1234-5678``, ``090-1234-5678``, ``0120-123-456``,
``(03) 1234-5678``, ``09012345678``, full-width digits and hyphens) and international ones
(``+81 90-1234-5678``, ``+1 (555) 123-4567``). A bare digit run must start with 0 and have 10-11
digits so years, prices and IDs are not masked.
"""

from __future__ import annotations

import re

EMAIL_TOKEN = "<EMAIL>"
PHONE_TOKEN = "<PHONE>"
URL_TOKEN = "<URL>"

_D = "[0-9０-９]"
_SEP = "[-‐－―ー−\\s.]"  # ASCII / Japanese hyphens, spaces, dots

EMAIL_RE = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
URL_RE = re.compile(r"(?:https?://|www\.)[^\s<>\"'「」（）()、。]+", re.IGNORECASE)
PHONE_RE = re.compile(
    "(?<![0-9０-９])(?:"
    # international: +81 90 1234 5678, +81-3-1234-5678, +1 (555) 123-4567
    rf"[+＋]{_D}{{1,3}}{_SEP}?\(?{_D}{{1,4}}\)?{_SEP}?{_D}{{1,4}}{_SEP}?{_D}{{3,4}}"
    # Japanese with separators: 03-1234-5678, 090-1234-5678, 0120-123-456, (03) 1234-5678
    rf"|[(（]?[0０]{_D}{{0,4}}[)）]?{_SEP}?{_D}{{1,4}}{_SEP}{_D}{{3,4}}"
    # a bare run: 09012345678 / 0312345678
    rf"|[0０]{_D}{{9,10}}"
    ")(?![0-9０-９])"
)


def mask_pii(text: str, email: bool = True, phone: bool = True, url: bool = False) -> tuple[str, dict[str, int]]:
    """Return ``(masked_text, counts)`` with ``counts`` per kind (``email``, ``phone``, ``url``).

    URLs are masked first (they may contain digits and ``@``), then e-mail addresses, then phones.
    """
    counts = {"email": 0, "phone": 0, "url": 0}

    def sub(pattern: re.Pattern[str], token: str, kind: str, value: str) -> str:
        new, n = pattern.subn(token, value)
        counts[kind] += n
        return new

    if url:
        text = sub(URL_RE, URL_TOKEN, "url", text)
    if email:
        text = sub(EMAIL_RE, EMAIL_TOKEN, "email", text)
    if phone:
        text = _mask_phones(text, counts)
    return text, counts


def _mask_phones(text: str, counts: dict[str, int]) -> str:
    def repl(match: re.Match[str]) -> str:
        value = match.group(0)
        digits = sum(ch.isdigit() for ch in value)
        if digits < 9 or digits > 15:  # "2024-01-15" and the like are not phone numbers
            return value
        counts["phone"] += 1
        return PHONE_TOKEN

    return PHONE_RE.sub(repl, text)
