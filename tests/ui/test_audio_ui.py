"""Browser test of the voice studio (audio modality): licences shown, the user dictionary edited and
applied in "the text as it will be read", a streamed synthesis played with its download, and a
transcription, in headless Chromium against a real server with tiny audio models."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from tests.ui.conftest import wait_job

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists() and not os.environ.get("CI"):
    pytest.skip(f"{CHROMIUM} is not installed", allow_module_level=True)

pytestmark = pytest.mark.ui


@pytest.fixture(scope="module")
def audio_models(server: Any) -> None:
    for name in ("tiny-tts", "tiny-whisper"):  # a name with "whisper" builds the ASR model
        if any(m["name"] == name for m in server.client.get("/api/models", params={"modality": "audio"}).json()["models"]):
            continue
        res = server.client.post("/api/models/tiny", json={"modality": "audio", "name": name})
        assert res.status_code == 200, res.text
        assert wait_job(server.client, res.json()["job_id"], 300)["status"] == "completed", server.log_tail()


def test_voice_studio_dictionary_reading_streamed_speech_and_transcription(watched_page, server, audio_models, tmp_path):
    page, watch = watched_page
    page.goto(server.url + "/#voice")
    page.get_by_test_id("modality-audio").click()
    page.get_by_test_id("tab-voice").click()
    assert "CC-BY-NC" in page.get_by_test_id("voice-licences").inner_text()

    # the user dictionary: add an entry, it is listed and used by the reading preview
    page.get_by_test_id("voice-dict-surface").fill("LF")
    page.get_by_test_id("voice-dict-reading").fill("えるえふ")
    page.get_by_test_id("voice-dict-add").click()
    page.get_by_test_id("voice-dict-row").filter(has_text="えるえふ").wait_for()
    page.get_by_test_id("voice-synth-text").fill("LFは1,100円です。2024年3月5日に出ます。")
    page.get_by_test_id("voice-read").click()
    normalized = page.get_by_test_id("voice-normalized")
    normalized.wait_for()
    assert normalized.inner_text() == "えるえふはせんひゃくえんです。にせんにじゅうよねんさんがついつかに出ます。"

    # streamed synthesis with the tiny TTS: chunks arrive, the player and the download get the WAV
    page.get_by_test_id("voice-synth-base").select_option("tiny-tts")
    page.get_by_test_id("voice-speed").fill("1.2")
    page.evaluate("document.querySelector('[data-testid=voice-synth-text]').value = 'はい。いいえ。'")
    page.get_by_test_id("voice-speak").click()
    page.get_by_test_id("voice-download").wait_for(state="visible", timeout=120_000)
    assert int(page.get_by_test_id("voice-synth-status").get_attribute("data-chunks")) >= 1
    assert page.get_by_test_id("voice-player").get_attribute("src").startswith("blob:")

    # transcription of an uploaded file with the tiny Whisper
    take = tmp_path / "take.wav"
    sf.write(take, (0.2 * np.sin(np.arange(16000 * 2) / 16000 * 2 * np.pi * 220)).astype(np.float32), 16000)
    page.get_by_test_id("voice-asr-model").select_option("tiny-whisper")
    page.get_by_test_id("voice-asr-file").set_input_files(str(take))
    page.get_by_test_id("voice-asr-run").click()
    page.wait_for_function("document.querySelector('[data-testid=voice-asr-text]').textContent.length > 0",
                           timeout=120_000)

    # the voice studio is not offered for text
    page.get_by_test_id("modality-text").click()
    assert page.get_by_test_id("tab-voice").is_hidden()
    watch.assert_clean()
