"""A full disk or a damaged file must not wedge the server (issue 10, items 3-9).

A full disk is simulated by making writes raise ``OSError(ENOSPC)`` (and SQLite by a page limit), so
the tests run anywhere; each reproduction failed on the code before its fix.
"""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import sqlite3
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lora_factory.app import create_app
from lora_factory.core.errors import LoRAFactoryError
from lora_factory.core.jobs.store import TERMINAL_STATUSES
from lora_factory.core.services import Services
from lora_factory.core.storage import workspace as workspace_module
from lora_factory.core.storage.workspace import Workspace

TRAIN = {"base_model": "base", "dataset": "data.txt", "preset": "fast", "modality": "dummy"}


def enospc(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.fixture
def client(dummy_home):
    with TestClient(create_app(dummy_home, start_scheduler=False), raise_server_exceptions=False) as c:
        yield c


def assert_error(r, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code and err["message_ja"] and err["message"]
    return err


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.startswith((".tmp-", ".trash-")))


# -- item 3: the scheduler survives, and says when it cannot work ------------------------------------
def test_the_scheduler_survives_a_full_disk_even_when_its_own_report_fails(dummy_home, monkeypatch):
    svc = Services(dummy_home)
    svc.health.scheduler_expected = True
    try:
        real_tick = svc.jobs.tick
        monkeypatch.setattr(svc.jobs, "tick", enospc)

        class FullStderr(io.StringIO):
            def write(self, _text: str) -> int:
                raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(sys, "stderr", FullStderr())
        svc.jobs.start_background(interval=0.02)
        time.sleep(0.3)
        assert svc.jobs._thread.is_alive(), "the scheduler thread died"
        health = svc.health.report()
        assert not health["ok"] and health["problems"][0]["code"] == "SCHEDULER_FAILING"
        assert health["scheduler"]["last_error"]["code"] == "DISK_FULL"
        monkeypatch.setattr(svc.jobs, "tick", real_tick)  # space freed: the loop goes on by itself
        time.sleep(0.3)
        assert svc.health.report()["ok"]
        job_id = svc.submitter.start_train(_train_request("after", steps=1, delay=0))
        deadline = time.monotonic() + 60
        while svc.store.get(job_id)["status"] not in TERMINAL_STATUSES and time.monotonic() < deadline:
            time.sleep(0.1)
        assert svc.store.get(job_id)["status"] == "completed", svc.store.get(job_id)["error"]
    finally:
        svc.close()


def test_health_reports_a_stopped_scheduler(dummy_home):
    with TestClient(create_app(dummy_home)) as c:
        assert c.get("/api/health").json()["ok"] is True
        c.app.state.services.jobs.stop_background()
        health = c.get("/api/health").json()
        assert health["ok"] is False and health["problems"][0]["code"] == "SCHEDULER_STOPPED"
        assert c.get("/api/system").json()["health"]["ok"] is False


# -- item 4: DISK_FULL in words, nothing half-written ---------------------------------------------
def test_a_full_database_answers_disk_full_not_a_rollback_error(client, dummy_home):
    store = client.app.state.services.store
    pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
    store._conn.execute(f"PRAGMA max_page_count = {pages}")
    big = {"params": {"steps": 1, "note": "x" * 20000}}
    r = client.post("/train/start", json=TRAIN | {"output_name": "full"} | big)
    assert_error(r, 507, "DISK_FULL")
    assert not any((dummy_home / "runs").iterdir()), "a run folder without its job row"
    assert not list((dummy_home / "logs").glob("train_*.log"))


def test_a_full_disk_while_writing_the_run_folder_leaves_no_job(client, dummy_home, monkeypatch):
    from lora_factory.core.jobs import scheduler

    monkeypatch.setattr(scheduler, "write_text_atomic", enospc)
    err = assert_error(client.post("/train/start", json=TRAIN | {"output_name": "full"}), 507, "DISK_FULL")
    assert "ディスク" in err["message_ja"]
    assert client.get("/api/jobs").json()["jobs"] == [], "a queued job without its config.json"
    assert not any((dummy_home / "runs").iterdir())


def test_a_full_disk_during_an_upload_is_disk_full_and_leaves_nothing(client, dummy_home, monkeypatch):
    from lora_factory.core.catalog import models as catalog

    def half_then_full(src, dst, length=0):
        dst.write(src.read(3))
        enospc()

    monkeypatch.setattr(catalog.shutil, "copyfileobj", half_then_full)
    folder = dummy_home / "datasets" / "dummy"
    before = sorted(p.name for p in folder.iterdir())
    r = client.post("/api/datasets/upload", data={"modality": "dummy"}, files={"file": ("big.txt", b"a\nb\nc\n")})
    assert_error(r, 507, "DISK_FULL")
    assert sorted(p.name for p in folder.iterdir()) == before and not leftovers(folder)


def test_an_atomic_write_that_fails_leaves_no_temporary(tmp_path, monkeypatch):
    monkeypatch.setattr(workspace_module.os, "fsync", enospc)
    with pytest.raises(OSError):
        workspace_module.write_text_atomic(tmp_path / "a.json", "{}")
    assert list(tmp_path.iterdir()) == []


# -- item 5: a publish across file systems that stops half-way --------------------------------------
@pytest.mark.parametrize("reason,code", [("[Errno 28] No space left on device", "DISK_FULL"),
                                         ("[Errno 5] Input/output error", "PUBLISH_FAILED")])
def test_a_cross_device_publish_that_fails_cleans_up_and_says_why(tmp_path, monkeypatch, reason, code):
    ws = Workspace(tmp_path / "ws", ["text"])
    source = ws.run_dir("job1") / "output"
    source.mkdir(parents=True)
    (source / "adapter.safetensors").write_bytes(b"x" * 100)
    real_rename = workspace_module.rename_no_clobber

    def cross_device(src, dst, attempts=5):
        if Path(src) == source:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real_rename(src, dst, attempts)

    def copy_half(src, dst, *args, **kwargs):
        Path(dst).mkdir(parents=True)
        (Path(dst) / "adapter.safetensors").write_bytes(b"x" * 10)
        raise shutil.Error([(str(Path(src) / "adapter.safetensors"), str(Path(dst) / "adapter.safetensors"), reason)])

    monkeypatch.setattr(workspace_module, "rename_no_clobber", cross_device)
    monkeypatch.setattr(workspace_module.shutil, "copytree", copy_half)
    with pytest.raises(LoRAFactoryError) as err:
        ws.move_into_place(source, ws.adapters_dir("text") / "my-adapter")
    assert err.value.code == code
    assert "[(" not in err.value.message_en, "a raw shutil.Error list"
    assert list(ws.adapters_dir("text").iterdir()) == [], "a .tmp-* folder was left in lora_adapters/"
    assert (source / "adapter.safetensors").read_bytes() == b"x" * 100, "the output must stay for a resume"


def test_stale_temporaries_are_removed_at_start(dummy_home):
    stale = [dummy_home / "lora_adapters" / "dummy" / ".tmp-ad-1234abcd", dummy_home / "models" / "dummy" / ".trash-m-1",
             dummy_home / "datasets" / "dummy" / ".tmp-data.txt-5678"]
    stale[0].mkdir(parents=True)
    (stale[0] / "adapter.safetensors").write_bytes(b"half")
    stale[1].mkdir(parents=True)
    stale[2].write_text("half")
    with TestClient(create_app(dummy_home, start_scheduler=False)):
        pass
    assert not any(p.exists() for p in stale)
    assert (dummy_home / "models" / "dummy" / "base" / "weights.txt").exists()


# -- item 6: resume checks the output name; a finished training is only published ------------------
def test_resume_checks_the_output_name_and_then_only_publishes(dummy_home):
    svc = Services(dummy_home)
    try:
        job_id = svc.submitter.start_train(_train_request("taken", steps=4, delay=0.3))
        log = svc.jobs.log_path(svc.store.get(job_id))
        deadline = time.monotonic() + 30
        while "pid " not in (log.read_text() if log.exists() else "") and time.monotonic() < deadline:
            svc.jobs.tick()
            time.sleep(0.05)
        blocker = dummy_home / "lora_adapters" / "dummy" / "taken"
        blocker.mkdir()  # another job (or the user) takes the name while this one trains
        job = svc.jobs.wait(job_id, timeout=60, poll=0.1)
        assert job["status"] == "failed" and job["error"]["code"] == "OUTPUT_EXISTS"
        assert (dummy_home / "runs" / job_id / "output" / "adapter.json").exists(), "the output must stay"
        with pytest.raises(LoRAFactoryError) as err:
            svc.jobs.resume(job_id)
        assert err.value.code == "OUTPUT_EXISTS" and svc.store.get(job_id)["status"] == "failed"
        blocker.rmdir()
        svc.jobs.resume(job_id)
        job = svc.jobs.wait(job_id, timeout=60, poll=0.1)
        assert job["status"] == "completed", job["error"]
        text = log.read_text()
        assert text.count("] pid ") == 1, "the hook trained again instead of only publishing"
        assert "publishing its output only" in text
        assert json.loads((blocker / "adapter.json").read_text())["steps_done"] == 4
    finally:
        svc.close()


def _train_request(name: str, **params):
    from lora_factory.core.schemas import TrainStartRequest

    return TrainStartRequest(**TRAIN, output_name=name, params=params)


# -- item 7: links leaving the workspace -----------------------------------------------------------
@pytest.mark.skipif(sys.platform.startswith("win"), reason="symlinks need a privilege on Windows")
def test_links_leaving_the_workspace_are_listed_as_refused_never_walked(client, dummy_home, monkeypatch):
    models = dummy_home / "models" / "dummy"
    (models / "proc").symlink_to("/proc", target_is_directory=True)
    (models / "usr").symlink_to("/usr", target_is_directory=True)
    (dummy_home / "lora_adapters" / "dummy" / "etc").symlink_to("/etc", target_is_directory=True)
    walked = []
    real_rglob = Path.rglob

    def spy(self, pattern, *args, **kwargs):
        walked.append(str(self))
        return real_rglob(self, pattern, *args, **kwargs)

    monkeypatch.setattr(Path, "rglob", spy)
    r = client.get("/api/models", params={"modality": "dummy"})
    assert r.status_code == 200, r.text
    by_name = {m["name"]: m for m in r.json()["models"]}
    assert by_name["proc"]["refused"] and by_name["usr"]["refused"] and not by_name["base"].get("refused")
    assert not [w for w in walked if w.endswith(("/proc", "/usr"))], f"walked: {walked}"
    adapters = client.get("/api/adapters", params={"modality": "dummy"}).json()["adapters"]
    assert [a["name"] for a in adapters if a.get("refused")] == ["etc"]
    ids = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert "base" in ids and "proc" not in ids and "usr" not in ids


def test_chat_completions_does_not_tell_whether_an_outside_folder_exists(client, tmp_path):
    (tmp_path / "exists").mkdir()
    answers = []
    for model in ("../../../exists", "../../../missing", "base+../../../exists", "base+../../../missing"):
        r = client.post("/v1/chat/completions", json={"model": model, "messages": [{"role": "user", "content": "x"}]})
        answers.append((r.status_code, r.json()["error"]["code"]))
    assert answers[0] == answers[1] and answers[2] == answers[3], answers
    assert answers[0][0] == 400


# -- item 8: a damaged settings.json, database, job row or config.json ------------------------------
def test_a_damaged_settings_file_is_settings_invalid_with_its_path(dummy_home):
    (dummy_home / "settings.json").write_bytes(b"\xff{not json")
    svc = Services(dummy_home)
    try:
        job_id = svc.jobs.submit("train", "dummy", {"params": {"steps": 1, "delay": 0}}, output_name="s")
        job = svc.jobs.wait(job_id, timeout=60, poll=0.1)
        assert job["status"] == "failed" and job["error"]["code"] == "SETTINGS_INVALID", job["error"]
        assert "settings.json" in job["error"]["message_ja"]
    finally:
        svc.close()
    with TestClient(create_app(dummy_home, start_scheduler=False), raise_server_exceptions=False) as c:
        err = c.get("/api/settings").json()["error"]
        # named workspace-relative: no absolute server path in an answer (issue 16, item 6)
        assert err["code"] == "SETTINGS_INVALID" and "settings.json" in err["message"]
        assert str(dummy_home) not in err["message"]
        assert "SETTINGS_INVALID" in [p["code"] for p in c.get("/api/health").json()["problems"]]
        assert c.put("/api/settings", json={"hf_endpoint": "https://hf-mirror.com"}).status_code == 200  # repairs
        assert c.get("/api/settings").json()["hf_endpoint"] == "https://hf-mirror.com"
        assert list(dummy_home.glob("settings.json.damaged-*")), "the damaged file must be kept aside"


@pytest.fixture(scope="module")
def home_with_history(tmp_path_factory):
    """A workspace with one finished train job (run folder + adapter), shared by the damage tests."""
    from tests.conftest import DUMMY_PLUGIN

    home = tmp_path_factory.mktemp("history") / "ws"
    (home / "plugins").mkdir(parents=True)
    shutil.copy(DUMMY_PLUGIN, home / "plugins" / "dummy_plugin.py")
    (home / "models" / "dummy" / "base").mkdir(parents=True)
    (home / "models" / "dummy" / "base" / "weights.txt").write_text("w")
    (home / "datasets" / "dummy").mkdir(parents=True)
    (home / "datasets" / "dummy" / "data.txt").write_text("a\nb\n")
    svc = Services(home)
    try:
        job_id = svc.submitter.start_train(_train_request("kept", steps=2, delay=0))
        assert svc.jobs.wait(job_id, timeout=60, poll=0.1)["status"] == "completed"
    finally:
        svc.close()
    return home, job_id


def _damage(db: Path, how: str) -> None:
    data = db.read_bytes()
    for side in (Path(str(db) + "-wal"), Path(str(db) + "-shm")):
        side.unlink(missing_ok=True)
    if how == "random":
        db.write_bytes(os.urandom(len(data)))
    elif how == "truncated":
        db.write_bytes(data[: len(data) // 3])
    elif how == "empty":
        db.write_bytes(b"")
    elif how == "page":
        page = 4096
        db.write_bytes(data[:page] + os.urandom(page) + data[2 * page :])


@pytest.mark.parametrize("how", ["random", "truncated", "empty", "page"])
def test_a_damaged_database_is_moved_aside_and_the_history_rebuilt(home_with_history, tmp_path, how):
    source, job_id = home_with_history
    home = tmp_path / "ws"
    shutil.copytree(source, home)
    db = home / "artifacts" / "lora_factory.sqlite3"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    _damage(db, how)
    with TestClient(create_app(home, start_scheduler=False), raise_server_exceptions=False) as c:
        jobs = c.get("/api/jobs").json()["jobs"]
        assert [j["id"] for j in jobs] == [job_id] and jobs[0]["status"] == "completed"
        adapters = c.get("/api/adapters", params={"modality": "dummy"}).json()["adapters"]
        assert [a["name"] for a in adapters] == ["kept"] and adapters[0]["job_id"] == job_id
        notices = c.get("/api/health").json()["notices"]
        assert notices and notices[0]["code"] == "DATABASE_RECOVERED"
        assert c.post(f"/api/jobs/{job_id}/rerun").status_code == 200
    assert list((home / "artifacts").glob("lora_factory.sqlite3.damaged-*")), "the damaged file must be kept"
    assert "rebuilt" in (home / "logs" / "recovery.log").read_text()


def test_a_damaged_job_row_or_config_does_not_break_the_list_or_a_rerun(client, dummy_home):
    svc = client.app.state.services
    good = svc.jobs.submit("train", "dummy", {"params": {"steps": 1}}, output_name="good")
    bad = svc.jobs.submit("train", "dummy", {"params": {"steps": 1}}, output_name="bad")
    svc.store._conn.execute("UPDATE jobs SET spec = '{broken', status = 'failed' WHERE id = ?", (bad,))
    (dummy_home / "runs" / good / "config.json").write_text("{broken")
    jobs = {j["id"]: j for j in client.get("/api/jobs").json()["jobs"]}
    assert set(jobs) == {good, bad} and jobs[bad]["damaged"] == ["spec"] and not jobs[good]["damaged"]
    assert client.get(f"/api/jobs/{bad}").status_code == 200
    assert client.post(f"/api/jobs/{good}/rerun").status_code == 200, "the row's spec stands in for config.json"
    (dummy_home / "runs" / bad / "config.json").write_text("{broken")
    assert_error(client.post(f"/api/jobs/{bad}/rerun"), 409, "JOB_DAMAGED")


# -- item 9: smaller ones ----------------------------------------------------------------------
def test_an_upload_error_names_the_refused_name(client):
    r = client.post("/api/datasets/upload", data={"modality": "dummy", "name": "mine.exe"},
                    files={"file": ("data2.txt", b"a\n")})
    err = assert_error(r, 415, "DATASET_UNSUPPORTED_FORMAT")
    assert "mine.exe" in err["message"] and "mine.exe" in err["message_ja"]


def test_a_dataset_index_with_nothing_to_import_says_so(client, dummy_home):
    (dummy_home / "datasets" / "index.json").write_text(json.dumps({"files": []}))
    r = client.post("/api/datasets/import_info", json={"modality": "dummy", "dataset_info_path": "datasets/index.json"})
    assert_error(r, 422, "DATASET_INDEX_NOTHING_IMPORTED")


def test_a_cancel_during_a_slow_load_stops_the_job_at_once(dummy_home):
    svc = Services(dummy_home)
    try:
        job_id = svc.submitter.start_train(_train_request("slow", steps=2, delay=0, load_delay=60))
        deadline = time.monotonic() + 30
        while not svc.store.get(job_id)["pid"] and time.monotonic() < deadline:
            svc.jobs.tick()
            time.sleep(0.05)
        time.sleep(0.5)  # the worker is in its "model load"
        svc.jobs.cancel(job_id)
        job = svc.jobs.wait(job_id, timeout=8, poll=0.1)  # the grace period is 15 s
        assert job["status"] == "canceled", job
        assert job["error"]["code"] == "CANCELED_WHILE_LOADING"
    finally:
        svc.close()
