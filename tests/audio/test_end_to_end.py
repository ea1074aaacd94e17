"""The voice path as a user drives it, through a real ``lora-factory serve``: tiny models from the
CLI, an SBV2 dataset zip (one with a missing wav refused with its line), export unchanged, a
transcript edit as a new version, TTS LoRA ``quick`` with a sample, streamed speech (SSE and the
``openai`` client), transcription, a regression suite, and the adapter in plain peft."""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from lora_factory.plugins.audio.conformance import write_voice_folder
from tests.audio.conftest import AUDIO_MODELS
from tests.audio.synthetic import recording_with_pauses
from tests.conftest import wait_for

TEXTS = ["こんにちは。", "今日はいい天気ですね。", "1,100円です。", "東京に行きます。"]




def zipped(folder: Path, skip: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path in sorted(folder.rglob("*")):
            rel = path.relative_to(folder).as_posix()
            if path.is_file() and rel != skip:
                zf.write(path, rel)
    return buf.getvalue()


def sse_events(response) -> list[tuple[float, dict]]:
    out, started, event = [], time.perf_counter(), None
    for line in response.iter_lines():
        if line.startswith("event:"):
            event = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            out.append((time.perf_counter() - started, {"event": event, **json.loads(line[5:])}))
    return out


@pytest.mark.slow
def test_voice_end_to_end(tmp_path: Path, server_factory, tiny_workspaces) -> None:
    openai = pytest.importorskip("openai")
    home = tmp_path / "ws"
    tiny_workspaces.copy(home, *AUDIO_MODELS)  # lora-factory tiny-model, once per session
    source = write_voice_folder(tmp_path / "voice", TEXTS, seconds=0.7)
    original_list = (source / "esd.list").read_bytes()
    server = server_factory(home)
    with server.client() as c:
        kinds = {m["name"]: m["model_role"] for m in c.get("/api/models", params={"modality": "audio"}).json()["models"]}
        assert kinds == {"tiny-tts": "tts", "tiny-whisper": "asr"}

        # -- an SBV2 dataset: one missing wav is refused with its line, nothing kept; then the good one
        r = c.post("/api/datasets/upload", data={"modality": "audio", "name": "broken"},
                   files={"file": ("voice.zip", zipped(source, skip="wavs/clip001.wav"))})
        assert r.status_code == 422, r.text
        (missing,) = r.json()["error"]["detail"]["errors"]
        assert missing["file"] == "esd.list" and missing["line"] == 2
        assert missing["reason"].startswith("missing audio file 'wavs/clip001.wav' (looked at ")
        assert not (home / "datasets" / "audio" / "broken").exists()
        info = c.post("/api/datasets/upload", data={"modality": "audio", "name": "voice"},
                      files={"file": ("voice.zip", zipped(source))}).json()
        assert info["format"] == "esd_list" and info["rows"] == 4
        preview = c.get("/api/datasets/audio/voice", params={"rows": 2}).json()["preview"]
        clip = c.get(preview[0]["media"][0]["url"])
        assert clip.status_code == 200 and sf.info(io.BytesIO(clip.content)).samplerate == 16000
        archive = zipfile.ZipFile(io.BytesIO(c.get("/api/datasets/audio/voice/archive").content))
        assert archive.read("esd.list") == original_list  # exported unchanged

        # -- a transcript edit is a new version
        job = c.post("/api/datasets/refine", json={"modality": "audio", "dataset": "voice", "output_name": "voice-v2",
                                                   "operations": [{"op": "edit_items", "params": {"edits": [
                                                       {"id": "wavs/clip000.wav", "text": "こんばんは。"}]}}]}).json()
        assert wait_for(c, job["job_id"], ("completed", "failed"), timeout=120)["status"] == "completed"
        edited = c.get("/api/datasets/audio/voice-v2", params={"rows": 1}).json()["preview"][0]
        assert edited["text"] == "こんばんは。"

        # -- TTS LoRA quick, with a sample utterance shown by the job
        job_id = c.post("/train/start", json={"modality": "audio", "base_model": "tiny-tts", "dataset": "voice-v2",
                                              "output_name": "voice-lora", "preset": "quick",
                                              "params": {"max_steps": 12, "sample_every": 6,
                                                         "sample_max_seconds": 0.5}}).json()["job_id"]
        job = wait_for(c, job_id, ("completed", "failed"), timeout=600)
        assert job["status"] == "completed", c.get(f"/api/jobs/{job_id}/log").text
        samples = c.get(f"/api/jobs/{job_id}/samples").json()["samples"]
        assert samples and c.get(samples[0]["url"]).status_code == 200
        losses = [m["loss"] for m in c.get(f"/api/jobs/{job_id}/metrics").json()["metrics"] if m.get("loss")]
        assert losses[-1] < losses[0]

        # -- streamed speech through the host: chunks before the file, the file at 16 kHz, -16 LUFS
        with c.stream("POST", "/api/infer/generate", json={
                "modality": "audio", "task": "speech", "base_model": "tiny-tts", "adapter": "voice-lora",
                "input": {"text": "こんにちは。東京は晴れです。"}, "stream": True,
                "params": {"seed": 1, "max_seconds_per_sentence": 1.0}}) as response:
            events = sse_events(response)
        chunks = [e for _, e in events if e.get("chunk")]
        files = [e for _, e in events if e.get("url")]
        assert len(chunks) == 2 and len(files) == 1 and events[-1][1]["type"] == "done"
        assert events.index(next(x for x in events if x[1].get("url"))) > 1
        wave, rate = sf.read(io.BytesIO(c.get(files[0]["url"]).content), dtype="float32")
        assert rate == 16000 and abs(files[0]["meta"]["lufs"] + 16) <= 1

        # -- a regression suite on the voice: loudness, pace and Whisper's CER, kept per version
        suite = [{"name": "greeting", "input": {"text": "はい。"}, "params": {"seed": 0, "max_seconds_per_sentence": 0.6},
                  "checks": [{"type": "loudness", "min": -17, "max": -15},
                             {"type": "duration_per_char", "min": 0.0, "max": 5.0},
                             {"type": "cer", "asr_model": "tiny-whisper", "max": 10.0, "max_new_tokens": 4}]}]
        ev = c.post("/api/eval/start", json={"modality": "audio", "adapter": "voice-lora", "suite": suite}).json()
        ev_job = wait_for(c, ev["job_id"], ("completed", "failed"), timeout=300)
        assert ev_job["status"] == "completed", c.get(f"/api/jobs/{ev['job_id']}/log").text

    # -- the openai client: streamed WAV from base+adapter, PCM, and a transcription
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="local")
    arrivals, body, started = [], b"", time.perf_counter()
    with client.audio.speech.with_streaming_response.create(
            model="tiny-tts+voice-lora", voice="alloy", input="こんにちは。元気です。", response_format="wav",
            extra_body={"max_seconds_per_sentence": 1.0, "stream": True}) as response:
        for piece in response.iter_bytes():
            arrivals.append(time.perf_counter() - started)
            body += piece
    wave, rate = sf.read(io.BytesIO(body), dtype="float32")
    assert rate == 16000 and wave.size > 0.2 * rate and len(arrivals) >= 2
    pcm = client.audio.speech.create(model="tiny-tts", voice="alloy", input="はい。", response_format="pcm",
                                     extra_body={"max_seconds_per_sentence": 0.5}).content
    assert len(pcm) % 2 == 0 and len(pcm) > 2400
    take = tmp_path / "take.wav"
    sf.write(take, recording_with_pauses(16000)[0][: 16000 * 3], 16000)
    with open(take, "rb") as fh:
        result = client.audio.transcriptions.create(model="tiny-whisper", file=fh, response_format="verbose_json")
    assert isinstance(result.text, str) and np.isclose(result.duration, 3.0)
    with pytest.raises(openai.UnprocessableEntityError):  # a Whisper model cannot speak
        client.audio.speech.create(model="tiny-whisper", voice="alloy", input="はい。")

    # -- the adapter opens in plain peft on the tiny model
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(home / "models/audio/tiny-tts")),
                                      str(home / "lora_adapters/audio/voice-lora"))
    assert any("lora_A" in name for name, _ in model.named_parameters())
