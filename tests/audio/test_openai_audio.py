"""The audio modality through a real ``lora-factory serve``: tiny models from the CLI, the ``openai``
client for speech (streamed: the first audio arrives before the last) and transcription, and the
user dictionary / "as it will be read" routes."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.audio.synthetic import recording_with_pauses


def tiny(home: Path, out: str, *extra: str) -> None:
    result = subprocess.run([sys.executable, "-m", "lora_factory.cli", "tiny-model", "audio", "--out", out,
                             "--home", str(home), *extra], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_openai_client_speech_and_transcription(tmp_path: Path, server_factory) -> None:
    openai = pytest.importorskip("openai")
    home = tmp_path / "ws"
    tiny(home, "models/audio/tiny-tts")
    tiny(home, "models/audio/tiny-whisper", "--kind", "asr")
    server = server_factory(home)
    with server.client() as c:
        models = {m["name"]: m for m in c.get("/api/models", params={"modality": "audio"}).json()["models"]}
        assert models["tiny-tts"]["kind"] == "tts" and models["tiny-whisper"]["kind"] == "asr"
        r = c.put("/api/audio/dictionary", json={"entries": [{"surface": "LF", "reading": "えるえふ"}]})
        assert r.status_code == 200
        bad = c.put("/api/audio/dictionary", json={"entries": [{"surface": "x", "reading": "漢字"}]})
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "DICTIONARY_INVALID"
        read = c.post("/api/audio/read", json={"text": "LFは1,100円です。"}).json()
        assert read["normalized"] == "えるえふはせんひゃくえんです。" and read["reading"]["kana"]

    client = openai.OpenAI(base_url=server.url + "/v1", api_key="local")
    text = "こんにちは。LFの声です。"
    arrivals = []
    started = time.perf_counter()
    with client.audio.speech.with_streaming_response.create(
            model="tiny-tts", voice="alloy", input=text, response_format="wav",
            extra_body={"max_seconds_per_sentence": 1.0}) as response:
        body = b""
        for piece in response.iter_bytes():
            arrivals.append((time.perf_counter() - started, len(piece)))
            body += piece
    wave, rate = sf.read(io.BytesIO(body), dtype="float32")
    assert rate == 16000 and wave.size > 0.5 * rate and len(arrivals) >= 2
    assert arrivals[0][0] < arrivals[-1][0]

    pcm = client.audio.speech.create(model="tiny-tts", voice="alloy", input="はい。", response_format="pcm").content
    assert len(pcm) % 2 == 0 and len(pcm) > 24000 * 2 * 0.1  # 24 kHz PCM16

    take = tmp_path / "take.wav"
    sf.write(take, recording_with_pauses(16000)[0][: 16000 * 3], 16000)
    with open(take, "rb") as fh:
        result = client.audio.transcriptions.create(model="tiny-whisper", file=fh, response_format="verbose_json")
    assert isinstance(result.text, str) and np.isclose(result.duration, 3.0)
    with pytest.raises(openai.UnprocessableEntityError):  # a Whisper model cannot speak
        client.audio.speech.create(model="tiny-whisper", voice="alloy", input="はい。")
