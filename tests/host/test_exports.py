"""Exports are jobs (progress, cancel, log, lineage) and adapters / exports are downloadable, driven
through the real server and CLI with the dummy plugin's ``export_adapter`` / ``resolve_export_spec``."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile

from tests.conftest import wait_for


def _train(c, name="ad"):
    job = c.post("/train/start", json={"base_model": "base", "dataset": "data.txt", "output_name": name,
                                       "modality": "dummy", "preset": "fast", "params": {"steps": 1}}).json()
    assert wait_for(c, job["job_id"], ("completed", "failed"))["status"] == "completed"


def test_hook_export_adapter_publishes_lists_and_downloads(dummy_home, server_factory):
    server = server_factory(dummy_home)
    with server.client() as c:
        _train(c)
        queued = c.post("/api/exports", json={"modality": "dummy", "adapter": "ad", "target": "txt",
                                              "params": {"warn": True}}).json()
        assert queued["output_name"] == "ad-txt" and queued["warnings"][0]["code"] == "DUMMY_WARNING"
        job = wait_for(c, queued["job_id"], ("completed", "failed"))
        assert job["kind"] == "export" and job["status"] == "completed", job
        assert job["step"] == 2 and job["result"]["path"] == "exports/dummy/ad-txt"
        log = c.get(f"/api/jobs/{job['job_id']}/log").json()["lines"]
        assert any("exporting ad as txt" in line for line in log)
        (listed,) = c.get("/api/exports", params={"modality": "dummy", "adapter": "ad"}).json()["exports"]
        assert listed["target"] == "txt" and listed["adapter_name"] == "ad" and listed["primary"] == "ad.txt"
        assert listed["warnings"][0]["code"] == "DUMMY_WARNING" and listed["commands"] == ["cat ad.txt"]
        assert c.get("/api/exports", params={"modality": "dummy", "adapter": "other"}).json()["exports"] == []
        adapter = c.get("/api/adapters/dummy/ad").json()
        assert [e["name"] for e in adapter["exports"]] == ["ad-txt"]
        lineage = c.get(f"/api/artifacts/{listed['artifact_id']}/lineage").json()
        assert {p["role"] for p in lineage["parents"]} == {"adapter", "base_model"}
        single = c.get(listed["download_url"])
        assert single.status_code == 200 and single.content == b"exported ad"
        assert 'filename="ad.txt"' in single.headers["content-disposition"]
        whole = c.get(listed["download_url"], params={"zip": "true"})
        names = zipfile.ZipFile(io.BytesIO(whole.content)).namelist()
        assert {"ad.txt", "README.md", "export.json"} <= set(names)
        again = c.post("/api/exports", json={"modality": "dummy", "adapter": "ad", "target": "txt"})
        assert again.status_code == 409 and again.json()["error"]["code"] == "OUTPUT_EXISTS"
        gone = c.request("DELETE", "/api/exports/dummy/ad-txt", json={"confirm": True})
        assert gone.status_code == 200 and not (dummy_home / "exports" / "dummy" / "ad-txt").exists()


def test_hook_resolve_export_spec_refuses_before_queueing(dummy_home, server_factory):
    server = server_factory(dummy_home)
    with server.client() as c:
        _train(c)
        before = len(c.get("/api/jobs").json()["jobs"])
        unknown = c.post("/api/exports", json={"modality": "dummy", "adapter": "ad", "target": "gguf"})
        assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "EXPORT_UNKNOWN_TARGET"
        assert unknown.json()["error"]["detail"]["known"] == ["folder", "hub", "txt"]  # hub: the host's, for all
        bad = c.post("/api/exports", json={"modality": "dummy", "adapter": "ad", "target": "txt", "params": {"bad": 1}})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "INVALID_EXPORT_PARAMS"
        missing = c.post("/api/exports", json={"modality": "dummy", "adapter": "nope", "target": "txt"})
        assert missing.status_code == 404
        assert len(c.get("/api/jobs").json()["jobs"]) == before


def test_folder_exports_and_adapters_download_as_zip_and_names_stay_inside(dummy_home, server_factory):
    server = server_factory(dummy_home)
    with server.client() as c:
        _train(c)
        job = c.post("/api/exports", json={"modality": "dummy", "adapter": "ad", "target": "folder",
                                           "output_name": "ad-folder"}).json()
        assert wait_for(c, job["job_id"], ("completed", "failed"))["status"] == "completed"
        got = c.get("/api/exports/dummy/ad-folder/download")
        assert got.headers["content-type"] == "application/zip"
        archive = zipfile.ZipFile(io.BytesIO(got.content))
        assert {"part1.bin", "sub/part2.bin", "README.md"} <= set(archive.namelist())
        one = c.get("/api/exports/dummy/ad-folder/download", params={"file": "sub/part2.bin"})
        assert one.content == b"22"
        for evil in ("../../models/dummy/base/weights.txt", "/etc/passwd", ".hidden"):
            refused = c.get("/api/exports/dummy/ad-folder/download", params={"file": evil})
            assert refused.status_code in (400, 404), evil
        adapter_zip = c.get("/api/adapters/dummy/ad/download")
        assert adapter_zip.status_code == 200
        members = zipfile.ZipFile(io.BytesIO(adapter_zip.content)).namelist()
        assert any(m.endswith("adapter.json") for m in members), members
        assert c.get("/api/adapters/dummy/nope/download").status_code == 404
        assert c.get("/api/adapters/dummy/..%2F..%2Fmodels/download").status_code in (400, 404)


def test_an_export_job_can_be_canceled_and_publishes_nothing(dummy_home, server_factory):
    server = server_factory(dummy_home)
    with server.client() as c:
        _train(c)
        job = c.post("/api/exports", json={"modality": "dummy", "adapter": "ad", "target": "txt",
                                           "params": {"steps": 200, "delay": 0.05}}).json()
        wait_for(c, job["job_id"], ("running",))
        assert c.post(f"/train/cancel/{job['job_id']}").json()["ok"] is True
        assert wait_for(c, job["job_id"], ("canceled", "completed", "failed"), timeout=20)["status"] == "canceled"
        assert not (dummy_home / "exports" / "dummy" / "ad-txt").exists()


def test_cli_export_waits_and_prints_where_and_how(dummy_home):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "lora_factory.cli", *args, "--home", str(dummy_home)],
                              capture_output=True, text=True, timeout=120)

    out = cli("train", "--base-model", "base", "--dataset", "data.txt", "--output-name", "ad", "--modality", "dummy",
              "--preset", "fast", "--param", "steps=1", "--wait")
    assert out.returncode == 0, out.stderr
    out = cli("export", "ad", "--to", "txt", "--modality", "dummy", "--param", "warn=true", "--wait")
    assert out.returncode == 0, out.stderr
    assert "DUMMY_WARNING" in out.stderr
    printed = json.loads(out.stdout[out.stdout.index("{", out.stdout.index("}") + 1):])
    assert printed["primary"] == "ad.txt" and printed["commands"] == ["cat ad.txt"]
    assert (dummy_home / "exports" / "dummy" / "ad-txt" / "ad.txt").read_text() == "exported ad"
    refused = cli("export", "ad", "--to", "nothing", "--modality", "dummy")
    assert refused.returncode == 2 and "EXPORT_UNKNOWN_TARGET" in refused.stderr
