"""Japanese text normalisation for speech: what a narrator would say for every digit and symbol.

Order matters: NFKC first (full-width digits, ㎞, ①), then the user's dictionary (their word wins
over every rule), then dates and times (they contain numbers), money and units (a number with its
unit), numbers with a counter (OpenJTalk knows いっぽん / さんばい), plain numbers, symbols, and Latin
words. Numbers come out in hiragana, so the text the model reads has one reading only.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from lora_factory.plugins.audio.text_norm import numbers as num
from lora_factory.plugins.audio.text_norm.letters import _JAPANESE, LETTER_NAMES, is_english  # noqa: F401 - re-exported
from lora_factory.plugins.audio.text_norm.user_dict import FALL, RISE, UserDictionary

LATIN_MODES = ("keep", "spell", "kana")

_NUM = r"-?\d[\d,]*(?:\.\d+)?"
_CURRENCY_PREFIX = {"¥": "えん", "$": "どる", "€": "ゆーろ", "£": "ぽんど"}
_CURRENCY_SUFFIX = {"円": "えん", "ドル": "どる", "ユーロ": "ゆーろ", "ポンド": "ぽんど", "ウォン": "うぉん", "元": "げん"}
# longest first, so "km" wins over "m"; matched only right after a number
_UNITS = {
    "km/h": "きろめーとるまいじ", "km": "きろめーとる", "cm": "せんちめーとる", "mm": "みりめーとる",
    "m": "めーとる", "kg": "きろぐらむ", "mg": "みりぐらむ", "g": "ぐらむ", "ml": "みりりっとる",
    "mL": "みりりっとる", "L": "りっとる", "°C": "ど", "℃": "ど", "°": "ど", "%": "ぱーせんと",
    "TB": "てらばいと", "GB": "ぎがばいと", "MB": "めがばいと", "KB": "きろばいと", "kB": "きろばいと",
    "GHz": "ぎがへるつ", "MHz": "めがへるつ", "kHz": "きろへるつ", "Hz": "へるつ", "dB": "でしべる",
    "kcal": "きろかろりー", "ms": "みりびょう", "fps": "えふぴーえす", "px": "ぴくせる",
}
_LARGE_KANJI = {"万": 10**4, "億": 10**8, "兆": 10**12}
# counters whose sound changes OpenJTalk applies (いっぽん, さんびき, ひとり ...)
_COUNTERS = "本杯匹冊人個回歳才枚台階件軒着足頭羽杯通点番度倍泊週秒分時日年月号話巻缶粒箱位名代歩周問章曲票勝敗戦"
_SYMBOLS = {
    "&": "あんど", "+": "ぷらす", "×": "かける", "÷": "わる", "=": "いこーる", "@": "あっと", "#": "", "*": "", "※": "", "♪": "",
    "→": "", "←": "", "・": "、", ";": "、", ":": "、", "!": "！", "?": "？", "…": "…", "~": "",
    "「": "", "」": "", "『": "", "』": "", "(": "", ")": "", "[": "", "]": "", "【": "", "】": "",
    "{": "", "}": "", "<": "", ">": "", "\"": "", "'": "", "“": "", "”": "", "‘": "", "’": "", "/": "、",
    "|": "", "\\": "", "^": "", "_": "", "`": "", "〈": "", "〉": "", "《": "", "》": "",
}


# Readings a rule wrote (numbers, dates, the user's words) are wrapped in these private-use marks
# while the rules run, so the reading preview can hand them to OpenJTalk as literal kana: re-parsed as
# words, "令和はちねん" became 令和 + は (particle, ワ) + ちねん. The text the model reads has no marks.
OPEN, CLOSE = "\ue000", "\ue001"


def _lit(reading: str) -> str:
    return f"{OPEN}{reading}{CLOSE}" if reading else reading


@dataclass
class NormalizationOptions:
    """What the user can choose (the same set for training and synthesis)."""

    latin: str = "keep"  # keep | spell | kana
    user_dictionary: UserDictionary = field(default_factory=UserDictionary)
    counter_reader: Callable[[str], str | None] | None = None  # "3本" -> "さんぼん"; OpenJTalk by default
    # the line's language (a dataset's language column): "ja" Japanese rules, "en" English rules,
    # another (zh, ko, yue) only NFKC and spaces (our rules would read its numbers in Japanese);
    # None: English rules for a line of Latin words, Japanese rules otherwise
    language: str | None = None
    # the accents the user set in the dictionary, as pitch marks in the text ("ト[ーキョー"): the form a
    # model trained with them reads; off, the entry's plain reading
    accent_marks: bool = True


def _hira(text: str) -> str:
    return "".join(chr(ord(c) - 0x60) if "ァ" <= c <= "ヶ" else c for c in text)


_VOWEL_OF = {}
for _vowel, _row in (("あ", "あかさたなはまやらわがざだばぱぁゃ"), ("い", "いきしちにひみりぎじぢびぴぃ"),
                     ("う", "うくすつぬふむゆるぐずづぶぷぅゅ"), ("い", "えけせてねへめれげぜでべぺぇ"),
                     ("う", "おこそとのほもよろをごぞどぼぽぉょ")):
    for _kana in _row:
        _VOWEL_OF[_kana] = _vowel


def _spell_long_vowels(kana: str) -> str:
    """OpenJTalk's pronunciation writes long vowels as ー (びょー): spell them as kana do (びょう)."""
    out: list[str] = []
    for ch in kana:
        out.append(_VOWEL_OF.get(out[-1], "ー") if ch == "ー" and out else ch)
    return "".join(out)


