"""Japanese text normalisation: numbers, dates, times, money, units, symbols and the user dictionary."""

from __future__ import annotations

import pytest

from lora_factory.plugins.audio.text_norm import NormalizationOptions, UserDictionary, normalize_text
from lora_factory.plugins.audio.text_norm.normalize import normalize_with_spans
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
    ("5km走った", "ごきろめーとるはしった"),
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


# By category, as issue 18 found them wrong (the first of each group) and their neighbours.
@pytest.mark.parametrize(("text", "expected"), [
    # codes: postal mark and postal codes, phone numbers, #n / No.n
    ("〒100-0001", "ゆうびんばんごう、いちぜろぜろ、ぜろぜろぜろいち"),
    ("〒1500002", "ゆうびんばんごう、いちごぜろ、ぜろぜろぜろに"),
    ("郵便番号は150-0002です", "郵便番号はいちごぜろ、ぜろぜろぜろにです"),
    ("03-1234-5678まで", "ぜろさん、いちにさんよん、ごろくななはちまで"),
    ("#1", "なんばーいち"),
    ("#12の曲", "なんばーじゅうにの曲"),
    ("No.5", "なんばーご"),
    # fractions, and the m/d dates they must not swallow
    ("1/2", "にぶんのいち"),
    ("3/4カップ", "よんぶんのさんカップ"),
    ("½", "にぶんのいち"),
    ("1/3の確率", "さんぶんのいちの確率"),
    ("4/1(月)に", "しがつついたちげつようびに"),
    ("10/3", "じゅうがつみっか"),
    ("1/2(火)", "いちがつふつかかようび"),
    ("3月5日(土)", "さんがついつかどようび"),
    # minus signs (U+2212, en dash, full width) and temperatures
    ("−5℃", "まいなすごど"),
    ("\u22125度", "まいなすごど"),
    ("–3°C", "まいなすさんど"),
    ("－10.5℃", "まいなすじゅうてんごど"),
    ("COVID-19", "COVID-じゅうきゅう"),
    # versions: the dot is no sentence end
    ("ver.2.1で", "ばーじょんにてんいちで"),
    ("Ver.10", "ばーじょんじゅう"),
    ("v1.2.3が出た", "ばーじょんいちてんにてんさんが出た"),
    ("ｖｅｒ．２", "ばーじょんに"),
    # digits glued to Latin letters keep both
    ("2LDK", "にLDK"),
    ("A4の紙", "Aよんの紙"),
    ("4K", "よんK"),
    # counters and units with the right reading (a compound kanji after a unit)
    ("100m走", "ひゃくめーとるそう"),
    ("50m走で1位", "ごじゅうめーとるそうでいちい"),
    ("第1位", "第いちい"),
    ("3名", "さんめい"),
    ("20代", "にじゅうだい"),
    ("1歩", "いっぽ"),
    ("2×3", "にかけるさん"),
    ("1,000,000人", "ひゃくまんにん"),
    # whole English lines are read in English
    ("I have 3 apples", "I have three apples"),
    ("It costs $5.99, 20% off.", "It costs five point nine nine dollars, twenty percent off."),
    ("In 1999, I was 3rd.", "In nineteen ninety-nine, I was third."),
    ("See you at 10:30.", "See you at ten thirty."),
    ("Meet me at 9:05 in room 12.", "Meet me at nine oh five in room twelve."),
    ("Version 2 is out", "Version two is out"),
])
def test_readings_by_category(text: str, expected: str) -> None:
    assert normalize_text(text) == expected


@pytest.mark.parametrize(("text", "kana"), [
    ("令和8年", "レーワハチネン"),  # not レーワワチネン: the number is not re-read as a particle
    ("電話は090-1234-5678です", "デンワワゼロキュウゼロ、イチニサンヨン、ゴロクナナハチデス"),
    ("2LDKの部屋", "ニエルディーケーノヘヤ"),  # the L is kept
    ("4K", "ヨンケー"),
    ("A4", "エーヨン"),
    ("100m走", "ヒャクメートルソウ"),
    ("1/2", "ニブンノイチ"),
    ("8時", "ハチジ"),
])
def test_reading_preview_takes_the_rules_readings_literally(text: str, kana: str) -> None:
    normalized, spans = normalize_with_spans(text)
    assert reading_of(normalized, spans).kana == kana


def test_english_lines_have_no_japanese_reading() -> None:
    normalized, spans = normalize_with_spans("I have 3 apples")
    assert not reading_of(normalized, spans).available


def test_user_dictionary_matches_words_not_substrings() -> None:
    dictionary = UserDictionary.from_list([{"surface": "AI", "reading": "えーあい"},
                                           {"surface": "京都", "reading": "きょうと"},
                                           {"surface": "鬼滅の刃", "reading": "きめつのやいば"}])
    options = NormalizationOptions(user_dictionary=dictionary)
    assert normalize_text("EMAILとAIの話", options) == "EMAILとえーあいの話"
    assert normalize_text("東京都に行く", options) == "東京都に行く"
    assert normalize_text("京都に行く", options) == "きょうとに行く"
    assert normalize_text("鬼滅の刃を見た", options) == "きめつのやいばを見た"


def test_read_preview_route_takes_the_rules_readings_literally(tmp_path) -> None:
    from fastapi.testclient import TestClient

    from lora_factory.app import create_app

    with TestClient(create_app(tmp_path / "ws", start_scheduler=False), base_url="http://127.0.0.1") as c:
        r = c.post("/api/audio/read", json={"text": "令和8年"}).json()
    assert r["normalized"] == "令和はちねん" and r["reading"]["kana"] == "レーワハチネン"
