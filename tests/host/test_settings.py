"""The Hugging Face token lives in settings.json: masked by the API, exported to workers, never in a job spec."""

from __future__ import annotations

import json
import os
import stat

from tests.conftest import wait_for

# the Ray cluster settings (tests/cluster), none set here
NO_CLUSTER = {"cluster_address": None, "cluster_workers": None, "cluster_resources_per_worker": None,
              "cluster_workspace": None}


def test_token_is_masked_exported_to_workers_and_kept_out_of_config(dummy_home, server_factory, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    server = server_factory(dummy_home)
    with server.client() as c:
        assert c.get("/api/settings").json() == {"hf_token_set": False, "hf_token_hint": None, "hf_endpoint": None,
                                                "modality_owners": {}} | NO_CLUSTER
        view = c.put("/api/settings", json={"hf_token": "hf_secretvalue1234"}).json()
        assert view == {"hf_token_set": True, "hf_token_hint": "…1234", "hf_endpoint": None, "modality_owners": {}} | NO_CLUSTER
        assert "hf_secretvalue1234" not in c.get("/api/settings").text
        r = c.put("/api/settings", json={"hf_endpoint": "not a url"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "SETTINGS_INVALID"
        job_id = c.post("/api/models/tiny", json={"modality": "dummy", "name": "t"}).json()["job_id"]
        job = wait_for(c, job_id, ("completed", "failed"))
        assert job["result"]["hf_token_seen"] == "hf_secretvalue1234"
        assert "hf_secretvalue1234" not in (dummy_home / "runs" / job_id / "config.json").read_text()
        r = c.post("/api/models/download", json={"modality": "dummy", "repo_id": "a/b", "token": "x"})
        assert r.status_code == 422  # a token is not part of a job request
        assert c.put("/api/settings", json={"hf_token": ""}).json()["hf_token_set"] is False
    saved = json.loads((dummy_home / "settings.json").read_text())
    assert saved["hf_token"] is None
    if os.name == "posix":
        assert stat.S_IMODE((dummy_home / "settings.json").stat().st_mode) == 0o600


def test_secret_params_stay_out_of_config_and_job_rows(dummy_home, server_factory):
    server = server_factory(dummy_home)
    with server.client() as c:
        job_id = c.post("/train/start", json={"base_model": "base", "dataset": "data.txt", "output_name": "s",
                                              "modality": "dummy", "preset": "fast",
                                              "params": {"steps": 1, "api_key": "sk-live-123"}}).json()["job_id"]
        job = wait_for(c, job_id, ("completed", "failed"))
        assert job["result"]["api_key_reversed"] == "321-evil-ks"  # the worker got the real value
        assert job["spec"]["params"]["api_key"] == "***"
        run_dir = dummy_home / "runs" / job_id
        assert "sk-live-123" not in (run_dir / "config.json").read_text()
        assert "sk-live-123" not in c.get("/api/jobs").text
        if os.name == "posix":
            assert stat.S_IMODE((run_dir / "secrets.json").stat().st_mode) == 0o600
        rerun = c.post(f"/api/jobs/{job_id}/rerun").json()["job_id"]
        assert wait_for(c, rerun, ("completed", "failed"))["result"]["api_key_reversed"] == "321-evil-ks"
