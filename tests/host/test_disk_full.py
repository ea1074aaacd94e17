"""A full disk, said as DISK_FULL everywhere; temporaries and uploads do not pile up (issue 16,
items 15-18). A full disk is simulated by raising ``OSError(ENOSPC)`` / SQLite's "disk is full"."""

from __future__ import annotations

import errno
import io
import os
import sqlite3
import time

import pytest
from fastapi.testclient import TestClient

from lora_factory.app import create_app
from lora_factory.core.errors import LoRAFactoryError, is_disk_full
from lora_factory.core.jobs.worker import error_body
from lora_factory.core.services import Services
from lora_factory.core.storage import db as db_module

FULL_PLUGIN = '''
import errno
from lora_factory import hookimpl

@hookimpl
def describe_modalities():
    return [{"id": "full", "label_ja": "満杯", "label_en": "Full", "presets": {"x": {}}, "supports": ["chat"]}]

@hookimpl
def infer(modality, request, session):
    if modality != "full":
        return None
    raise OSError(errno.ENOSPC, "No space left on device")
'''


class SafetensorError(Exception):
    """What safetensors raises when its write meets a full disk (not an OSError)."""


def test_a_librarys_own_error_around_enospc_is_disk_full():
    exc = SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, '
                          'message: "No space left on device" })')
    assert is_disk_full(exc)
    assert error_body(exc)["code"] == "DISK_FULL"
    assert not is_disk_full(SafetensorError("header too large"))


def test_generation_on_a_full_disk_is_disk_full(dummy_home):
    (dummy_home / "plugins" / "full_plugin.py").write_text(FULL_PLUGIN)
    svc = Services(dummy_home)
    try:
        with pytest.raises(LoRAFactoryError) as err:
            svc.inference.complete("full", {"messages": [{"role": "user", "content": "x"}]})
        log = (dummy_home / "logs" / "inference.log").read_text()
    finally:
        svc.close()
    assert "Errno 28" in log, log
    assert err.value.code == "DISK_FULL" and err.value.http_status == 507


def test_a_worker_that_died_writing_on_a_full_disk_is_disk_full(dummy_home):
    svc = Services(dummy_home)
    try:
        job = {"id": "j1", "kind": "train", "modality": "dummy"}
        log = svc.jobs.log_path(job)
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("step 3\nsafetensors_rust.SafetensorError: Error while serializing: IoError(Os { code: 28, "
                       'kind: StorageFull, message: "No space left on device" })\n')
        assert svc.jobs._log_says_disk_full(job)
        log.write_text("step 3\nSegmentation fault\n")
        assert not svc.jobs._log_says_disk_full(job)
    finally:
        svc.close()


