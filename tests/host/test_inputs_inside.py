"""Inputs stay inside the workspace (issue 16, items 4-6): a generation reads only uploads and files
of the workspace, with one answer for "outside" and "missing"; model names are checked before the
disk; no answer names an absolute server path."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from lora_factory.app import create_app
from lora_factory.core.inference.inputs import file_fields
from lora_factory.core.schemas import GenerateRequest
from lora_factory.routes import hide_server_paths


@pytest.fixture
def app_client(dummy_home):
    with TestClient(create_app(dummy_home, start_scheduler=False), raise_server_exceptions=False) as c:
        yield c


def generate(client, value):
    return client.post("/api/infer/generate", json={"modality": "dummy", "base_model": "base",
                                                     "input": {"file": value}})


def test_input_files_outside_the_workspace_and_missing_ones_get_one_answer(app_client, dummy_home, tmp_path):
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG secret")
    answers = [generate(app_client, value) for value in
               (str(secret), str(tmp_path / "nonexistent.png"), "../secret.png", "../../etc/passwd", "/etc/shadow",
                "datasets/dummy/missing.txt", 5, ["x"])]
    for r in answers:
        assert r.status_code == 422, r.text
        err = r.json()["error"]
        assert err["code"] == "INFER_INVALID_INPUT" and err["detail"] == {"field": "input.file"}
        assert "secret" not in r.text and "etc" not in r.text
    assert len({r.text for r in answers}) == 1  # nothing tells which path exists


def test_workspace_files_and_uploads_are_accepted(app_client, dummy_home):
    svc = app_client.app.state.services
    inside = svc.generation.request(GenerateRequest(modality="dummy", base_model="base",
                                                    input={"file": "datasets/dummy/data.txt", "prompt": "/imagine"}))
    assert inside["input"]["file"] == str((dummy_home / "datasets" / "dummy" / "data.txt").resolve())
    assert inside["input"]["prompt"] == "/imagine"  # not a file field: left alone
    upload = app_client.post("/api/infer/uploads", files={"file": ("a.wav", b"RIFF")}).json()
    resolved = svc.generation.request(GenerateRequest(modality="dummy", base_model="base",
                                                      input={"file": upload["value"]}))
    assert resolved["input"]["file"].endswith(upload["upload"])


def test_the_modalities_declared_file_fields_are_checked():
    from lora_factory.plugins import audio, image

    audio_desc = audio.describe_modalities()[0]
    image_desc = image.describe_modalities()[0]
    assert "audio" in file_fields(audio_desc, "transcribe")
    assert {"image", "mask", "control_image", "reference_image"} <= file_fields(image_desc, "image")


@pytest.mark.parametrize("name", ["../../../../../../etc", "../../../../../../nonexistent", "/etc", "a/b"])
def test_image_route_gives_one_answer_for_unsafe_names(app_client, name):
    r = app_client.post("/v1/images/generations", json={"model": name, "prompt": "x"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "UNSAFE_PATH"


def test_chat_with_a_modality_without_chat_is_refused(app_client):
    r = app_client.post("/api/infer/chat", json={"modality": "image", "base_model": "x", "stream": False,
                                                 "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 400 and r.json()["error"]["code"] == "CHAT_UNSUPPORTED"


def test_error_answers_never_name_absolute_server_paths(dummy_home, tmp_path):
    import tempfile

    body = {"error": {"message": f"Error opening '{dummy_home}/artifacts/uploads/x.wav'",
                      "detail": {"path": f"{tempfile.gettempdir()}/lora-xyz/a.flac", "n": 3}}}
    clean = hide_server_paths(body, dummy_home)
    assert clean["error"]["message"] == "Error opening 'artifacts/uploads/x.wav'"
    assert clean["error"]["detail"] == {"path": "<tmp>/lora-xyz/a.flac", "n": 3}