def _openjtalk_counter(chunk: str) -> str | None:
    """OpenJTalk's pronunciation of a number with its counter (さんぼん, ひとり), in hiragana."""
    try:
        import pyopenjtalk
    except Exception:  # the wheel is missing on this platform: fall back to the plain reading
        return None
    reading = "".join(node.get("pron", "") for node in pyopenjtalk.run_frontend(chunk)).replace("’", "")
    if not reading or re.search(r"[0-9A-Za-z、]", reading):
        return None
    return _spell_long_vowels(_hira(reading))


def _dates(text: str) -> str:
    def ymd(m: re.Match[str]) -> str:
        y, mo, d = int(m.group(1)), int(m.group(2)), int(m.group(3))
        if not (1 <= mo <= 12 and 1 <= d <= 31):
            return m.group(0)
        return _lit(num.read_year(y) + num.read_month(mo) + num.read_day(d))

    text = re.sub(r"(\d{4})年(\d{1,2})月(\d{1,2})日", ymd, text)
    text = re.sub(r"(?<![\d.])(\d{4})[/.\-](\d{1,2})[/.\-](\d{1,2})(?![\d.])", ymd, text)
    text = re.sub(r"(\d{1,2})月(\d{1,2})日",
                  lambda m: _lit(num.read_month(int(m.group(1))) + num.read_day(int(m.group(2))))
                  if 1 <= int(m.group(1)) <= 12 and 1 <= int(m.group(2)) <= 31 else m.group(0), text)
    text = re.sub(r"(\d{1,4})年", lambda m: _lit(num.read_year(int(m.group(1)))), text)
    text = re.sub(r"(\d{1,2})月", lambda m: _lit(num.read_month(int(m.group(1)))) if 1 <= int(m.group(1)) <= 12
                  else m.group(0), text)
    return text


def _times(text: str) -> str:
    def clock(m: re.Match[str]) -> str:
        h, mi = int(m.group(1)), int(m.group(2))
        if h > 24 or mi > 59:
            return m.group(0)
        out = num.read_hour(h) + ("" if mi == 0 else num.read_minutes(mi))
        if m.group(3):
            out += num.read_seconds(int(m.group(3)))
        return _lit(out)

    text = re.sub(r"(?<![\d:])(\d{1,2}):(\d{2})(?::(\d{2}))?(?![\d:])", clock, text)
    text = re.sub(r"(\d{1,2})時半", lambda m: _lit(num.read_hour(int(m.group(1))) + "はん"), text)
    text = re.sub(r"(\d{1,2})時(\d{1,2})分",
                  lambda m: _lit(num.read_hour(int(m.group(1))) + num.read_minutes(int(m.group(2)))), text)
    text = re.sub(r"(\d{1,2})時(?!間)", lambda m: _lit(num.read_hour(int(m.group(1)))), text)
    text = re.sub(r"(\d+)分(?!の)", lambda m: _lit(num.read_minutes(int(m.group(1)))), text)
    return text


def _digit_groups(m: re.Match[str]) -> str:
    return "、".join(_lit(num.read_digits(g)) for g in m.groups() if g)


def _ranges_and_codes(text: str) -> str:
    """3〜5 -> 3から5 (before the counters read 5個); codes read digit by digit: phone numbers
    (090-1234-5678), postal codes (〒100-0001, 100-0001), #1 / No.1 (なんばー)."""
    text = re.sub(r"(\d)\s?~\s?(?=\d)", r"\1から", text)
    text = re.sub(r"(?<![\d-])(\d{2,4})-(\d{2,4})-(\d{3,4})(?![\d-])", _digit_groups, text)
    text = re.sub(r"〒\s?(\d{3})-?(\d{4})(?![\d-])", lambda m: _lit("ゆうびんばんごう") + "、" + _digit_groups(m), text)
    text = re.sub(r"(?<![\d-])(\d{3})-(\d{4})(?![\d-])", _digit_groups, text)
    return re.sub(r"(?:#|(?<![A-Za-z])No\.\s?)(\d+)(?![\d.])",
                  lambda m: _lit("なんばー" + num.read_integer(int(m.group(1)))), text)