def test_a_full_disk_at_start_up_is_disk_full_and_the_database_is_kept(dummy_home, monkeypatch):
    Services(dummy_home).close()
    db_path = dummy_home / "artifacts" / "lora_factory.sqlite3"
    before = db_path.read_bytes()

    def full(*_args, **_kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(db_module.sqlite3, "connect", full)
    with pytest.raises(LoRAFactoryError) as err:
        Services(dummy_home)
    assert err.value.code == "DISK_FULL"
    monkeypatch.undo()
    assert db_path.read_bytes() == before
    assert not [p.name for p in db_path.parent.iterdir() if ".damaged-" in p.name]
    svc = Services(dummy_home)  # the next start uses the same, healthy database
    try:
        assert not svc.health.notices
    finally:
        svc.close()


def test_the_start_up_cleaner_covers_every_place_the_product_writes(dummy_home):
    svc = Services(dummy_home)
    try:
        leftovers = [dummy_home / "runs" / "job1" / "checkpoints" / ".tmp-checkpoint-4" / "adapter.safetensors",
                     dummy_home / "artifacts" / "outputs" / "image" / "2026" / ".img_0001.png.tmp",
                     dummy_home / "artifacts" / "uploads" / ".tmp-abc_clip.wav",
                     # the plugins' caches (text tokens, a voice's codec codes) and an export's merge folder
                     dummy_home / "datasets" / "text" / ".cache" / "tokens" / ".tmp-k1-1234abcd" / "input_ids.npy",
                     dummy_home / "datasets" / "audio" / "voice" / ".cache" / ".tmp-77-codes-0123.npz",
                     dummy_home / "runs" / "job2" / ".tmp-ct2-x1y2" / "merged" / "model.safetensors"]
        kept = [dummy_home / "runs" / "job1" / "checkpoints" / "checkpoint-2" / "state.json",
                dummy_home / "artifacts" / "outputs" / "image" / "2026" / "img_0000.png",
                dummy_home / "datasets" / "text" / ".cache" / "tokens" / "k1" / "meta.json",
                dummy_home / "datasets" / "audio" / "voice" / ".cache" / "codes-0123.npz",
                dummy_home / "datasets" / "audio" / "voice" / ".mine.tmp"]  # a user's file: not ours to remove
        for path in leftovers + kept:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x")
        svc.startup_housekeeping({})
        assert not (dummy_home / "runs" / "job1" / "checkpoints" / ".tmp-checkpoint-4").exists()
        assert not any(p.exists() for p in leftovers), [p for p in leftovers if p.exists()]
        assert all(p.exists() for p in kept)
    finally:
        svc.close()


def test_a_transcriptions_upload_is_deleted_after_the_call(dummy_home):
    with TestClient(create_app(dummy_home, start_scheduler=False), raise_server_exceptions=False) as c:
        r = c.post("/v1/audio/transcriptions", data={"model": "no-such-whisper"},
                   files={"file": ("clip.wav", io.BytesIO(b"RIFF...."), "audio/wav")})
        assert r.status_code == 404, r.text
        uploads = dummy_home / "artifacts" / "uploads"
        assert not [p for p in uploads.iterdir()] if uploads.exists() else True


def test_uploads_are_kept_a_bounded_time_and_size(dummy_home):
    svc = Services(dummy_home)
    try:
        old = svc.media.save_upload("old.png", io.BytesIO(b"o" * 10))
        new = svc.media.save_upload("new.png", io.BytesIO(b"n" * 10))
        past = time.time() - 3 * 24 * 3600
        os.utime(svc.media.uploads_dir / old["upload"], (past, past))
        assert svc.media.prune_uploads(max_age_s=24 * 3600) == [old["upload"]]
        big = svc.media.save_upload("big.png", io.BytesIO(b"b" * 100))
        assert svc.media.prune_uploads(max_total_bytes=105) == [new["upload"]]  # oldest first past the budget
        assert (svc.media.uploads_dir / big["upload"]).exists()
    finally:
        svc.close()


def test_a_checkpoint_write_on_a_full_disk_is_disk_full():
    assert error_body(OSError(errno.ENOSPC, "No space left on device"))["code"] == "DISK_FULL"


def test_the_routes_added_since_say_disk_full_too(dummy_home, monkeypatch):
    """Issue 16, item 15 for the in-server writes that came later (the voice's user dictionary, a
    preference choice): ENOSPC is a 507 ``DISK_FULL``, never a 500, and nothing is half-written."""
    import lora_factory.kit.files as files

    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    with TestClient(create_app(dummy_home, start_scheduler=False), raise_server_exceptions=False) as c:
        entry = {"surface": "LoRA", "reading": "ローラ"}
        assert c.put("/api/audio/dictionary", json={"entries": [entry]}).status_code == 200
        monkeypatch.setattr(files, "write_text_atomic", full)
        r = c.put("/api/audio/dictionary", json={"entries": [entry, {"surface": "GPU", "reading": "ジーピーユー"}]})
        assert r.status_code == 507 and r.json()["error"]["code"] == "DISK_FULL", r.text
        assert [e["surface"] for e in c.get("/api/audio/dictionary").json()["entries"]] == ["LoRA"]


def test_temporary_folders_in_the_workspace_carry_the_cleaners_name():
    """Every ``tempfile`` folder or file made inside the workspace (``dir=``) is named ``.tmp-*``, the
    name the start-up cleaner removes: ``lf-ct2-*`` and ``tmpXXXX`` survived a kill and a restart."""
    import ast
    from pathlib import Path

    import lora_factory

    unnamed = []
    for source in Path(lora_factory.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                    "TemporaryDirectory", "mkdtemp", "NamedTemporaryFile", "mkstemp"):
                keywords = {k.arg: k.value for k in node.keywords}
                prefix = keywords.get("prefix")
                if "dir" in keywords and not (isinstance(prefix, ast.Constant) and str(prefix.value).startswith(".tmp-")):
                    unnamed.append(f"{source.name}:{node.lineno}")
    assert not unnamed, unnamed
