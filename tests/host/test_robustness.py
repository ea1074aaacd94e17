"""Regressions found in a code review: races, collisions, damaged files, paths (one finding per test).

Each test states the behaviour the product promises (docs/api.md, ARCHITECTURE.md, docstrings); each
failed on the code as it was reviewed.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from fastapi.testclient import TestClient

from lora_factory.app import create_app
from lora_factory.core.errors import LoRAFactoryError
from lora_factory.core.jobs.store import TERMINAL_STATUSES
from lora_factory.core.services import Services
from lora_factory.core.storage import workspace as workspace_module
from lora_factory.core.storage.workspace import Workspace
from tests.conftest import wait_for

TRAIN = {"base_model": "base", "dataset": "data.txt", "preset": "fast", "modality": "dummy"}


@pytest.fixture
def client(dummy_home):
    with TestClient(create_app(dummy_home, start_scheduler=False), raise_server_exceptions=False) as c:
        yield c


# FINDING 1 (path safety, high): POST /api/jobs/{id}/rerun takes "output_name" without safe_name();
# scheduler.rerun -> free_output_name -> submit, and the worker's finalize renames the output to
# <adapters_dir>/<output_name>, so "../../../x" (or an absolute path) writes outside the workspace.
def test_rerun_output_name_is_checked_like_any_output_name(dummy_home, server_factory):
    server = server_factory(dummy_home)
    with server.client() as c:
        job_id = c.post("/train/start", json=TRAIN | {"output_name": "ad1", "params": {"steps": 1, "delay": 0}}).json()[
            "job_id"]
        assert wait_for(c, job_id, TERMINAL_STATUSES)["status"] == "completed"
        r = c.post(f"/api/jobs/{job_id}/rerun", json={"output_name": "../../../escaped"})
        if r.status_code == 200:  # the bug: accepted; let the job run to show where its output lands
            wait_for(c, r.json()["job_id"], TERMINAL_STATUSES)
        assert not (dummy_home.parent / "escaped").exists(), "a re-run wrote outside the workspace"
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] in ("UNSAFE_PATH", "INVALID_NAME")


# FINDING 2 (job lifecycle, medium): a worker that ends on its own (completed / failed, written by the
# worker itself) is never polled again: _watch only looks at 'running' rows, so its Popen stays in
# JobManager._children forever and the process stays a zombie in the server until the server exits.
@pytest.mark.skipif(sys.platform.startswith("win"), reason="zombies are a POSIX notion")
def test_finished_workers_are_reaped(dummy_home):
    svc = Services(dummy_home)
    try:
        job_id = svc.jobs.submit("train", "dummy", {"params": {"steps": 1, "delay": 0}, "base_model": "x",
                                                    "dataset": "y"}, output_name="reaped")
        job = svc.jobs.wait(job_id, timeout=60, poll=0.1)
        assert job["status"] in TERMINAL_STATUSES
        pid = job["pid"]
        for _ in range(5):
            svc.jobs.tick()
            time.sleep(0.1)
        try:
            status = psutil.Process(pid).status()
        except psutil.NoSuchProcess:
            status = "gone"
        assert status != psutil.STATUS_ZOMBIE, f"worker {pid} left as a zombie"
        assert job_id not in svc.jobs._children
    finally:
        svc.close()


# FINDING 3 (data loss / collisions, medium): move_into_place checks destination.exists() and then
# calls os.replace; if the destination appears in between (another job, a user copying a folder),
# a FILE destination is silently overwritten (os.replace replaces files on every OS) and a non-empty
# FOLDER destination makes os.replace fail, after which shutil.move moves the source INTO it
# (dest/<source name>) and reports success.
def _race_replace(monkeypatch, make_destination):
    """The destination appears right before the move primitive (link for files, rename for folders)."""
    for name in ("replace", "rename", "link"):
        real = getattr(os, name)

        def racing(src, dst, _real=real):
            if not Path(dst).exists():
                make_destination(Path(dst))
            return _real(src, dst)

        monkeypatch.setattr(workspace_module.os, name, racing)


def test_move_into_place_never_overwrites_a_file_that_appeared(tmp_path, monkeypatch):
    ws = Workspace(tmp_path / "ws", ("text",))
    source = tmp_path / "new.jsonl"
    source.write_text("new\n", encoding="utf-8")
    dest = ws.datasets_dir("text") / "data.jsonl"
    _race_replace(monkeypatch, lambda d: d.write_text("precious\n", encoding="utf-8"))
    with pytest.raises(LoRAFactoryError) as err:
        ws.move_into_place(source, dest)
    assert err.value.code == "OUTPUT_EXISTS"
    assert dest.read_text(encoding="utf-8") == "precious\n"


def test_move_into_place_never_nests_into_a_folder_that_appeared(tmp_path, monkeypatch):
    ws = Workspace(tmp_path / "ws", ("text",))
    source = tmp_path / "output"
    source.mkdir()
    (source / "adapter_model.safetensors").write_bytes(b"new")

    def other_writer(d: Path) -> None:
        d.mkdir(parents=True)
        (d / "adapter_model.safetensors").write_bytes(b"other")

    dest = ws.adapters_dir("text") / "my-lora"
    _race_replace(monkeypatch, other_writer)
    with pytest.raises(LoRAFactoryError) as err:
        ws.move_into_place(source, dest)
    assert err.value.code == "OUTPUT_EXISTS"
    assert not (dest / "output").exists(), "the output was moved inside the other folder"


# FINDING 4 (error paths, medium): one hand-edited / truncated training_config.json (an adapter copied
# from elsewhere) or .meta/<dataset>.json turns the WHOLE list into 500 INTERNAL_ERROR
# (catalog.adapter_info / list_datasets call json.loads unguarded). /v1/models breaks with it.
def test_corrupt_training_config_does_not_break_the_adapter_list(client, dummy_home):
    broken = dummy_home / "lora_adapters" / "dummy" / "hand-copied"
    broken.mkdir(parents=True)
    (broken / "training_config.json").write_text('{"base_model": "base",', encoding="utf-8")
    r = client.get("/api/adapters", params={"modality": "dummy"})
    assert r.status_code == 200, r.text
    assert [a["name"] for a in r.json()["adapters"]] == ["hand-copied"]


def test_corrupt_dataset_meta_does_not_break_the_dataset_list(client, dummy_home):
    meta = dummy_home / "datasets" / "dummy" / ".meta"
    meta.mkdir(parents=True, exist_ok=True)
    (meta / "data.txt.json").write_text("{", encoding="utf-8")
    r = client.get("/api/datasets", params={"modality": "dummy"})
    assert r.status_code == 200, r.text


# FINDING 5 (error paths, medium): a model folder that is a symlink (a Windows junction resolves the
# same way) to a folder outside the workspace - the usual way to avoid copying a 15 GB model - makes
# GET /api/models (and /v1/models) answer 500: Workspace.relative() raises ValueError on resolve().
@pytest.mark.skipif(sys.platform.startswith("win"), reason="symlinks need a privilege on Windows")
def test_linked_model_folder_does_not_break_the_model_list(client, dummy_home, tmp_path):
    outside = tmp_path / "big-model"
    outside.mkdir()
    (outside / "weights.txt").write_text("w")
    (dummy_home / "models" / "dummy" / "linked").symlink_to(outside, target_is_directory=True)
    r = client.get("/api/models", params={"modality": "dummy"})
    assert r.status_code == 200, r.text


# FINDING 6 (path safety, low): a multi-part reference is resolved anywhere inside the home, not inside
# <folder>/<modality>/: the job database, a run's secrets.json or the models/<modality> folder itself
# are accepted as a dataset / base model and a job is queued on them.
@pytest.mark.parametrize("field,value", [("dataset", "artifacts/lora_factory.sqlite3"),
                                         ("base_model", "models/dummy"),
                                         ("base_model", "lora_adapters/dummy")])
def test_references_stay_in_their_folder(client, field, value):
    r = client.post("/train/start", json=TRAIN | {"output_name": "o", field: value})
    assert r.status_code in (400, 404), r.text


# FINDING 7 (job lifecycle, low): two simultaneous POST /train/start with the same output_name (a
# double click) are both queued: submit() checks output_name_taken() and inserts the row in two steps
# without a lock, so the second job trains to the end and then fails with OUTPUT_EXISTS.
def test_concurrent_submits_with_one_output_name_queue_one_job(dummy_home):
    svc = Services(dummy_home)
    svc.jobs.tick = lambda: None  # type: ignore[method-assign]  # nothing starts: only submission is under test
    try:
        barrier = threading.Barrier(8)

        def submit(name: str) -> None:
            barrier.wait()
            try:
                svc.jobs.submit("train", "dummy", {}, output_name=name)
            except LoRAFactoryError:
                pass

        for r in range(20):  # a fresh name each round: every round is a new chance for the race
            threads = [threading.Thread(target=submit, args=(f"same{r}",)) for _ in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        names = [j["output_name"] for j in svc.store.by_status("queued")]
        doubled = sorted({n for n in names if names.count(n) > 1})
        assert not doubled, f"several queued jobs write the same output: {doubled}"
    finally:
        svc.close()


# FINDING 8 (resume, medium): a train resumed after a kill during a checkpoint save picks the newest
# checkpoint-N folder even when it is incomplete (transformers writes trainer_state.json last), fails
# with a raw JOB_FAILED (SafetensorError / FileNotFoundError), and every later resume picks the same
# broken folder again: the job can never be resumed without deleting files by hand.
def test_resume_skips_an_incomplete_checkpoint(tmp_path):
    from lora_factory.core.jobs.worker import latest_checkpoint

    ckpts = tmp_path / "checkpoints"
    good = ckpts / "checkpoint-600"
    good.mkdir(parents=True)
    (good / "adapter_model.safetensors").write_bytes(b"x")
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):
        write_torch_like_file(good / name)
    (good / "trainer_state.json").write_text(json.dumps({"global_step": 600}), encoding="utf-8")
    half = ckpts / "checkpoint-800"  # killed while saving: weights half-written, no trainer_state.json
    half.mkdir()
    (half / "adapter_model.safetensors").write_bytes(b"\x00" * 10)
    assert latest_checkpoint(ckpts) == good


def write_torch_like_file(path: Path, cut_at: int | None = None) -> None:
    """What ``torch.save`` writes (a zip of the pickle and the tensor data), optionally cut off after
    ``cut_at`` bytes as a kill in the middle of the write leaves it."""
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02}q\x00." + b"\x00" * 4000)
        archive.writestr("archive/data/0", bytes(range(256)) * 16)
    data = buffer.getvalue()
    path.write_bytes(data if cut_at is None else data[:cut_at])


# FINDING (CI, stop 26): in a 2-rank text job, rank 1 killed while it wrote its rng_state_1.pth left the
# file cut off, beside a trainer_state.json that rank 0 had written without waiting for it. The
# checkpoint looked complete, and the resume failed in torch.load on rank 1 (RANK_FAILED) every time.
def test_resume_skips_a_checkpoint_whose_rank_file_was_cut_off(tmp_path: Path) -> None:
    from lora_factory.core.jobs.checkpoints import is_complete, latest_checkpoint

    ckpts = tmp_path / "checkpoints"
    for step, cut in ((2, None), (4, 1500)):
        folder = ckpts / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        (folder / "adapter_model.safetensors").write_bytes(b"x")
        write_torch_like_file(folder / "optimizer.pt")
        write_torch_like_file(folder / "rng_state_0.pth")
        write_torch_like_file(folder / "rng_state_1.pth", cut_at=cut)
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}), encoding="utf-8")
    assert not is_complete(ckpts / "checkpoint-4")
    assert latest_checkpoint(ckpts) == ckpts / "checkpoint-2"
    # a rank killed before it wrote anything leaves no file: transformers resumes without that RNG state
    (ckpts / "checkpoint-4" / "rng_state_1.pth").unlink()
    assert latest_checkpoint(ckpts) == ckpts / "checkpoint-4"
