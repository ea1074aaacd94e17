"""Bad input gets a 4xx with a stable code and both messages; unsafe names never touch the disk."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lora_factory.app import create_app
from lora_factory.core.errors import LoRAFactoryError
from lora_factory.core.storage.workspace import Workspace, safe_name


@pytest.fixture
def client(dummy_home):
    with TestClient(create_app(dummy_home, start_scheduler=False)) as c:
        yield c


def assert_error(r, status: int, code: str):
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code
    assert err["message"] and err["message_ja"]
    return err


TRAIN = {"base_model": "base", "dataset": "data.txt", "output_name": "o", "preset": "fast", "modality": "dummy"}


def test_unknown_modality(client):
    assert_error(client.post("/train/start", json=TRAIN | {"modality": "nope"}), 400, "UNKNOWN_MODALITY")
    assert_error(client.get("/api/models", params={"modality": "video"}), 400, "UNKNOWN_MODALITY")


def test_unknown_job_id(client):
    assert_error(client.get("/train/status/20200101_000000_abcd"), 404, "JOB_NOT_FOUND")
    assert_error(client.post("/train/cancel/nope"), 404, "JOB_NOT_FOUND")
    assert_error(client.get("/api/jobs/nope/events"), 404, "JOB_NOT_FOUND")


@pytest.mark.parametrize("field,value", [
    ("base_model", "../outside"), ("base_model", "/etc"), ("dataset", "../../etc/passwd"),
    ("dataset", "C:\\Windows\\win.ini"), ("dataset", "datasets/dummy/../../../x"), ("output_name", "../evil"),
    ("output_name", "a/b"), ("output_name", ".."), ("base_model", "models/dummy/.cache"),
    ("dataset", ".meta")])
def test_paths_leaving_the_workspace_are_refused(client, field, value):
    r = client.post("/train/start", json=TRAIN | {field: value})
    assert r.status_code == 400
    assert r.json()["error"]["code"] in ("UNSAFE_PATH", "INVALID_NAME")


@pytest.mark.skipif(os.name == "nt", reason="creating symlinks needs a privilege on Windows")
def test_symlink_escape_is_refused(client, dummy_home, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("x")
    os.symlink(outside, dummy_home / "datasets" / "dummy" / "link")
    assert_error(client.post("/train/start", json=TRAIN | {"dataset": "datasets/dummy/link/secret.txt"}),
                 400, "UNSAFE_PATH")


def test_malformed_json_and_missing_fields(client):
    r = client.post("/train/start", content=b"{not json", headers={"content-type": "application/json"})
    assert_error(r, 400, "INVALID_JSON")
    err = assert_error(client.post("/train/start", json={"dataset": "x"}), 422, "VALIDATION_ERROR")
    assert any(e["field"] == "base_model" for e in err["detail"]["errors"])
    assert_error(client.get("/no/such/route"), 404, "NOT_FOUND")


def test_missing_model_and_dataset(client):
    assert_error(client.post("/train/start", json=TRAIN | {"base_model": "ghost"}), 404, "MODEL_NOT_FOUND")
    assert_error(client.post("/train/start", json=TRAIN | {"dataset": "ghost.txt"}), 404, "DATASET_NOT_FOUND")


def test_open_path_keys(client, dummy_home):
    r = client.post("/utils/open_path", json={"key": "lora_adapters_root"}).json()
    assert r["ok"] and r["path"] == str(dummy_home.resolve() / "lora_adapters") and r["opened"] is False
    assert client.post("/utils/open_path", json={"key": "dummy_datasets"}).json()["path"].endswith("datasets/dummy")
    assert client.post("/utils/open_path", json={"key": "artifacts_root"}).json()["ok"]
    assert_error(client.post("/utils/open_path", json={"key": "/etc"}), 400, "UNKNOWN_PATH_KEY")


def test_delete_needs_confirmation(client):
    assert_error(client.request("DELETE", "/api/models/dummy/base", json={}), 400, "CONFIRMATION_REQUIRED")
    assert_error(client.request("DELETE", "/api/models/dummy/.cache", json={"confirm": True}), 400, "UNSAFE_PATH")


def test_safe_name_accepts_japanese_and_refuses_tricks(tmp_path):
    assert safe_name("日本語アダプター_v1") == "日本語アダプター_v1"
    assert safe_name("console") == "console" and safe_name("contest.jsonl") == "contest.jsonl"
    for bad in ("", "..", ".hidden", "a/b", "a\\b", "C:x", "x" * 200, "CON", "nul.txt", "com1", "Lpt3.jsonl",
                "name."):
        with pytest.raises(LoRAFactoryError):
            safe_name(bad)
    ws = Workspace(tmp_path)
    with pytest.raises(LoRAFactoryError):
        ws.resolve_inside("\\\\server\\share")


def test_cli_prints_the_same_error_code_and_both_messages(dummy_home):
    out = subprocess.run([sys.executable, "-m", "lora_factory.cli", "jobs", "show", "nope", "--home", str(dummy_home)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "[JOB_NOT_FOUND]" in out.stderr and "ジョブ" in out.stderr and "was not found" in out.stderr


def test_server_binds_loopback_by_default():
    from lora_factory.cli import build_parser

    args = build_parser().parse_args(["serve"])
    assert args.host == "127.0.0.1" and args.port == 8081
    assert Path  # keep import used


def test_uploaded_file_names_are_made_safe_not_refused():
    """A regression: "my data.csv" (a space) was refused as UNSAFE_PATH on upload."""
    from lora_factory.core.storage.workspace import name_from_filename

    assert name_from_filename("my data (1).csv") == "my_data_1.csv"
    assert name_from_filename("訓練 データ.jsonl") == "訓練_データ.jsonl"
    assert name_from_filename("../../etc/passwd") == "passwd"
    assert name_from_filename("C:\\Users\\me\\データ.csv") == "データ.csv"
    assert name_from_filename("a" * 300 + ".txt").endswith("a.txt") and len(name_from_filename("a" * 300 + ".txt")) == 128
    assert name_from_filename("CON.txt") == "CON_.txt"
    assert name_from_filename(".jsonl") == "dataset.jsonl"
    for raw in ("my data (1).csv", "../../x.y", "CON.txt", ".jsonl", "a" * 300 + ".txt"):
        assert safe_name(name_from_filename(raw)) == name_from_filename(raw)


def test_upload_with_spaces_in_the_file_name(client, dummy_home):
    r = client.post("/api/datasets/upload", data={"modality": "dummy"},
                    files={"file": ("my lines (final).txt", b"a\nb\n", "text/plain")})
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "my_lines_final.txt"
    assert (dummy_home / "datasets" / "dummy" / "my_lines_final.txt").exists()


def test_imported_folder_names_are_made_safe(client, tmp_path):
    from lora_factory.core.storage.workspace import name_from_folder

    assert name_from_folder("Qwen2.5 0.5B Instruct") == "Qwen2.5_0.5B_Instruct"
    assert name_from_folder("..") == "model" and name_from_folder("nul") == "nul_"
    source = tmp_path / "My Model (v2)"
    source.mkdir()
    (source / "weights.txt").write_text("w")
    r = client.post("/api/models/import", json={"modality": "dummy", "source_path": str(source)})
    assert r.status_code == 200, r.text
    assert client.get(f"/api/jobs/{r.json()['job_id']}").json()["output_name"] == "My_Model_v2"


def test_hand_copied_files_with_spaces_can_be_used_and_deleted(client, dummy_home):
    """A regression: a dataset copied in by hand as "my data.txt" could be trained on but not deleted."""
    (dummy_home / "datasets" / "dummy" / "my data.txt").write_text("x\n")
    names = [d["name"] for d in client.get("/api/datasets", params={"modality": "dummy"}).json()["datasets"]]
    assert "my data.txt" in names
    assert client.get("/api/datasets/dummy/my data.txt").status_code == 200
    assert client.request("DELETE", "/api/datasets/dummy/my data.txt", json={"confirm": True}).json()["ok"]
    assert_error(client.request("DELETE", "/api/datasets/dummy/.meta", json={"confirm": True}), 400, "UNSAFE_PATH")
    (dummy_home / "models" / "dummy" / ".cache").mkdir()
    assert_error(client.request("DELETE", "/api/models/dummy/.cache", json={"confirm": True}), 400, "UNSAFE_PATH")
    assert (dummy_home / "models" / "dummy" / ".cache").is_dir()
