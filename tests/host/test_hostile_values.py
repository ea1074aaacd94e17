"""Hostile values the second probe of issue 16 found answered 500 (names, text, numbers on the routes
added since the first hardening). Each is a 4xx in the ``{"error": {...}}`` shape, never a 500.

One app per module on the dummy workspace (no model loads: every answer comes before one would).
"""

from __future__ import annotations

import json
import os

import pytest
from fastapi.testclient import TestClient

from lora_factory.app import create_app
from tests.conftest import make_dummy_home


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return make_dummy_home(tmp_path_factory.mktemp("hostile") / "ws")


@pytest.fixture(scope="module")
def client(home):
    with TestClient(create_app(home, start_scheduler=False), raise_server_exceptions=False) as c:
        yield c


def assert_4xx(r) -> dict:
    assert 400 <= r.status_code < 500, r.text
    err = json.loads(r.text)["error"]
    assert err["code"] and err["message"] and err["message_ja"]
    return err


TRAIN = {"modality": "dummy", "base_model": "base", "dataset": "data.txt", "output_name": "o"}
LONG = "é" * 20_000  # 40,000 bytes: ENAMETOOLONG from the OS when it reached the disk


def raw_json(body: dict, field: str, raw: str) -> dict:
    """``body`` with ``field`` set to a raw JSON token (a lone surrogate escape a client can send)."""
    text = json.dumps(dict(body, **{field: 1})).replace(f'"{field}": 1', f'"{field}": {raw}')
    return {"content": text, "headers": {"content-type": "application/json"}}


@pytest.mark.parametrize("route", ["/train/start", "/api/train/estimate"])
@pytest.mark.parametrize("field", ["base_model", "dataset", "output_name"])
def test_an_over_long_or_non_text_name_is_unsafe_path(client, route, field):
    err = assert_4xx(client.post(route, json=dict(TRAIN, **{field: LONG})))
    assert err["code"] == "UNSAFE_PATH" and len(err["message"]) < 400  # the value is not echoed whole
    err = assert_4xx(client.post(route, **raw_json(TRAIN, field, '"\\ud800"')))
    assert err["code"] == "INVALID_TEXT" and err["detail"] == {"field": field}


def test_names_and_messages_with_a_lone_surrogate_are_still_text():
    """Behind the HTTP edge (the CLI, a plugin's own value): a name check refuses a lone surrogate as
    UNSAFE_PATH, and an error message repeating one is still rendered (the handler failed: a 500)."""
    from lora_factory.core.errors import LoRAFactoryError
    from lora_factory.core.storage.workspace import check_relative, existing_name, safe_name
    from lora_factory.routes import hide_server_paths

    for check in (safe_name, existing_name, check_relative):
        with pytest.raises(LoRAFactoryError) as err:
            check("a\ud800")
        assert err.value.code == "UNSAFE_PATH" and "\\ud800" in err.value.message_en
    body = hide_server_paths({"error": {"message": "bad 'a\ud800'"}}, "/nowhere")
    assert json.dumps(body, ensure_ascii=False).encode("utf-8")


@pytest.mark.skipif(os.name == "nt", reason="creating symlinks needs a privilege on Windows")
def test_a_reference_into_a_symlink_loop_is_refused(client, home):
    loop = home / "models" / "dummy" / "loop"
    loop.symlink_to(loop)
    try:
        assert_4xx(client.post("/api/train/estimate", json=dict(TRAIN, base_model="loop")))
        assert_4xx(client.post("/api/train/estimate", json=dict(TRAIN, base_model="models/dummy/loop/x")))
    finally:
        loop.unlink()


def test_the_adapters_mixed_in_one_generation_are_bounded(client):
    """Issue 16, item 2 for the voice mix / several-LoRA field: 100,000 adapters were each looked up
    on disk and sent to the worker."""
    body = {"modality": "dummy", "base_model": "base", "input": {"prompt": "x"},
            "adapters": [{"name": "a", "weight": 1.0}] * 100_000}
    err = assert_4xx(client.post("/api/infer/generate", json=body))
    assert err["code"] == "VALIDATION_ERROR" and "adapters" in err["message"]


EVOL = {"generator": {"type": "openai", "base_url": "http://127.0.0.1:9/v1"}}


