"""``/v1/audio/speech`` against a real ``lora-factory serve`` on 127.0.0.1 with the tiny TTS: PCM
leaves the server sentence by sentence, a WAV answer carries its true sizes."""

from __future__ import annotations

import io
import shutil
import time
import wave
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

SENTENCES = "こんにちは。今日はいい天気ですね。東京に行きます。ありがとうございました。"
QUICK = {"seed": 0, "temperature": 0.0, "max_seconds_per_sentence": 1.0}


def test_pcm_streams_each_sentence_when_it_is_ready_and_a_wav_has_true_sizes(tmp_path: Path, tiny_tts: Path,
                                                                             server_factory) -> None:
    home = tmp_path / "ws"
    shutil.copytree(tiny_tts, home / "models" / "audio" / "tiny-tts")
    speech_server = server_factory(home)
    # a WAV answer (the default) is whole, with its true sizes; this also loads the model once
    with httpx.Client(base_url=speech_server.url, timeout=120) as c:
        listed = {m["id"]: m["modality"] for m in c.get("/v1/models").json()["data"]}
        assert listed.get("tiny-tts") == "audio"  # /v1/models lists the voice models too
        body = c.post("/v1/audio/speech", json={"model": "tiny-tts", "input": "はい。そうです。", **QUICK}).content
        mp3 = c.post("/v1/audio/speech", json={"model": "tiny-tts", "input": "はい。", "response_format": "mp3",
                                               **QUICK})
        assert mp3.headers["content-type"] == "audio/mpeg" and sf.info(io.BytesIO(mp3.content)).format == "MP3"
        streamed = c.post("/v1/audio/speech", json={"model": "tiny-tts", "input": "はい。", "stream": True,
                                                    **QUICK}).content
    with wave.open(io.BytesIO(body)) as w:
        assert w.getnframes() * 2 == len(body) - 44 and w.getframerate() == 16000
    assert int.from_bytes(body[4:8], "little") == len(body) - 8
    assert int.from_bytes(streamed[40:44], "little") == 0xFFFFFFFF - 36  # a stream: the documented 'unknown'

    arrivals: list[tuple[float, int]] = []
    with httpx.Client(base_url=speech_server.url, timeout=120) as c:
        started = time.perf_counter()
        with c.stream("POST", "/v1/audio/speech", json={"model": "tiny-tts", "input": SENTENCES,
                                                         "response_format": "pcm", **QUICK}) as response:
            assert response.status_code == 200 and response.headers["content-type"] == "audio/pcm"
            headers_at = time.perf_counter() - started
            for piece in response.iter_raw():
                arrivals.append((time.perf_counter() - started, len(piece)))
    first, last = arrivals[0][0], arrivals[-1][0]
    total = sum(n for _, n in arrivals)
    assert total % 2 == 0 and total > 24000 * 2 * 0.5
    # four sentences made one after the other: the first one's bytes come long before the last one's
    # (a measurable span whatever the machine's speed: 4 sentences took 0.19 s on a quiet 2-core machine; a
    # burst would put the first bytes as late as the last, which the ratio below refuses)
    assert last - headers_at > 0.05 and len(arrivals) >= 3, arrivals
    assert first - headers_at < 0.35 * (last - headers_at), (headers_at, arrivals)
    # the worker renders a PCM stream at OpenAI's 24 kHz (the codec's is 16 kHz): the server passes the bytes on
    # and imports no numpy to resample them (its first stream paid that import before its first sentence)
    newest = max((home / "artifacts" / "outputs" / "audio").glob("*.wav"), key=lambda p: p.stat().st_mtime_ns)
    assert sf.info(str(newest)).samplerate == 24000



def test_subtitle_cues_are_never_empty_or_zero_length() -> None:
    from lora_factory.routes.openai_audio import subtitles

    segments = [{"start": 0.0, "end": 1.2, "text": "こんにちは"}, {"start": 1.2, "end": 1.2, "text": "はい"},
                {"start": 1.4, "end": 1.4, "text": " "}, {"start": 2.0, "end": 2.0, "text": "いいえ"}]
    srt = subtitles(segments, "srt")
    assert srt == ("1\n00:00:00,000 --> 00:00:01,200\nこんにちは\n\n"
                   "2\n00:00:01,200 --> 00:00:01,500\nはい\n\n"
                   "3\n00:00:02,000 --> 00:00:02,300\nいいえ\n\n")
    assert subtitles(segments, "vtt").startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.200\nこんにちは")


@pytest.mark.parametrize(("fmt", "container", "rate"), [("mp3", "MP3", 16000), ("opus", "OGG", 16000),
                                                          ("opus", "OGG", 48000)])
def test_mp3_and_opus_through_libsndfile(fmt: str, container: str, rate: int) -> None:
    from lora_factory.plugins.audio.audio_io import encode_audio

    sr = 22050 if fmt == "opus" and rate == 48000 else 16000  # 22.05 kHz is no Opus rate: sent at 48 kHz
    t = np.arange(sr) / sr
    data = encode_audio((0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), sr, fmt)
    info = sf.info(io.BytesIO(data))
    assert info.format == container and info.samplerate == rate and abs(info.duration - 1.0) < 0.1
