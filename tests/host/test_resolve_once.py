"""One resolve per request: every parameter error of an inference request is a 4xx from the server before
any model loads (no inference worker process is even started), and the request the worker gets carries one
adapters list (``adapter`` derived from it)."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from lora_factory.app import create_app
from lora_factory.core.inference.generation import resolve_infer, with_adapters


@pytest.fixture
def home(tmp_path):
    home = tmp_path / "ws"
    (home / "models" / "image" / "sd").mkdir(parents=True)
    voice = home / "models" / "audio" / "voice"
    (voice / "codec").mkdir(parents=True)
    (voice / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (voice / "codec" / "config.json").write_text("{}")
    (home / "models" / "audio" / "whisper").mkdir(parents=True)
    (home / "models" / "audio" / "whisper" / "config.json").write_text(json.dumps({"model_type": "whisper"}))
    return home


def test_every_parameter_error_is_a_4xx_before_any_model_loads(home):
    app = create_app(home, start_scheduler=False)
    svc = app.state.services
    long_text = "あ" * 5001
    image = {"modality": "image", "base_model": "sd", "task": "image", "input": {"prompt": "a cat"}}
    speech = {"modality": "audio", "base_model": "voice", "task": "speech", "input": {"text": "こんにちは。"}}
    cases = [
        (dict(image, params={"stpes": 3}), "INVALID_INFER_PARAMS", "stpes"),
        (dict(image, params={"mode": "inpaint"}), "INVALID_REQUEST", "input.image"),
        (dict(image, params={"controlnet": {"model": "canny"}}), "INVALID_REQUEST", "input.control_image"),
        (dict(speech, input={"text": "  "}), "INFER_INVALID_INPUT", "input.text"),
        (dict(speech, input={"text": long_text}), "INFER_INVALID_INPUT", "input.text"),
        (dict(speech, params={"speed": 9}), "INVALID_INFER_PARAMS", "speed"),
        (dict(speech, base_model="whisper"), "MODEL_KIND_MISMATCH", "base_model"),
        (dict(speech, task="transcribe", input={}), "INFER_INVALID_INPUT", "input.audio"),
        (dict(speech, task="transcribe", input={"audio": "models/audio/voice/config.json"},
              params={"max_new_tokens": 0}), "INVALID_INFER_PARAMS", "max_new_tokens"),
    ]
    with TestClient(app) as c:
        for body, code, field in cases:
            for stream in (False, True):
                r = c.post("/api/infer/generate", json=dict(body, stream=stream))
                assert r.status_code in (400, 404, 422), (body, r.text)
                assert r.json()["error"]["code"] == code and field in json.dumps(r.json()), (body, r.json())
    assert not svc.inference.running and svc.inference._proc is None  # no worker, so no model was loaded


def test_the_request_has_one_adapters_list(home):
    request = with_adapters({"task": "image"}, [{"path": "/a", "name": "a", "weight": 0.5}, {"path": "/b"}])
    assert request["adapter"] == "/a" and [a["path"] for a in request["adapters"]] == ["/a", "/b"]
    assert with_adapters({"adapter": "/stale"}, [])["adapter"] is None

    class Host:  # a plugin that settles the list (audio applies one voice): `adapter` follows what it returns
        def call(self, hook, modality, request, workspace):
            return dict(request, adapters=request["adapters"][1:])

    resolved = resolve_infer(Host(), "x", {"adapters": [{"path": "/a"}, {"path": "/b"}]}, None)
    assert resolved["adapter"] == "/b" and resolved["adapters"] == [{"path": "/b"}]

    app = create_app(home, start_scheduler=False)
    (home / "lora_adapters" / "audio" / "v1").mkdir(parents=True)
    (home / "lora_adapters" / "audio" / "v2").mkdir(parents=True)
    from lora_factory.core.schemas import GenerateRequest

    req = GenerateRequest(modality="audio", base_model="voice", adapter="v1", adapters=[{"name": "v2", "weight": 1}],
                          task="speech", input={"text": "はい。"}, params={"speed": 1.5})
    with TestClient(app):
        out = app.state.services.generation.request(req)
    # voices mix (issue 18): the audio plugin keeps every adapter, ``adapter`` names the first
    assert [a["name"] for a in out["adapters"]] == ["v1", "v2"] and out["adapter"].endswith("v1")
    assert out["params"]["speed"] == 1.5 and out["params"]["pause_ms"] == 250  # complete: the worker trusts it
