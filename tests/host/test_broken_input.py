"""Broken input is answered clearly, never with a 500 (issue 16, items 10-14)."""

from __future__ import annotations

import os
import sqlite3

import pytest
from fastapi.testclient import TestClient

from lora_factory.app import create_app


@pytest.fixture
def client(dummy_home):
    with TestClient(create_app(dummy_home, start_scheduler=False), raise_server_exceptions=False) as c:
        yield c


# -- item 12: one damaged artifacts row ---------------------------------------------------------------
def test_a_damaged_artifacts_row_is_shown_damaged_and_the_rest_listed(client, dummy_home):
    svc = client.app.state.services
    good = svc.artifacts.register("dataset", "dummy", dummy_home / "datasets" / "dummy" / "data.txt")
    bad = svc.artifacts.register("model", "dummy", dummy_home / "models" / "dummy" / "base")
    with sqlite3.connect(svc.workspace.db_path) as conn:
        conn.execute("UPDATE artifacts SET meta = ? WHERE id = ?", ("{not json", bad))
    r = client.get("/api/artifacts")
    assert r.status_code == 200, r.text
    listed = r.json()
    listed = listed.get("artifacts", listed) if isinstance(listed, dict) else listed
    by_id = {a["id"]: a for a in listed}
    assert good in by_id and by_id[bad]["damaged"]
    for path in ("/api/models?modality=dummy", "/api/models?modality=text", "/v1/models"):
        assert client.get(path).status_code == 200, path


# -- item 11: symlink loops are listed as refused -------------------------------------------------------
@pytest.mark.skipif(os.name == "nt", reason="creating symlinks needs a privilege on Windows")
def test_symlink_loops_are_listed_as_refused(client, dummy_home):
    for folder in ("models/dummy", "datasets/dummy", "lora_adapters/dummy", "models/text", "lora_adapters/text"):
        target = dummy_home / folder
        target.mkdir(parents=True, exist_ok=True)
        os.symlink(target / "loop", target / "loop")
    for path in ("/api/models?modality=dummy", "/api/datasets?modality=dummy", "/api/adapters?modality=dummy",
                 "/api/models?modality=text", "/api/adapters?modality=text", "/v1/models"):
        r = client.get(path)
        assert r.status_code == 200, (path, r.text)
        assert "Symlink loop" not in r.text


def test_import_folder_of_proc_self_is_refused(client):
    r = client.post("/api/datasets/import_folder", json={"modality": "image", "source_path": "/proc/self"})
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["error"]["code"]
