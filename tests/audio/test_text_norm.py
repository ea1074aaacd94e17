"""Japanese text normalisation: numbers, dates, times, money, units, symbols and the user dictionary."""

from __future__ import annotations

import pytest

from lora_factory.plugins.audio.text_norm import NormalizationOptions, UserDictionary, normalize_text
from lora_factory.plugins.audio.text_norm.numbers import read_integer, read_minutes
from lora_factory.plugins.audio.text_norm.reading import reading_of
from lora_factory.plugins.audio.text_norm.user_dict import validate_entry


@pytest.mark.parametrize(("text", "expected"), [
    ("1,100円です。", "せんひゃくえんです。"),
    ("¥500", "ごひゃくえん"),
    ("価格は3万5000円", "価格はさんまんごせんえん"),
    ("2024年3月5日に会いましょう", "にせんにじゅうよねんさんがついつかに会いましょう"),
    ("会議は2024/4/1です!", "会議はにせんにじゅうよねんしがつついたちです！"),
    ("10:30に出発", "じゅうじさんじゅっぷんに出発"),
    ("14時", "じゅうよじ"),
    ("5km走った", "ごきろめーとる走った"),
    ("気温は-3℃", "気温はまいなすさんど"),
    ("100%", "ひゃくぱーせんと"),
    ("3本のペン", "さんぼんのペン"),
    ("1人で", "ひとりで"),
    ("3〜5個", "さんからごこ"),
    ("電話は090-1234-5678", "電話はぜろきゅうぜろ、いちにさんよん、ごろくななはち"),
    ("「こんにちは」と言った😀", "こんにちはと言った"),
    ("3.14", "さんてんいちよん"),
    ("ＡＢＣ１２３", "ABCひゃくにじゅうさん"),
])
def test_japanese_readings(text: str, expected: str) -> None:
    assert normalize_text(text) == expected


def test_numbers_with_sound_changes() -> None:
    assert read_integer(300) == "さんびゃく"
    assert read_integer(8000) == "はっせん"
    assert read_integer(10**12) == "いっちょう"
    assert read_integer(12345) == "いちまんにせんさんびゃくよんじゅうご"
    assert [read_minutes(m) for m in (1, 3, 10, 45)] == ["いっぷん", "さんぷん", "じゅっぷん", "よんじゅうごふん"]


def test_user_dictionary_wins_over_rules_and_is_validated() -> None:
    dictionary = UserDictionary.from_list([{"surface": "LoRA", "reading": "ローラ"},
                                           {"surface": "東京タワー", "reading": "とうきょうたわー"},
                                           {"surface": "東京", "reading": "トーキョー"}])
    options = NormalizationOptions(user_dictionary=dictionary)
    assert normalize_text("LoRAで東京タワーと東京へ", options) == "ローラでとうきょうたわーとトーキョーへ"
    with pytest.raises(ValueError, match="reading"):
        validate_entry({"surface": "x", "reading": "漢字"})
    with pytest.raises(ValueError, match="surface"):
        validate_entry({"surface": "", "reading": "あ"})


def test_latin_words_kept_or_spelled() -> None:
    assert normalize_text("ABCです") == "ABCです"
    assert normalize_text("ABCです", NormalizationOptions(latin="spell")) == "エービーシーです"


def test_reading_with_accent_marks() -> None:
    reading = reading_of("箸を使う")
    assert reading.available and reading.kana.startswith("ハシヲ")
    assert "]" in reading.accent or "[" in reading.accent
