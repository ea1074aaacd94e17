"""Browser test of the voice studio (audio modality): licences shown, the dataset table (players,
an inline transcript edit saved as a new version), the user dictionary edited and applied in "the
text as it will be read", a streamed synthesis played with its download, and a transcription, in
headless Chromium against a real server with tiny audio models."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from lora_factory.plugins.audio.conformance import write_voice_folder
from tests.audio.test_end_to_end import zipped
from tests.ui.conftest import wait_job
from tests.ui.test_ui import screenshot

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists() and not os.environ.get("CI"):
    pytest.skip(f"{CHROMIUM} is not installed", allow_module_level=True)

pytestmark = pytest.mark.ui


@pytest.fixture(scope="module")
def audio_models(server: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    source = write_voice_folder(tmp_path_factory.mktemp("voice") / "voice", ["こんにちは。", "ありがとう。"])
    res = server.client.post("/api/datasets/upload", data={"modality": "audio", "name": "ui-voice"},
                             files={"file": ("voice.zip", zipped(source))})
    assert res.status_code == 200, res.text
    for name, kind in (("tiny-tts", "tts"), ("tiny-whisper", "asr")):
        if any(m["name"] == name for m in server.client.get("/api/models", params={"modality": "audio"}).json()["models"]):
            continue
        res = server.client.post("/api/models/tiny", json={"modality": "audio", "name": name, "options": {"kind": kind}})
        assert res.status_code == 200, res.text
        assert wait_job(server.client, res.json()["job_id"], 300)["status"] == "completed", server.log_tail()


def test_voice_studio_dictionary_reading_streamed_speech_and_transcription(watched_page, server, audio_models, tmp_path):
    page, watch = watched_page
    page.goto(server.url + "/#voice")
    page.get_by_test_id("modality-audio").click()
    page.get_by_test_id("tab-voice").click()
    assert "CC-BY-NC" in page.get_by_test_id("voice-licences").inner_text()

    # the dataset table: a player per clip, an inline transcript edit saved as a new version
    page.get_by_test_id("voice-dataset-select").select_option("ui-voice")
    page.get_by_test_id("voice-browser-audio").first.wait_for()
    assert page.get_by_test_id("voice-browser-audio").count() == 2
    stats = page.get_by_test_id("voice-dataset-stats").inner_text()
    assert "16000 Hz ×2" in stats and "LUFS" in stats and "{" not in stats  # in words, not JSON
    # the exports SBV2 / GPT-SoVITS open, offered for the chosen dataset
    for target, listed in (("sbv2", "ui-voice/esd.list"), ("gpt_sovits", "ui-voice/ui-voice.list")):
        href = page.get_by_test_id(f"voice-export-{target}").get_attribute("href")
        assert listed in zipfile.ZipFile(io.BytesIO(server.client.get(href).content)).namelist()
    page.get_by_test_id("voice-browser-text").first.fill("こんばんは。")
    page.get_by_test_id("voice-browser-save").click()
    page.get_by_test_id("edit-version-input").fill("ui-voice-v2")
    page.get_by_test_id("edit-version-ok").click()
    rows_v2 = None
    for _ in range(200):
        versions = [d["name"] for d in server.client.get("/api/datasets", params={"modality": "audio"}).json()["datasets"]]
        if "ui-voice-v2" in versions:
            rows_v2 = server.client.get("/api/datasets/audio/ui-voice-v2", params={"rows": 1}).json()["preview"]
            break
        page.wait_for_timeout(300)
    assert rows_v2 and rows_v2[0]["text"] == "こんばんは。"
    # the studio then shows the new version (not the old one, where the edit would seem undone)
    page.wait_for_function("document.querySelector('[data-testid=voice-dataset-select]').value === 'ui-voice-v2'",
                           timeout=60_000)
    page.wait_for_function("document.querySelector('[data-testid=voice-browser-text]').value === 'こんばんは。'")
    meta = page.get_by_test_id("voice-browser-meta").first.inner_text()
    assert "話者: speaker" in meta and "16000 Hz" in meta  # the clip's facts in the user's language

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
    screenshot(page, "audio-voice-studio")
    page.get_by_test_id("voice-synth-text").fill("LFは2,200円です。")  # a changed text: the old reading goes
    assert page.get_by_test_id("voice-normalized").count() == 0

    # streamed synthesis with the tiny TTS: chunks arrive, the player and the download get the WAV
    page.get_by_test_id("voice-synth-base").select_option("tiny-tts")
    page.get_by_test_id("voice-speed").fill("1.2")
    page.evaluate("document.querySelector('[data-testid=voice-synth-text]').value = 'はい。いいえ。'")
    page.get_by_test_id("voice-max-seconds").fill("1")
    reference = tmp_path / "ref.wav"  # a voice to clone: the recording and what it says
    sf.write(reference, (0.2 * np.sin(np.arange(16000) / 16000 * 2 * np.pi * 180)).astype(np.float32), 16000)
    page.get_by_test_id("voice-ref-audio").set_input_files(str(reference))
    page.get_by_test_id("voice-ref-text").fill("こんにちは。")
    page.get_by_test_id("voice-speak").click()
    page.get_by_test_id("voice-stream-download").wait_for(state="visible", timeout=120_000)
    assert int(page.get_by_test_id("voice-stream").get_attribute("data-chunks")) == 2  # one per sentence
    assert page.get_by_test_id("voice-stream-audio").get_attribute("src").startswith("/api/outputs/audio/")
    screenshot(page, "audio-synthesis")

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


@pytest.mark.parametrize("suffix", ["wav", "flac", "mp3"])
def test_builder_accepts_the_recordings_its_label_invites(watched_page, server, suffix, tmp_path):
    """WAV / FLAC / MP3 picked in the builder are uploaded as a recordings folder and sliced (not a 415)."""
    from tests.audio.synthetic import recording_with_pauses

    take = tmp_path / f"take.{suffix}"
    sf.write(take, recording_with_pauses(16000)[0], 16000, format=suffix.upper())
    page, watch = watched_page
    page.goto(server.url + "/#voice")
    page.get_by_test_id("modality-audio").click()
    page.get_by_test_id("tab-voice").click()
    page.get_by_test_id("voice-builder-files").set_input_files(str(take))
    page.get_by_test_id("voice-builder-name").fill(f"rec-{suffix}")
    page.get_by_test_id("voice-builder-run").click()
    status = page.get_by_test_id("voice-builder-status")
    page.wait_for_function("document.querySelector('[data-testid=voice-builder-status]').dataset.status",
                           timeout=180_000)
    assert status.get_attribute("data-status") == "completed", status.inner_text()
    assert "4 クリップ" in status.inner_text() or "4 clips" in status.inner_text()  # the outcome in words
    names = [d["name"] for d in server.client.get("/api/datasets", params={"modality": "audio"}).json()["datasets"]]
    assert f"rec-{suffix}" in names and f"rec-{suffix}-clips" in names
    clips = server.client.get(f"/api/datasets/audio/rec-{suffix}-clips", params={"rows": 10}).json()
    assert clips["rows"] == 4  # the four planted utterances
    watch.assert_clean()