@pytest.mark.parametrize("module,model,field,others", [
    ("lora_factory.plugins.text.presets", "TrainParams", "seed", {}),
    ("lora_factory.plugins.image.presets", "ImageTrainParams", "seed", {}),
    ("lora_factory.plugins.image.presets", "ImageTrainParams", "sample_seed", {}),
    ("lora_factory.plugins.text.refine", "DedupNearParams", "seed", {}),
    ("lora_factory.plugins.text.evol", "EvolParams", "seed", EVOL),
])
def test_training_seeds_numpy_and_torch_refuse_are_refused_up_front(module, model, field, others):
    """A seed of 2**70 passed validation, then the job crashed in ``np.random.seed`` / ``manual_seed``."""
    import importlib

    from pydantic import ValidationError

    cls = getattr(importlib.import_module(module), model)
    with pytest.raises(ValidationError, match=field):
        cls(**others, **{field: 2**70})
    assert getattr(cls(**others, **{field: 2**32 - 1}), field) == 2**32 - 1


@pytest.mark.parametrize("route,body,field", [
    ("/api/train/command", dict(TRAIN, preset="\ud800"), "preset"),
    ("/api/infer/chat", {"modality": "dummy", "base_model": "base", "stream": False,
                         "messages": [{"role": "user", "content": "a\udfffb"}]}, "messages.0.content"),
    ("/api/infer/generate", {"modality": "dummy", "base_model": "base", "input": {"prompt": "\ud83d"}}, "input.prompt"),
    ("/v1/chat/completions", {"model": "base", "messages": [{"role": "user", "content": "\udc00"}]}, "messages.0.content"),
])
def test_a_lone_surrogate_anywhere_in_a_json_body_is_invalid_text(client, route, body, field):
    """``/api/train/command`` repeated the value in its 200 answer and failed to encode it (a 500); a
    chat or a generation carried it to the worker. One check at the edge answers every route."""
    text = json.dumps(body)  # ASCII-escaped: the lone surrogate travels as "\ud800", as a client sends it
    r = client.post(route, content=text, headers={"content-type": "application/json"})
    err = assert_4xx(r)
    assert r.status_code == 422 and err["code"] == "INVALID_TEXT" and err["detail"] == {"field": field}


def test_a_surrogate_pair_is_an_ordinary_character(client):
    r = client.post("/api/infer/chat", content=json.dumps({"modality": "dummy", "base_model": "base", "stream": False,
                                                           "messages": [{"role": "user", "content": "😀"}]}),
                    headers={"content-type": "application/json"})
    assert r.status_code == 200 and r.json()["text"] == "😀", r.text


@pytest.mark.parametrize("modality", ["%00", "a" * 5000, "..%2f..", "x\u00e9"])
@pytest.mark.parametrize("route", ["/api/datasets/{m}/x/lineage", "/api/datasets/{m}/x", "/api/models/{m}/x",
                                   "/api/adapters/{m}/x", "/api/exports/{m}/x", "/api/datasets/{m}/x/files/y"])
def test_a_hostile_modality_in_the_url_is_a_4xx(client, route, modality):
    """A NUL byte or a 5,000-character modality went to the OS as a folder name (ValueError /
    ENAMETOOLONG: a 500 on the lineage route)."""
    assert_4xx(client.get(route.format(m=modality)))


@pytest.mark.parametrize("field,value", [("hf_token", "hf_a\x00b"), ("hf_token", "hf abc"), ("hf_token", "トークン"),
                                         ("hf_endpoint", "https://a\x00b"), ("hf_endpoint", "https://ミラー")])
def test_settings_that_would_kill_every_worker_are_refused(client, home, field, value, monkeypatch):
    """A NUL byte in hf_token was saved, then every inference and job worker died at start setting
    HF_TOKEN ("ValueError: embedded null byte"): the probe's next generations were all 500s."""
    from lora_factory.core.storage.settings import export_to_environment

    r = client.put("/api/settings", json={field: value})
    err = assert_4xx(r)
    assert err["code"] == "SETTINGS_INVALID" and field in err["message"]
    assert client.put("/api/settings", json={"hf_token": "hf_good_token_1234"}).status_code == 200
    for env in ("HF_TOKEN", "HF_ENDPOINT"):
        monkeypatch.setenv(env, "")  # restored after the test: the variables are this process's
    export_to_environment(home)  # what each worker does first: it must not raise
    assert client.put("/api/settings", json={"hf_token": ""}).status_code == 200