_WEEKDAY = r"\s?[(（][月火水木金土日][)）]"


def _versions_and_fractions(text: str) -> str:
    """ver.2.1 / v3 -> ばーじょんにてんいち (the dot is no sentence end); 1/2 -> にぶんのいち, but a
    m/d date stays a date when a weekday follows or the first number is the larger one (4/1)."""
    def version(m: re.Match[str]) -> str:
        return _lit("ばーじょん" + "てん".join(num.read_integer(int(p)) for p in m.group(1).split(".")))

    text = re.sub(r"(?<![A-Za-z])(?:[Vv]er(?:sion)?\.?\s?|[Vv](?=\d))(\d+(?:\.\d+)*)(?![\d])", version, text)

    def slash(m: re.Match[str]) -> str:
        a, b = int(m.group(1)), int(m.group(2))
        date_like = 1 <= a <= 12 and 1 <= b <= 31
        if date_like and (m.group(3) or a > b):
            return _lit(num.read_month(a) + num.read_day(b)) + (m.group(3) or "")
        if b == 0:
            return m.group(0)
        return _lit(num.read_integer(b) + "ぶんの" + num.read_integer(a)) + (m.group(3) or "")

    return re.sub(r"(?<![\d/.])(\d{1,4})/(\d{1,4})(?![\d/])(" + _WEEKDAY + ")?", slash, text)


def _money(text: str) -> str:
    amount = _NUM + r"(?:[万億兆]" + r"(?:\d[\d,]*)?)*"

    def read_amount(raw: str) -> str:
        parts = re.split(r"([万億兆])", raw)
        if len(parts) == 1:
            return num.read_number_text(raw)
        total = 0
        pending = 0
        for piece in parts:
            if piece in _LARGE_KANJI:
                total += max(pending, 1) * _LARGE_KANJI[piece]
                pending = 0
            elif piece:
                pending = int(piece.replace(",", ""))
        return num.read_integer(total + pending)

    for symbol, word in _CURRENCY_PREFIX.items():
        text = re.sub(re.escape(symbol) + r"\s?(" + amount + ")",
                      lambda m, w=word: _lit(read_amount(m.group(1)) + w), text)
    for unit, word in sorted(_CURRENCY_SUFFIX.items(), key=lambda kv: -len(kv[0])):
        text = re.sub("(" + amount + ")" + re.escape(unit), lambda m, w=word: _lit(read_amount(m.group(1)) + w), text)
    # bare amounts with 万 / 億 ("3万人" is handled by the counter pass afterwards)
    text = re.sub(r"(\d[\d,]*)([万億兆])(?:(\d[\d,]*)([万億兆]))?(\d[\d,]*)?",
                  lambda m: _lit(read_amount("".join(g for g in m.groups() if g))), text)
    return text


def _units(text: str, reader: Callable[[str], str | None]) -> str:
    """5km -> ごきろめーとる. A kanji right after the unit makes a compound with it (100m走: そう, not
    the verb's はし): OpenJTalk reads number, unit and that kanji together."""
    names = sorted(_UNITS, key=len, reverse=True)
    pattern = ("(" + _NUM + r")\s?(" + "|".join(re.escape(n) for n in names) + r")(?![A-Za-z])"
               r"([\u4e00-\u9fff][\u3041-\u3096]*)?")

    def one(m: re.Match[str]) -> str:
        plain = num.read_number_text(m.group(1)) + _UNITS[m.group(2)]
        if m.group(3) and not m.group(1).startswith("-"):
            whole, head = reader(m.group(0)), reader(m.group(0)[: -len(m.group(3))])
            if whole and head and whole.startswith(head) and len(whole) > len(head):
                return _lit(plain + whole[len(head):])
        return _lit(plain) + (m.group(3) or "")

    return re.sub(pattern, one, text)


def _counters(text: str, reader: Callable[[str], str | None]) -> str:
    def one(m: re.Match[str]) -> str:
        sign, chunk = ("まいなす", m.group(0)[1:]) if m.group(0).startswith("-") else ("", m.group(0))
        reading = reader(chunk)
        return _lit(sign + reading if reading else num.read_number_text(m.group(1)) + m.group(2))

    return re.sub(r"(?<![\d.])(-?\d[\d,]*)(?![\d.,])([" + _COUNTERS + "])", one, text)


def _numbers(text: str) -> str:
    text = re.sub(r"(?<![\dA-Za-z.])-(?=\d)", "マイナス", text)  # not COVID-19's hyphen
    return re.sub(r"\d[\d,]*(?:\.\d+)?", lambda m: _lit(num.read_number_text(m.group(0).rstrip(","))), text)


