"""Japanese readings of numbers in hiragana, with the sound changes a speaker makes.

Why our own and not num2words: the sound changes (さんびゃく, はっぴゃく, さんぜん, いっせん is not said,
はっちょう ...) and the counter forms (じゅっぷん, よっか) need rules we can test and fix line by line.
"""

from __future__ import annotations

DIGITS = ["ぜろ", "いち", "に", "さん", "よん", "ご", "ろく", "なな", "はち", "きゅう"]
# digit reading in front of a small unit (10, 100, 1000), with the sound changes
_TENS = {1: "じゅう", 2: "にじゅう", 3: "さんじゅう", 4: "よんじゅう", 5: "ごじゅう", 6: "ろくじゅう",
         7: "ななじゅう", 8: "はちじゅう", 9: "きゅうじゅう"}
_HUNDREDS = {1: "ひゃく", 2: "にひゃく", 3: "さんびゃく", 4: "よんひゃく", 5: "ごひゃく", 6: "ろっぴゃく",
             7: "ななひゃく", 8: "はっぴゃく", 9: "きゅうひゃく"}
_THOUSANDS = {1: "せん", 2: "にせん", 3: "さんぜん", 4: "よんせん", 5: "ごせん", 6: "ろくせん",
              7: "ななせん", 8: "はっせん", 9: "きゅうせん"}
# large units every four digits; the digit group in front of 兆 changes 1 / 8 / 10
_LARGE = [(10**16, "けい"), (10**12, "ちょう"), (10**8, "おく"), (10**4, "まん")]
MAX_READABLE = 10**20 - 1


def _below_10000(n: int) -> str:
    parts = []
    for value, table in ((1000, _THOUSANDS), (100, _HUNDREDS), (10, _TENS)):
        digit, n = divmod(n, value)
        if digit:
            parts.append(table[digit])
    if n:
        parts.append(DIGITS[n])
    return "".join(parts)


def _group_before(group: int, unit: str) -> str:
    """A 4-digit group in front of まん / おく / ちょう / けい (いっちょう, はっちょう, じゅっちょう)."""
    text = _below_10000(group)
    if unit in ("ちょう", "けい"):
        for plain, changed in (("いち", "いっ"), ("はち", "はっ"), ("じゅう", "じゅっ")):
            if text.endswith(plain):
                text = text[: -len(plain)] + changed
                break
    return text + unit


def read_integer(n: int) -> str:
    """12345 -> いちまんにせんさんびゃくよんじゅうご; 0 -> ぜろ; negative -> まいなす ...

    Numbers past 10^20 are read digit by digit (a serial number, not a quantity).
    """
    if n < 0:
        return "まいなす" + read_integer(-n)
    if n == 0:
        return DIGITS[0]
    if n > MAX_READABLE:
        return read_digits(str(n))
    parts = []
    for value, unit in _LARGE:
        group, n = divmod(n, value)
        if group:
            parts.append(_group_before(group, unit))
    if n:
        parts.append(_below_10000(n))
    return "".join(parts)


def read_digits(text: str) -> str:
    """Digit by digit, as a phone number or a code is read (0 -> ぜろ)."""
    return "".join(DIGITS[int(c)] for c in text if c.isdigit())


def read_decimal(text: str) -> str:
    """'3.14' -> さんてんいちよん; '-0.5' -> まいなすれいてんご (the integer part 0 reads れい)."""
    negative = text.startswith("-")
    body = text.lstrip("-+")
    whole, _, fraction = body.partition(".")
    whole_value = int(whole.replace(",", "") or "0")
    head = "れい" if whole_value == 0 else read_integer(whole_value)
    reading = head + ("てん" + read_digits(fraction) if fraction else "")
    return ("まいなす" if negative else "") + reading


def read_number_text(text: str) -> str:
    """A number as written ('1,100', '3.5', '-2', '007'): a quantity reading, commas ignored."""
    clean = text.replace(",", "")
    if "." in clean:
        return read_decimal(clean)
    if len(clean.lstrip("-+")) > 1 and clean.lstrip("-+").startswith("0"):
        return read_digits(clean)  # leading zero: a code such as 007
    return read_integer(int(clean))


# ---- counters with their own forms (dates, times) ----

_MONTHS = {4: "しがつ", 7: "しちがつ", 9: "くがつ"}
_DAYS = {1: "ついたち", 2: "ふつか", 3: "みっか", 4: "よっか", 5: "いつか", 6: "むいか", 7: "なのか",
         8: "ようか", 9: "ここのか", 10: "とおか", 14: "じゅうよっか", 20: "はつか", 24: "にじゅうよっか"}
_HOURS = {4: "よじ", 7: "しちじ", 9: "くじ"}
# the last digit decides ふん / ぷん and the sound change before it
_MINUTE_ENDINGS = {0: "ぷん", 1: "いっぷん", 2: "にふん", 3: "さんぷん", 4: "よんぷん", 5: "ごふん",
                   6: "ろっぷん", 7: "ななふん", 8: "はっぷん", 9: "きゅうふん"}


def _last_digit_form(n: int, forms: dict[int, str], suffix: str) -> str:
    """Counters whose last digit changes (よじ, じゅうよじ, くじ, にじゅうくじ, よねん, にせんにじゅうよねん)."""
    if n % 10 in forms and n % 100 not in (0,):
        head = read_integer(n - n % 10) if n >= 10 else ""
        return head + forms[n % 10]
    return read_integer(n) + suffix


def read_year(n: int) -> str:
    return _last_digit_form(n, {4: "よねん", 9: "きゅうねん"}, "ねん")


def read_month(n: int) -> str:
    return _MONTHS.get(n, read_integer(n) + "がつ")


def read_day(n: int) -> str:
    return _DAYS.get(n, read_integer(n) + "にち")


def read_hour(n: int) -> str:
    return _last_digit_form(n, _HOURS, "じ")


def read_minutes(n: int) -> str:
    """1 -> いっぷん, 10 -> じゅっぷん, 30 -> さんじゅっぷん, 45 -> よんじゅうごふん."""
    if n == 0:
        return "れいふん"
    tens, last = divmod(n, 10)
    if last == 0:
        head = read_integer(n)
        return head[: -len("じゅう")] + "じゅっぷん" if head.endswith("じゅう") else head + "ぷん"
    return (read_integer(tens * 10) if tens else "") + _MINUTE_ENDINGS[last]


def read_seconds(n: int) -> str:
    return read_integer(n) + "びょう"
