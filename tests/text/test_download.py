"""Download from a local fake Hub (HTTP on 127.0.0.1), local import, tiny build."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from lora_factory.core.errors import LoRAFactoryError
from lora_factory.plugins.text.download import download_text_model, select_repo_files
from lora_factory.plugins.text.model_info import inspect_text_model
from tests.fake_hub import REPO
from tests.fake_hub import fake_hub as _fake_hub


@pytest.fixture
def hub_files(tiny_model: Path) -> dict[str, bytes]:
    files = {p.name: p.read_bytes() for p in tiny_model.iterdir() if p.is_file()}
    files["pytorch_model.bin"] = b"PICKLE-DUPLICATE" * 64  # must never be fetched
    return files


def test_select_repo_files_prefers_safetensors():
    keep, skipped = select_repo_files(["config.json", "model.safetensors", "pytorch_model.bin", "flax_model.msgpack"])
    assert keep == ["config.json", "model.safetensors"]
    assert skipped == ["flax_model.msgpack", "pytorch_model.bin"]
    keep, _ = select_repo_files(["config.json", "pytorch_model.bin"])
    assert "pytorch_model.bin" in keep  # no safetensors: nothing is a duplicate (refused later)


def test_hub_download_from_fake_hub(tmp_path, monkeypatch, hub_files, ctx_factory):
    server, log = _fake_hub(hub_files)
    try:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
        monkeypatch.delenv("HF_TOKEN", raising=False)
        ctx = ctx_factory(tmp_path / "ws", "dl1", kind="download")
        result = download_text_model({"source": "hub", "repo_id": REPO}, ctx)
    finally:
        server.shutdown()
    out = Path(ctx.output_dir)
    assert (out / "model.safetensors").read_bytes() == hub_files["model.safetensors"]
    assert (out / "config.json").is_file() and (out / "tokenizer.json").is_file()
    assert not (out / "pytorch_model.bin").exists()
    assert "pytorch_model.bin" in result["skipped"]
    assert not any(name == "pytorch_model.bin" for _, name, _ in log), "the .bin duplicate was requested"
    byte_records = [r for r in ctx.records if r.get("unit") == "bytes"]
    assert byte_records and byte_records[-1]["step"] == byte_records[-1]["max_steps"] == result["size_bytes"]
    assert inspect_text_model(out)["parameters"] > 0
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(out) is not None


def test_hub_download_resumes_after_failure(tmp_path, monkeypatch, hub_files, ctx_factory):
    """A GET that fails leaves the job failed; the next run reuses the cache (finished files are not refetched)."""
    server, log = _fake_hub(hub_files, fail_first_get={"tokenizer.json"})
    try:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
        monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "5")
        home = tmp_path / "ws"
        with pytest.raises(LoRAFactoryError):
            download_text_model({"source": "hub", "repo_id": REPO}, ctx_factory(home, "dl_a", kind="download"))
        fetched_first = {name for method, name, _ in log if method == "GET" and name != "info"}
        log.clear()
        ctx = ctx_factory(home, "dl_b", kind="download")
        download_text_model({"source": "hub", "repo_id": REPO}, ctx)
    finally:
        server.shutdown()
    refetched = {name for method, name, _ in log if method == "GET" and name != "info"}
    finished_before = fetched_first - {"tokenizer.json"}
    assert finished_before, "nothing was downloaded before the failure"
    assert not (finished_before & refetched), f"finished files were downloaded again: {finished_before & refetched}"
    assert (Path(ctx.output_dir) / "tokenizer.json").read_bytes() == hub_files["tokenizer.json"]


def test_hub_unknown_repo_is_model_not_found(tmp_path, monkeypatch, hub_files, ctx_factory):
    server, _ = _fake_hub(hub_files)
    try:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
        with pytest.raises(LoRAFactoryError) as err:
            download_text_model({"source": "hub", "repo_id": "acme/missing"},
                                ctx_factory(tmp_path / "ws", "dl3", kind="download"))
    finally:
        server.shutdown()
    assert err.value.code == "MODEL_NOT_FOUND"


def test_hub_unreachable(tmp_path, monkeypatch, ctx_factory):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there any more: connection refused
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    ctx = ctx_factory(tmp_path / "ws", "dl2", kind="download")
    with pytest.raises(LoRAFactoryError) as err:
        download_text_model({"source": "hub", "repo_id": REPO}, ctx)
    assert err.value.code == "HUB_UNREACHABLE"
    assert err.value.http_status == 503
    assert err.value.detail["repo_id"] == REPO and str(port) in err.value.detail["endpoint"]
    assert not (Path(ctx.output_dir) / "config.json").exists()
    assert not list(Path(ctx.output_dir).glob("*.safetensors"))


def test_local_import_copies_safe_files(tmp_path, tiny_model, ctx_factory):
    src = tmp_path / "src"
    src.mkdir()
    for p in tiny_model.iterdir():
        (src / p.name).write_bytes(p.read_bytes())
    (src / "pytorch_model.bin").write_bytes(b"x" * 10)
    (src / "modeling_evil.py").write_text("raise SystemExit", encoding="utf-8")
    ctx = ctx_factory(tmp_path / "ws", "imp", kind="download")
    result = download_text_model({"source": "local", "local_path": str(src)}, ctx)
    out = Path(ctx.output_dir)
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    assert not (out / "pytorch_model.bin").exists() and not (out / "modeling_evil.py").exists()
    assert set(result["skipped"]) == {"pytorch_model.bin", "modeling_evil.py"}
    assert inspect_text_model(out)["chat_template"] is True


def test_local_import_refuses_pickle_only(tmp_path, ctx_factory):
    src = tmp_path / "pickles"
    src.mkdir()
    (src / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}), encoding="utf-8")
    (src / "pytorch_model.bin").write_bytes(b"x" * 10)
    ctx = ctx_factory(tmp_path / "ws", "imp2", kind="download")
    with pytest.raises(LoRAFactoryError) as err:
        download_text_model({"source": "local", "local_path": str(src)}, ctx)
    assert err.value.code == "UNSAFE_WEIGHTS"
    assert "pytorch_model.bin" in err.value.detail["files"]
    assert not any(Path(ctx.output_dir).iterdir())


def test_local_import_without_config(tmp_path, ctx_factory):
    src = tmp_path / "empty"
    src.mkdir()
    with pytest.raises(LoRAFactoryError) as err:
        download_text_model({"source": "local", "local_path": str(src)}, ctx_factory(tmp_path / "ws", "i3"))
    assert err.value.code == "MODEL_INVALID"


def test_tiny_source(tmp_path, ctx_factory):
    ctx = ctx_factory(tmp_path / "ws", "tiny", kind="download")
    result = download_text_model({"source": "tiny"}, ctx)
    info = inspect_text_model(Path(ctx.output_dir))
    assert result["parameters"] == info["parameters"] > 0
    assert info["architecture"] == "LlamaForCausalLM"


def test_unknown_source(tmp_path, ctx_factory):
    with pytest.raises(LoRAFactoryError) as err:
        download_text_model({"source": "ftp"}, ctx_factory(tmp_path / "ws", "u"))
    assert err.value.code == "INVALID_SOURCE"


def test_download_through_the_server_then_unreachable(tmp_path, hub_files, server_factory):
    """As a user does it: POST /api/models/download with the Hub at HF_ENDPOINT, then with no network."""
    from tests.conftest import wait_for

    hub, log = _fake_hub(hub_files)
    home = tmp_path / "ws"
    home.mkdir()
    try:
        server = server_factory(home, HF_ENDPOINT=f"http://127.0.0.1:{hub.server_address[1]}")
        with server.client() as c:
            job_id = c.post("/api/models/download", json={"modality": "text", "repo_id": REPO}).json()["job_id"]
            job = wait_for(c, job_id, ("completed", "failed"), timeout=120)
            assert job["status"] == "completed", job
            assert job["max_steps"] > 0 and job["step"] == job["max_steps"]  # byte progress
            name = REPO.replace("/", "__")
            model = next(m for m in c.get("/api/models").json()["models"] if m["name"] == name)
            assert model["architecture"] == "LlamaForCausalLM" and model["chat_template"] is True
            assert not (home / "models" / "text" / name / "pytorch_model.bin").exists()
            assert all(entry[1] != "pytorch_model.bin" for entry in log)
            answer = c.post("/api/infer/chat", json={"modality": "text", "base_model": name, "stream": False,
                                                     "messages": [{"role": "user", "content": "こんにちは"}],
                                                     "params": {"max_new_tokens": 4}}).json()
            assert answer["usage"]["completion_tokens"] > 0
    finally:
        hub.shutdown()
    # the Hub stops answering (it still accepts connections, like a network that drops packets):
    # a clear error within the connect timeout, and nothing that looks like a model
    server2 = server_factory(home, HF_ENDPOINT=f"http://127.0.0.1:{hub.server_address[1]}",
                             LORA_FACTORY_HUB_TIMEOUT="2")
    with server2.client() as c:
        job_id = c.post("/api/models/download", json={"modality": "text", "repo_id": REPO,
                                                      "name": "again"}).json()["job_id"]
        job = wait_for(c, job_id, ("completed", "failed"), timeout=60)
        assert job["status"] == "failed" and job["error"]["code"] == "HUB_UNREACHABLE"
        assert job["error"]["message_ja"] and "again" not in [m["name"] for m in c.get("/api/models").json()["models"]]
        assert not (home / "models" / "text" / "again").exists()
    hub.server_close()
