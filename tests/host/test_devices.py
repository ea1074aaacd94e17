"""Devices and one queue per device (issue 15 §1): the inventory, a job's request, the scheduler's
placement and queue order, the worker's environment, the chat model's device.

The placement rules are checked on the store directly (no process, exact); one server with two
simulated devices (``LORA_FACTORY_DEVICES=cpu:2``) then shows them end to end with real workers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from lora_factory.core.errors import LoRAFactoryError
from lora_factory.core.jobs import devices as dev
from lora_factory.core.jobs.store import JobStore
from lora_factory.core.storage.db import SCHEMA, connect, init_db
from tests.conftest import wait_for
from tests.host.test_job_lifecycle import start_dummy

POOL = ["cpu:0", "cpu:1"]


# -- the inventory and a request -------------------------------------------------------------------
def test_inventory_from_the_setting(monkeypatch):
    assert dev.device_ids(dev.inventory({"LORA_FACTORY_DEVICES": "cpu:2"})) == POOL
    assert dev.inventory({"LORA_FACTORY_DEVICES": "none"}) == []
    fake = [{"index": i, "name": f"GPU {i}", "vram_total_mb": 8000, "vram_used_mb": 0, "driver": "x"} for i in range(3)]
    monkeypatch.setattr("lora_factory.core.system_info.gpus", lambda timeout=10: fake)
    assert dev.device_ids(dev.inventory({})) == ["0", "1", "2"]
    assert dev.device_ids(dev.inventory({"LORA_FACTORY_DEVICES": "0,2"})) == ["0", "2"]
    with pytest.raises(LoRAFactoryError) as err:
        dev.inventory({"LORA_FACTORY_DEVICES": "cpu:x"})
    assert err.value.code == "DEVICES_SETTING_INVALID"


def test_no_nvidia_smi_means_no_gpu(monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert dev.inventory({}) == []


def test_request_is_checked_against_the_devices_there():
    assert dev.resolve_request(None, 1, POOL) == 1
    assert dev.resolve_request(None, 0, POOL) == 0
    assert dev.resolve_request(None, 1, []) == 0  # no device: runs on the CPU as before
    assert dev.resolve_request([1, "cpu:0", "1"], 1, POOL) == ["cpu:1", "cpu:0"]
    assert dev.resolve_request(["cuda:2", 0], 1, ["0", "1", "2"]) == ["2", "0"]
    assert dev.parse_cli("2") == 2 and dev.parse_cli("0,2") == ["0", "2"] and dev.parse_cli("cuda:1") == ["cuda:1"]
    for bad in (3, -1, ["cpu:2"], [5], True):
        with pytest.raises(LoRAFactoryError) as err:
            dev.resolve_request(bad, 1, POOL)
        assert err.value.http_status == 422 and err.value.detail["available"] == POOL


def test_worker_env_follows_the_contract():
    assert dev.worker_env(["1", "3"], ["0", "1", "2", "3"]) == {
        "LORA_FACTORY_JOB_DEVICES": "1,3", "CUDA_VISIBLE_DEVICES": "1,3", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    assert dev.worker_env(["cpu:1"], POOL)["CUDA_VISIBLE_DEVICES"] == ""
    assert dev.worker_env([], ["0"])["CUDA_VISIBLE_DEVICES"] == ""  # a CPU-only job never touches a GPU
    assert dev.worker_env([], []) == {"LORA_FACTORY_JOB_DEVICES": ""}  # no device known: CUDA's env as it was


# -- placement and queue order, on the store ----------------------------------------------------------
@pytest.fixture
def store(tmp_path):
    s = JobStore(tmp_path / "db.sqlite")
    yield s
    s.close()


def _queue(store, request, gpu=True, kind="train"):
    return store.create(kind, "dummy", {}, None, gpu=gpu, device_request=request)


def _claim(store, avoid=None):
    job = store.claim_next(None, 4, pool=POOL, avoid=avoid)
    return None if job is None else (job["id"], job["devices"])


def _end(store, job_id):
    store.update(job_id, status="completed")


def test_disjoint_devices_and_one_job_per_device(store):
    a, b, c = _queue(store, 1), _queue(store, 1), _queue(store, 1)
    assert _claim(store) == (a, ["cpu:0"])
    assert _claim(store) == (b, ["cpu:1"])
    assert _claim(store) is None  # both devices hold a job: c waits
    _end(store, b)
    assert _claim(store) == (c, ["cpu:1"])


def test_a_later_small_job_does_not_pass_a_waiting_large_one(store):
    """The documented order: a 2-device job waiting for both devices is not overtaken by a 1-device
    job queued after it, even while one device is free; a job needing no device still passes."""
    a = _queue(store, 1)
    big = _queue(store, 2)
    small = _queue(store, 1)
    cpu_only = _queue(store, 0, gpu=False, kind="refine")
    assert _claim(store) == (a, ["cpu:0"])
    assert _claim(store) == (cpu_only, [])
    assert _claim(store) is None  # cpu:1 is free, but big waits for it and small may not take it
    _end(store, a)
    assert _claim(store) == (big, POOL)
    assert _claim(store) is None
    _end(store, big)
    assert _claim(store) == (small, ["cpu:0"])


def test_a_list_request_reserves_only_its_devices(store):
    a = _queue(store, ["cpu:0"])
    waiting = _queue(store, ["cpu:0"])
    other = _queue(store, ["cpu:1"])
    assert _claim(store) == (a, ["cpu:0"])
    assert _claim(store) == (other, ["cpu:1"])  # passes: it needs nothing the waiting job waits for
    assert store.get(waiting)["status"] == "queued"


def test_a_held_back_job_lets_the_next_one_start(store):
    """``can_start`` (the cluster's free resources) holds a job back; the one behind it starts."""
    held, nxt = _queue(store, 1), _queue(store, 1)
    job = store.claim_next(None, 4, pool=POOL, can_start=lambda job_id, spec: job_id != held)
    assert (job["id"], job["devices"]) == (nxt, ["cpu:0"])


def test_the_chat_models_device_is_given_last(store):
    a = _queue(store, 1)
    assert _claim(store, avoid={"cpu:0"}) == (a, ["cpu:1"])


def test_without_devices_the_old_limits_hold(store):
    """No device declared (today's CI, a machine without GPU): one GPU-kind job at a time, on the CPU."""
    a, b = _queue(store, 0), _queue(store, 0)
    assert store.claim_next(None, 4, pool=[])["id"] == a
    assert store.claim_next(None, 4, pool=[]) is None
    assert store.claim_next(2, 4, pool=[])["id"] == b


def test_an_old_workspace_gets_the_device_columns(tmp_path):
    db = tmp_path / "old.sqlite"
    conn = connect(db)
    conn.executescript(SCHEMA.replace(",\n    device_request TEXT,\n    devices TEXT", ""))  # the schema before them
    assert "devices" not in {r["name"] for r in conn.execute("PRAGMA table_info(jobs)")}
    conn.close()
    init_db(db)
    conn = connect(db)
    assert {"device_request", "devices"} <= {r["name"] for r in conn.execute("PRAGMA table_info(jobs)")}
    conn.close()


# -- end to end: a server with two simulated devices ------------------------------------------------
def _refine(client, name, devices):
    r = client.post("/api/datasets/refine", json={"modality": "dummy", "dataset": "data.txt", "output_name": name,
                                                 "operations": [{"op": "upper"}], "devices": devices})
    assert r.status_code == 200, r.text
    return r.json()["job_id"]


def test_two_simulated_devices_end_to_end(dummy_home, server_factory):
    """Two 1-device train jobs overlap; a 2-device job waits for both; a 1-device job queued after it
    does not pass it; 422 names the devices; the System API lists them with what runs there.

    About 12 s on a quiet machine (four workers, the second train job lasting 4 s so the order is
    measurable on the rows' second-resolution times); one server for all of it."""
    server = server_factory(dummy_home, LORA_FACTORY_DEVICES="cpu:2")
    with server.client() as c:
        assert [d["id"] for d in c.get("/api/system").json()["devices"]] == POOL
        r = c.post("/train/start", json={"base_model": "base", "dataset": "data.txt", "output_name": "x",
                                         "modality": "dummy", "devices": 3})
        assert r.status_code == 422 and r.json()["error"]["code"] == "DEVICES_UNAVAILABLE"
        assert "cpu:0, cpu:1" in r.json()["error"]["message"] and "cpu:0, cpu:1" in r.json()["error"]["message_ja"]

        a = start_dummy(c, "a", steps=15, delay=0.1)
        b = start_dummy(c, "b", steps=40, delay=0.1)
        wait_for(c, b, ("running",))
        both = _refine(c, "both", 2)
        after = _refine(c, "after", 1)
        system = c.get("/api/system").json()["devices"]
        assert {d["job"]["id"] for d in system if d["job"]} == {a, b}

        jobs = {j: wait_for(c, j, ("completed", "failed")) for j in (a, b, both, after)}
        assert all(job["status"] == "completed" for job in jobs.values()), jobs
        ja, jb, jboth, jafter = (jobs[j] for j in (a, b, both, after))
        assert sorted(ja["devices"] + jb["devices"]) == POOL
        assert jb["started_at"] < ja["finished_at"]  # they ran at the same time, on disjoint devices
        assert ja["result"]["env_devices"] == ja["devices"][0] and ja["result"]["env_cuda"] == ""
        assert jboth["devices"] == POOL and jboth["started_at"] >= jb["finished_at"]  # waited for both
        assert jafter["started_at"] >= jboth["started_at"]  # did not pass it when a's device came free


def test_the_chat_model_sits_on_a_free_device_and_leaves_it_for_a_job(dummy_home, server_factory):
    """The chat model takes the device no job uses, a job is given the other one first, and a job that
    names the chat's device stops the chat model (its log says so). Starts the inference worker once."""
    server = server_factory(dummy_home, LORA_FACTORY_DEVICES="cpu:2", LORA_FACTORY_RELEASE_INFERENCE="auto")
    with server.client() as c:
        r = c.post("/api/infer/chat", json={"modality": "dummy", "base_model": "base", "stream": False,
                                           "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200, r.text
        assert r.json()["device"] == "cpu:1" and r.json()["cuda"] == ""  # the worker's own environment
        assert [d["id"] for d in c.get("/api/system").json()["devices"] if d["inference"]] == ["cpu:1"]
        first = start_dummy(c, "first", steps=2, delay=0.01)  # takes cpu:0: the chat model stays
        assert wait_for(c, first, ("completed", "failed"))["devices"] == ["cpu:0"]
        assert [d["id"] for d in c.get("/api/system").json()["devices"] if d["inference"]] == ["cpu:1"]
        r = c.post("/train/start", json={"base_model": "base", "dataset": "data.txt", "output_name": "second",
                                         "modality": "dummy", "params": {"steps": 2, "delay": 0.01},
                                         "devices": ["cpu:1"]})
        job = wait_for(c, r.json()["job_id"], ("completed", "failed"))
        assert job["devices"] == ["cpu:1"]
        assert "the chat model was unloaded" in (dummy_home / "logs" / f"train_{job['id']}.log").read_text()
        assert not any(d["inference"] for d in c.get("/api/system").json()["devices"])



FAKE_SMI = """#!/bin/sh
# a stand-in for nvidia-smi: three GPUs, answered in the format the query asks for
echo "0, NVIDIA Fake A, 81559, 10, 550.1"
echo "1, NVIDIA Fake B, 81559, 10, 550.1"
echo "2, NVIDIA Fake C, 40960, 10, 550.1"
"""


@pytest.fixture
def fake_gpus(tmp_path, monkeypatch):
    """Three GPUs as ``nvidia-smi`` reports them (the real probe runs; no GPU is needed)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text(FAKE_SMI)
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("LORA_FACTORY_DEVICES", raising=False)


@pytest.mark.skipif(os.name == "nt", reason="the stand-in nvidia-smi is a shell script")
def test_gpus_from_nvidia_smi(fake_gpus):
    found = dev.inventory()
    assert dev.device_ids(found) == ["0", "1", "2"]
    assert found[2] == {"id": "2", "kind": "cuda", "name": "NVIDIA Fake C", "vram_total_mb": 40960}


@pytest.mark.skipif(os.name == "nt", reason="the stand-in nvidia-smi is a shell script")
def test_cli_devices(dummy_home, fake_gpus):
    """``--devices`` in the CLI: too many is the same 422 error in words; the named GPU is the one the
    worker may see (``CUDA_VISIBLE_DEVICES``), the id the one it is told."""
    base = [sys.executable, "-m", "lora_factory.cli", "train", "--base-model", "base", "--dataset", "data.txt",
            "--modality", "dummy", "--param", "steps=2", "--param", "delay=0.01", "--home", str(dummy_home)]
    out = subprocess.run([*base, "--output-name", "c0", "--devices", "4"], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "DEVICES_UNAVAILABLE" in out.stderr + out.stdout
    assert "0, 1, 2" in out.stderr + out.stdout
    out = subprocess.run([*base, "--output-name", "c1", "--devices", "cuda:2", "--wait"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    job = json.loads(out.stdout)
    assert job["devices"] == ["2"] and job["result"]["env_devices"] == "2" and job["result"]["env_cuda"] == "2"
