"""Pushing an adapter to the Hub is an export job (target ``hub``, any modality), checked against the local
Hub look-alike (``tests/fake_hub.py``): the repo is created private or public, the adapter's files and a
model card with its training data's lineage and regression results arrive in one commit; no token is a 400
before any job; a wrong token a clear 401; an unreachable Hub the downloads' offline message."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys

from tests.conftest import wait_for
from tests.fake_hub import fake_hub
from tests.host.test_exports import _train

TOKEN = "hf_pushtoken123456"


def _eval(c, adapter="ad"):
    job = c.post("/api/eval/start", json={"modality": "dummy", "adapter": adapter, "suite": [
        {"prompt": "x", "checks": [{"type": "regex", "value": "^\\[adapter\\]"}]}]})
    assert job.status_code == 200, job.text
    assert wait_for(c, job.json()["job_id"], ("completed", "failed"))["status"] == "completed"


def test_push_creates_the_repo_and_commits_the_adapter_with_its_card(dummy_home, server_factory, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    hub, _ = fake_hub({}, token=TOKEN)
    try:
        server = server_factory(dummy_home, HF_ENDPOINT=f"http://127.0.0.1:{hub.server_address[1]}")
        with server.client() as c:
            _train(c)
            _eval(c)
            (dummy,) = [m for m in c.get("/api/modalities").json()["modalities"] if m["id"] == "dummy"]
            assert "hub" in dummy["export_targets"]
            refused = c.post("/api/exports", json={"modality": "dummy", "adapter": "ad", "target": "hub",
                                                   "params": {"repo_id": "me/ad"}})
            assert refused.status_code == 400 and refused.json()["error"]["code"] == "HUB_TOKEN_REQUIRED"
            bad = c.post("/api/exports", json={"modality": "dummy", "adapter": "ad", "target": "hub",
                                               "params": {"repo_id": "../etc"}})
            assert bad.status_code == 400 and bad.json()["error"]["code"] == "INVALID_EXPORT_PARAMS"
            assert hub.state.requests == []  # nothing reached the Hub
            c.put("/api/settings", json={"hf_token": TOKEN})
            queued = c.post("/api/exports", json={"modality": "dummy", "adapter": "ad", "target": "hub",
                                                  "params": {"repo_id": "me/ad", "private": True}}).json()
            job = wait_for(c, queued["job_id"], ("completed", "failed"))
            assert job["status"] == "completed", job
            assert TOKEN not in (dummy_home / "runs" / job["job_id"] / "config.json").read_text()
            log = "\n".join(c.get(f"/api/jobs/{job['job_id']}/log").json()["lines"])
            assert "push ad to" in log and "pushed:" in log
            adapter = c.get("/api/adapters/dummy/ad").json()
            assert [(e["name"], e["target"]) for e in adapter["exports"]] == [("ad-hub", "hub")]
            listed = c.get("/api/exports/dummy/ad-hub").json()
            assert listed["checks"]["repo_id"] == "me/ad" and listed["checks"]["private"] is True
            # again, public, into the same repo: a second commit
            again = c.post("/api/exports", json={"modality": "dummy", "adapter": "ad", "target": "hub",
                                                 "output_name": "ad-hub2",
                                                 "params": {"repo_id": "me/ad", "private": False}}).json()
            assert wait_for(c, again["job_id"], ("completed", "failed"))["status"] == "completed"
    finally:
        hub.shutdown()
    repo = hub.state.repos["me/ad"]
    assert repo["private"] is True and len(repo["commits"]) == 2
    adapter_dir = dummy_home / "lora_adapters" / "dummy" / "ad"
    for path in adapter_dir.rglob("*"):
        if path.is_file() and path.name != "README.md":
            assert repo["files"][path.relative_to(adapter_dir).as_posix()] == path.read_bytes()
    card = repo["files"]["README.md"].decode()
    assert card.startswith("---\nlibrary_name: peft")
    assert "## 学習データの由来 / training data lineage" in card and "`data.txt`" in card
    assert "## 回帰テスト / regression results" in card and "| 1 / 1 | 0 / 1 |" in card


def test_a_wrong_token_is_a_clear_401_and_an_unreachable_hub_the_offline_message(dummy_home, server_factory,
                                                                                 monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    hub, _ = fake_hub({}, token="the-right-one")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    dead_port = sock.getsockname()[1]
    sock.close()
    try:
        server = server_factory(dummy_home, HF_ENDPOINT=f"http://127.0.0.1:{hub.server_address[1]}")
        with server.client() as c:
            _train(c)
            shutil.rmtree(dummy_home / "models" / "dummy" / "base")  # a push needs the adapter only, not its base
            c.put("/api/settings", json={"hf_token": "hf_wrongwrongwrong"})
            queued = c.post("/api/exports", json={"modality": "dummy", "adapter": "ad", "target": "hub",
                                                  "params": {"repo_id": "me/ad"}}).json()
            job = wait_for(c, queued["job_id"], ("completed", "failed"))
            assert job["status"] == "failed" and job["error"]["code"] == "HUB_AUTH_REQUIRED", job
            assert "write access" in job["error"]["message"]
            assert not (dummy_home / "exports" / "dummy" / "ad-hub").exists()
    finally:
        hub.shutdown()
    out = subprocess.run([sys.executable, "-m", "lora_factory.cli", "export", "ad", "--to", "hub", "--modality",
                          "dummy", "--param", "repo_id=me/ad", "--name", "ad-offline", "--wait",
                          "--home", str(dummy_home)], capture_output=True, text=True, timeout=120,
                         env={**__import__("os").environ, "HF_ENDPOINT": f"http://127.0.0.1:{dead_port}"})
    assert out.returncode != 0
    assert "HUB_UNREACHABLE" in out.stdout + out.stderr and "Cannot reach the Hugging Face Hub" in out.stdout + out.stderr