def _latin(text: str, mode: str) -> str:
    if mode == "keep":
        return text
    if mode == "spell":
        return re.sub(r"[A-Za-z]+", lambda m: "".join(LETTER_NAMES[c.upper()] for c in m.group(0)), text)

    def kana(m: re.Match[str]) -> str:
        word = m.group(0)
        reading = _openjtalk_counter(word)
        return reading if reading and not re.search(r"[A-Za-z]", reading) else "".join(
            LETTER_NAMES[c.upper()] for c in word)

    return re.sub(r"[A-Za-z]+", kana, text)


def _symbols(text: str) -> str:
    out = []
    for i, ch in enumerate(text):
        if ch in _SYMBOLS:
            out.append(_SYMBOLS[ch])
        elif ch in ",.":
            prev = text[i - 1] if i else ""
            out.append("" if not prev or prev in "、。" else ("、" if ch == "," else "。"))
        elif ch in (OPEN, CLOSE, RISE, FALL):
            out.append(ch)
        elif unicodedata.category(ch) in ("So", "Sk", "Cs", "Co") or ch == "\ufe0f":
            continue  # emoji, pictographs, private use: nothing to say
        else:
            out.append(ch)
    return "".join(out)


def _spaces(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    # a space between two Japanese characters is layout, not speech
    return re.sub(r"(?<=[^\x00-\x7f]) (?=[^\x00-\x7f])|(?<=[^\x00-\x7f]) (?=[\x00-\x7f])|"
                  r"(?<=[\x00-\x7f]) (?=[^\x00-\x7f])", "", text)


_WEEKDAYS = {"月": "げつようび", "火": "かようび", "水": "すいようび", "木": "もくようび", "金": "きんようび",
             "土": "どようび", "日": "にちようび"}


def _weekdays(text: str) -> str:
    """3月5日(火) / 4/1(月): the weekday in brackets is read (かようび), not dropped to 火 (ひ)."""
    return re.sub(r"[(（]([月火水木金土日])[)）]", lambda m: _lit(_WEEKDAYS[m.group(1)]), text)


def _normalize_marked(text: str, options: NormalizationOptions) -> str:
    text = unicodedata.normalize("NFKC", text or "")
    text = text.replace("〜", "~").replace("～", "~")
    text = re.sub(r"[\u2212\u2012\u2013\u2014\u2015](?=\d)", "-", text)  # minus signs and dashes before a digit
    text = text.replace("\u2044", "/")  # NFKC turns ½ into 1⁄2 (fraction slash)
    language = options.language or ("en" if is_english(text) else "ja")
    if language not in ("ja", "en"):
        return _spaces(options.user_dictionary.apply(text, mark=_lit, accents=options.accent_marks))
    if language == "en":
        from lora_factory.plugins.audio.text_norm.english import normalize_english

        return _spaces(normalize_english(options.user_dictionary.apply(text, mark=_lit, accents=options.accent_marks)))
    text = options.user_dictionary.apply(text, mark=_lit, accents=options.accent_marks)
    reader = options.counter_reader or _openjtalk_counter
    text = _ranges_and_codes(text)
    text = _dates(text)
    text = _versions_and_fractions(text)
    text = _weekdays(text)
    text = _times(text)
    text = _money(text)
    text = _units(text, reader)
    text = _counters(text, reader)
    text = _numbers(text)
    text = _symbols(text)
    text = _latin(text, options.latin)
    return _spaces(text)


def normalize_with_spans(text: str, options: NormalizationOptions | None = None) -> tuple[str, list[tuple[int, int]]]:
    """The text as it will be read, and the (start, end) of each reading a rule wrote (literal kana)."""
    options = options or NormalizationOptions()
    if options.latin not in LATIN_MODES:
        raise ValueError(f"latin must be one of {LATIN_MODES}")
    marked = _normalize_marked(text, options)
    out: list[str] = []
    spans: list[tuple[int, int]] = []
    start = None
    length = 0
    for ch in marked:
        if ch in (RISE, FALL):
            if options.accent_marks:
                out.append("[" if ch == RISE else "]")
                length += 1
        elif ch == OPEN:
            start = length
        elif ch == CLOSE:
            if start is not None and length > start:
                spans.append((start, length))
            start = None
        else:
            out.append(ch)
            length += 1
    return "".join(out), spans


def normalize_text(text: str, options: NormalizationOptions | None = None) -> str:
    """The text as it will be read: digits, dates, money, units and symbols written out."""
    return normalize_with_spans(text, options)[0]


def normalize_many(texts: Sequence[str], options: NormalizationOptions | None = None) -> list[str]:
    return [normalize_text(t, options) for t in texts]
