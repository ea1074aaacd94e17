"""Accents the user sets: stored with the dictionary entry (accent type), shown in the reading preview
phrase by phrase, and carried into what the TTS model reads (pitch marks in the text), in synthesis and
in the training text alike; off, the plain reading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pyopenjtalk")

TEXT = "東京の橋を渡る。"


def test_entries_keep_a_valid_accent_type() -> None:
    from lora_factory.plugins.audio.text_norm import UserDictionary
    from lora_factory.plugins.audio.text_norm.user_dict import validate_entry

    entry = validate_entry({"surface": "東京", "reading": "とうきょう", "accent": 2})
    assert entry.accent == 2 and entry.to_dict()["accent"] == 2
    assert validate_entry({"surface": "東京", "reading": "とうきょう"}).accent is None
    for bad in (5, -1, "x", True):  # とうきょう has 4 morae (ト ウ キョ ウ)
        with pytest.raises(ValueError, match="accent"):
            validate_entry({"surface": "東京", "reading": "とうきょう", "accent": bad})
    with pytest.raises(ValueError, match="accent"):
        validate_entry({"surface": "AI", "reading": "えーあい AI", "accent": 1})
    restored = UserDictionary.from_list(UserDictionary.from_list([entry.to_dict()]).to_list())
    assert restored.entries[0].accent == 2


def test_the_accent_reaches_the_text_the_model_reads() -> None:
    from lora_factory.plugins.audio.text_norm import NormalizationOptions, UserDictionary, normalize_text

    def read(accent: int | None, marks: bool = True) -> str:
        entry = {"surface": "東京", "reading": "とうきょう", **({"accent": accent} if accent is not None else {})}
        return normalize_text(TEXT, NormalizationOptions(user_dictionary=UserDictionary.from_list([entry]),
                                                         accent_marks=marks))

    assert read(None) == "とうきょうの橋を渡る。"
    assert read(0) == "ト[ウキョウの橋を渡る。"
    assert read(1) == "ト]ウキョウの橋を渡る。"
    assert read(2) == "ト[ウ]キョウの橋を渡る。"
    assert read(2, marks=False) == "とうきょうの橋を渡る。"
    # brackets the user typed are still no speech: only the dictionary's accents become marks
    assert normalize_text("[東京]") == "東京"


def test_reading_preview_gives_phrases_and_takes_the_users_accent(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from lora_factory.app import create_app

    with TestClient(create_app(tmp_path / "ws", start_scheduler=False), base_url="http://127.0.0.1") as c:
        before = c.post("/api/audio/read", json={"text": TEXT}).json()["reading"]
        first = before["phrases"][0]
        assert first["surface"].startswith("東京") and first["morae"][:4] == ["ト", "ー", "キョ", "ー"]
        assert first["accent"] == 0 and not first["user"]
        saved = c.put("/api/audio/dictionary", json={"entries": [{"surface": "東京", "reading": "とうきょう",
                                                                  "accent": 2}]})
        assert saved.status_code == 200 and saved.json()["entries"][0]["accent"] == 2
        after = c.post("/api/audio/read", json={"text": TEXT}).json()
        bad = c.put("/api/audio/dictionary", json={"entries": [{"surface": "東京", "reading": "とうきょう",
                                                                "accent": 9}]})
    assert after["normalized"] == "ト[ウ]キョウの橋を渡る。"
    phrase = after["reading"]["phrases"][0]
    assert phrase == {"surface": "東京", "morae": ["ト", "ウ", "キョ", "ウ"], "accent": 2, "user": True}
    assert after["reading"]["accent"].startswith("ト[ウ]キョウ")
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "DICTIONARY_INVALID"


def test_synthesis_and_training_text_carry_the_accent(tiny_tts: Path, tmp_path: Path) -> None:
    """The model's prompt changes with the accent set (and not with marks off); the dataset builder's
    text normalisation writes the same marks, so a voice trained on them learns what they mean."""
    from lora_factory.plugins.audio.dataset_formats import Clip
    from lora_factory.plugins.audio.refine import RefineState, WorkClip, op_normalize_text
    from lora_factory.plugins.audio.refine_operations import NormalizeTextOp
    from lora_factory.plugins.audio.synthesis import SpeechParams, TTSModel, synthesize
    from lora_factory.plugins.audio.text_norm import UserDictionary

    tts = TTSModel.load(tiny_tts)
    prompts: list[list[int]] = []

    def capture(text, params, seed=None, reference=None):  # noqa: ANN001, ANN202
        prompts.append(tts.layout.prompt_ids(tts.tokenizer, text, params.speaker, reference))
        return np.zeros(0, dtype=np.int64)

    tts.generate_codes = capture  # the model's input is what this test is about; no generation needed
    params = SpeechParams(temperature=0.0)
    for accent in (0, 2):
        dictionary = UserDictionary.from_list([{"surface": "東京", "reading": "とうきょう", "accent": accent}])
        [chunk] = synthesize(tts, TEXT, params, dictionary)
    list(synthesize(tts, TEXT, params.model_copy(update={"accent_marks": False}), dictionary))
    flat, second, off = prompts
    assert flat != second and second != off and flat != off
    decoded = tts.tokenizer.decode(second)
    assert "ト[ウ]キョウ" in decoded and chunk.text == "ト[ウ]キョウの橋を渡る。"

    entries = [{"surface": "東京", "reading": "とうきょう", "accent": 2}]
    clip = WorkClip(Clip(id="wavs/a.wav", text=TEXT, speaker="s", language="JP"), tmp_path / "a.wav")
    state = RefineState(tmp_path, tmp_path / "out", [clip])
    op_normalize_text(state, NormalizeTextOp(user_dictionary=entries), ctx=None)
    assert state.clips[0].clip.text == chunk.text
