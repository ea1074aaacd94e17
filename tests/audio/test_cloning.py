"""Zero-shot cloning from a reference recording: its transcript and codec codes prefix the prompt
(Llasa's own recipe), with or without a LoRA; both parts are required."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

from lora_factory.kit import LoRAFactoryError
from lora_factory.plugins.audio.inference import speech_events
from lora_factory.plugins.audio.synthesis import SpeechParams, TTSModel, reference_prompt
from lora_factory.plugins.audio.text_norm import NormalizationOptions
from tests.audio.synthetic import voiced


def test_reference_prefixes_the_prompt_and_changes_the_voice(tiny_tts: Path, tmp_path: Path) -> None:
    tts = TTSModel.load(tiny_tts)
    wave = voiced(1.5, 16000, np.random.default_rng(0), f0=210)
    ref_text, ref_codes = reference_prompt(tts, wave, 16000, "こんにちは、3時です。", NormalizationOptions())
    assert ref_text == "こんにちは、さんじです。" and len(ref_codes) == pytest.approx(1.5 * tts.codec.frame_rate, abs=2)
    prompt = tts.layout.prompt_ids(tts.tokenizer, "はい。", None, (ref_text, ref_codes))
    assert prompt[-len(ref_codes):] == tts.layout.code_ids(ref_codes)  # the reference's codes end the prompt
    assert prompt[: -len(ref_codes)] == tts.layout.prompt_ids(tts.tokenizer, ref_text + "はい。")
    params = SpeechParams(temperature=0.0, max_seconds_per_sentence=0.4)
    plain = tts.generate_codes("はい。", params, seed=0)
    cloned = tts.generate_codes("はい。", params, seed=0, reference=(ref_text, ref_codes))
    assert cloned.size and not np.array_equal(plain, cloned)


def test_speech_request_with_a_reference(tiny_tts: Path, tmp_path: Path) -> None:
    ref = tmp_path / "ref.wav"
    sf.write(ref, voiced(1.0, 22050, np.random.default_rng(1)), 22050)
    session = SimpleNamespace(cache={}, outputs_dir=str(tmp_path / "out"))
    request = {"base_model": str(tiny_tts), "input": {"text": "はい。", "reference_audio": str(ref),
                                                      "reference_text": "こんにちは。"},
               "params": {"seed": 0, "max_seconds_per_sentence": 0.4}, "stream": False}
    events = list(speech_events(request, session))
    assert events[-1]["type"] == "done" and events[-1]["meta"]["reference_seconds"] == 1.0
    with pytest.raises(LoRAFactoryError) as err:  # a reference without its transcript cannot prefix
        list(speech_events({**request, "input": {"text": "はい。", "reference_audio": str(ref)}}, session))
    assert err.value.detail["field"] == "input.reference_text"
