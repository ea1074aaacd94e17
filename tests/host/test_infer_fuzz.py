"""Bad inference parameters are a 4xx naming the parameter, never a 500 (issue 16, item 13).

Every generation route and its ``/v1`` twin is fed the probe's bad values. The answers come from the
host-side resolve step, before any model loads, so the model folders here are empty stand-ins.
"""

from __future__ import annotations

import io
import json

import pytest
from fastapi.testclient import TestClient

from lora_factory.app import create_app


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    home = tmp_path_factory.mktemp("fuzz") / "ws"
    for folder in ("models/audio/whisper", "models/audio/tts", "models/image/sd"):
        (home / folder).mkdir(parents=True)
    (home / "artifacts" / "inputs").mkdir(parents=True)
    (home / "artifacts" / "inputs" / "clip.wav").write_bytes(b"RIFF....")
    import numpy as np
    import soundfile as sf

    (home / "datasets" / "audio" / "recs").mkdir(parents=True)  # a recording for the slice review
    sf.write(home / "datasets" / "audio" / "recs" / "take1.wav", np.zeros(16000, dtype=np.float32), 16000)
    with TestClient(create_app(home, start_scheduler=False), raise_server_exceptions=False) as c:
        yield c


def assert_names(r, field: str) -> None:
    assert 400 <= r.status_code < 500, r.text
    err = json.loads(r.text)["error"]  # strict JSON: NaN / Infinity never leak into the answer
    assert err["code"] and err["message"] and err["message_ja"]
    named = json.dumps(err.get("detail")) + err["message"]
    assert field in named, (field, r.text)


TRANSCRIBE = {"modality": "audio", "task": "transcribe", "base_model": "whisper", "input": {"audio": "artifacts/inputs/clip.wav"}}
SPEECH = {"modality": "audio", "task": "speech", "base_model": "tts", "input": {"text": "こんにちは"}}
IMAGE = {"modality": "image", "task": "image", "base_model": "sd", "input": {"prompt": "a cat"}}


@pytest.mark.parametrize("body,field", [
    (TRANSCRIBE | {"params": {"max_new_tokens": -5}}, "max_new_tokens"),
    (TRANSCRIBE | {"params": {"max_new_tokens": "x"}}, "max_new_tokens"),
    (TRANSCRIBE | {"params": {"max_new_tokens": 10**9}}, "max_new_tokens"),
    (TRANSCRIBE | {"params": {"language": "klingon"}}, "language"),
    (TRANSCRIBE | {"params": {"prompt": "あ" * 300_000}}, "prompt"),
    (TRANSCRIBE | {"params": {"timestamps": "maybe"}}, "timestamps"),
    (TRANSCRIBE | {"input": {"audio": 5}}, "input.audio"),
    (TRANSCRIBE | {"input": {"audio": "/etc/passwd"}}, "input.audio"),
    (SPEECH | {"input": {"text": "♪"}}, "input.text"),
    (SPEECH | {"input": {"text": "😀"}}, "input.text"),
    (SPEECH | {"input": {"text": "|"}}, "input.text"),
    (SPEECH | {"input": {"text": "()"}}, "input.text"),
    (SPEECH | {"input": {"text": "あ" * 300_000}}, "input.text"),
    (SPEECH | {"params": {"speed": "fast"}}, "speed"),
    (SPEECH | {"params": {"seed": 2**70}}, "seed"),
    (IMAGE | {"params": {"guidance_scale": "NaN"}}, "guidance_scale"),
    (IMAGE | {"params": {"guidance_scale": "Infinity"}}, "guidance_scale"),
    (IMAGE | {"params": {"steps": -1}}, "steps"),
    (IMAGE | {"params": {"num_images": 10**6}}, "num_images"),
    (IMAGE | {"params": {"lora_weight_grid": [1.0] * 100_000, "num_images": 16}}, "lora_weight_grid"),
    (IMAGE | {"params": {"seed": 2**70}}, "seed"),
    (IMAGE | {"params": {"epoch_grid": list(range(17))}}, "epoch_grid"),
    (IMAGE | {"params": {"epoch_grid": [1, 2, 3], "lora_weight_grid": [0.5, 1.0], "num_images": 3}}, "epoch_grid"),
    (IMAGE | {"params": {"epoch_grid": [-1]}}, "epoch_grid"),
    (SPEECH | {"params": {"pitch": 100}}, "pitch"),
    (SPEECH | {"params": {"pause_ms": -1}}, "pause_ms"),
    (SPEECH | {"params": {"volume_db": "NaN"}}, "volume_db"),
    (SPEECH | {"input": {"text": "こんにちは", "reference_audio": "/etc/passwd"}}, "input.reference_audio"),
    (SPEECH | {"adapters": [{"name": "v", "weight": 1.0}] * 9}, "adapters"),
    (SPEECH | {"adapters": [{"name": "v", "weight": 1e9}]}, "adapters"),
    (IMAGE | {"params": {"width": "wide"}}, "width"),
    (IMAGE | {"input": {"prompt": "x", "image": "/etc/passwd"}}, "input.image"),
])
def test_generate_route_names_the_bad_parameter(client, body, field):
    assert_names(client.post("/api/infer/generate", json=body), field)


@pytest.mark.parametrize("extra,field", [
    ({"guidance_scale": float("nan")}, "guidance_scale"), ({"n": 0}, "n"), ({"n": 17}, "n"),
    ({"size": "bigxbig"}, "size"), ({"lora_weight_grid": [1.0] * 20, "n": 2}, "lora_weight_grid"),
    ({"steps": "many"}, "steps"), ({"lora_scale": float("inf")}, "lora_scale")])
def test_v1_images_names_the_bad_parameter(client, extra, field):
    body = json.dumps({"model": "sd", "prompt": "a cat", **extra})  # NaN as a client library sends it
    r = client.post("/v1/images/generations", content=body, headers={"content-type": "application/json"})
    assert_names(r, field)


@pytest.mark.parametrize("extra,field", [
    ({"speed": 100}, "speed"), ({"input": ""}, "input"), ({"input": "♪"}, "input.text"),
    ({"seed": 2**70}, "seed"), ({"response_format": "midi"}, "response_format")])
def test_v1_speech_names_the_bad_parameter(client, extra, field):
    assert_names(client.post("/v1/audio/speech", json={"model": "tts", "input": "こんにちは", **extra}), field)


@pytest.mark.parametrize("form,field", [
    ({"language": "klingon"}, "language"), ({"prompt": "あ" * 300_000}, "prompt"),
    ({"response_format": "midi"}, "response_format"), ({"temperature": "hot"}, "temperature")])
def test_v1_transcriptions_names_the_bad_parameter(client, form, field):
    r = client.post("/v1/audio/transcriptions", data={"model": "whisper", **form},
                    files={"file": ("a.wav", io.BytesIO(b"RIFF...."), "audio/wav")})
    assert_names(r, field)


@pytest.mark.parametrize("extra,field", [
    ({"max_tokens": "x"}, "max_tokens"), ({"temperature": "hot"}, "temperature"), ({"messages": []}, "messages")])
def test_v1_chat_names_the_bad_parameter(client, extra, field):
    body = {"model": "nope", "messages": [{"role": "user", "content": "hi"}], **extra}
    assert_names(client.post("/v1/chat/completions", json=body), field)


@pytest.mark.parametrize("route,body,field", [
    ("/api/audio/read", {"text": "あ" * 5001}, "text"),
    ("/api/audio/read", {"text": 5}, "text"),
    ("/api/audio/slices/preview", {"dataset": "recs", "points": 10**9}, "points"),
    ("/api/audio/slices/preview", {"dataset": "recs", "min_seconds": -1}, "min_seconds"),
    ("/api/audio/slices/preview", {"dataset": "recs", "method": "magic"}, "method"),
    ("/api/audio/slices/preview", {"dataset": "../../etc"}, "dataset"),
    ("/api/audio/slices/preview", {"dataset": "recs", "recording": "../../../etc/passwd"}, "recording"),
    ("/api/audio/dictionary", {"entries": [{"surface": "x"}] * 5001}, "entries"),
])
def test_the_voice_tools_name_the_bad_parameter(client, route, body, field):
    """The routes the audio plugin added after the first hardening (reading preview, slice review,
    user dictionary) answer a 4xx naming the field too."""
    method = client.put if route.endswith("dictionary") else client.post
    r = method(route, json=body)
    assert 400 <= r.status_code < 500, r.text
    err = json.loads(r.text)["error"]
    assert err["code"] and err["message"] and err["message_ja"]
    named = json.dumps(err.get("detail")) + err["message"]
    assert field in named or (err["code"] == "UNSAFE_PATH" and body[field] in named), (field, r.text)
