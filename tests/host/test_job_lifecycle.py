"""The whole job lifecycle through a real ``lora-factory serve`` and a drop-in test plugin."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import wait_for


def start_dummy(client, name="ad1", **params):
    r = client.post("/train/start", json={"base_model": "models/dummy/base", "dataset": "datasets/dummy/data.txt",
                                          "output_name": name, "preset": "fast", "modality": "dummy",
                                          "params": params})
    assert r.status_code == 200, r.text
    return r.json()["job_id"]


def test_hook_train_job_completes_with_progress(dummy_home, server_factory):
    server = server_factory(dummy_home)
    with server.client() as c:
        job_id = start_dummy(c, steps=6, delay=0.02)
        assert len(job_id.split("_")) == 3 and len(job_id.split("_")[2]) == 4
        job = wait_for(c, job_id, ("completed", "failed"))
        assert job["status"] == "completed", job
        assert job["step"] == 6 and job["max_steps"] == 6
        assert abs(job["loss"] - 1 / 6) < 1e-6
        assert Path(job["log_file"]).name == f"train_{job_id}.log"
        metrics = [json.loads(x) for x in (dummy_home / "runs" / job_id / "metrics.jsonl").read_text().splitlines()]
        assert [m["step"] for m in metrics] == [1, 2, 3, 4, 5, 6]
        assert all("eta" in m and "elapsed" in m and "lr" in m for m in metrics)
        config = json.loads((dummy_home / "runs" / job_id / "config.json").read_text())
        assert config["spec"]["params"] == {"steps": 6, "delay": 0.02}
        adapter = dummy_home / "lora_adapters" / "dummy" / "ad1"
        assert json.loads((adapter / "adapter.json").read_text())["steps_done"] == 6
        # registered with its lineage: adapter <- base model + dataset
        info = c.get("/api/adapters/dummy/ad1").json()
        roles = {p["role"]: p["artifact"]["path"] for p in info["lineage"]["parents"]}
        assert roles == {"base_model": "models/dummy/base", "dataset": "datasets/dummy/data.txt"}
        assert info["job_id"] == job_id
        # the same output name again is refused, not overwritten
        r = c.post("/train/start", json={"base_model": "base", "dataset": "data.txt", "output_name": "ad1",
                                         "modality": "dummy", "preset": "fast"})
        assert r.status_code == 409 and r.json()["error"]["code"] == "OUTPUT_EXISTS"
        # re-run from config.json gets a versioned name
        rerun = c.post(f"/api/jobs/{job_id}/rerun").json()["job_id"]
        assert wait_for(c, rerun, ("completed", "failed"))["output_name"] == "ad1-v2"
        events = c.get(f"/api/jobs/{job_id}/events").text
        assert "event: progress" in events and "event: status" in events and "event: log" in events


def test_cancel_running_job_stops_within_grace(dummy_home, server_factory):
    server = server_factory(dummy_home)
    with server.client() as c:
        job_id = start_dummy(c, steps=500, delay=0.05)
        job = wait_for(c, job_id, ("running",))
        while c.get(f"/train/status/{job_id}").json()["step"] < 2:
            time.sleep(0.05)
        pid = c.get(f"/train/status/{job_id}").json()
        assert c.post(f"/train/cancel/{job_id}").json()["ok"] is True
        job = wait_for(c, job_id, ("canceled", "completed", "failed"), timeout=15)
        assert job["status"] == "canceled"
        assert job["step"] < 500
        # the worker writes its final state, then exits: it must be gone well within the grace period
        assert_process_gone(_worker_pid(dummy_home, job_id), within=5)
        # the partial adapter was saved
        assert (dummy_home / "lora_adapters" / "dummy" / "ad1" / "adapter.json").exists()
        assert pid["status"] in ("running", "canceled")
        r = c.post(f"/train/cancel/{job_id}")
        assert r.status_code == 409 and r.json()["error"]["code"] == "JOB_NOT_RUNNING"


def assert_process_gone(pid: int, within: float) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        assert time.monotonic() < deadline, f"process {pid} still alive after {within} s"
        time.sleep(0.05)


def _worker_pid(home: Path, job_id: str, within: float = 30) -> int:
    """The worker's pid from its first log line (a loaded machine may take seconds to start it)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for line in (home / "logs" / f"train_{job_id}.log").read_text().splitlines():
            if "worker started (pid" in line:
                return int(line.split("(pid ")[1].split(")")[0])
        time.sleep(0.1)
    raise AssertionError("no worker pid in the log")


def test_cancel_kills_a_worker_that_ignores_it(dummy_home, server_factory):
    server = server_factory(dummy_home, LORA_FACTORY_CANCEL_GRACE="1")
    with server.client() as c:
        job_id = start_dummy(c, steps=1000, delay=0.05, ignore_cancel=True)
        wait_for(c, job_id, ("running",))
        time.sleep(0.5)
        worker_pid = _worker_pid(dummy_home, job_id)
        c.post(f"/train/cancel/{job_id}")
        job = wait_for(c, job_id, ("canceled", "failed", "completed"), timeout=15)
        assert job["status"] == "canceled"
        assert job["error"]["code"] == "CANCELED_KILLED"
        assert_process_gone(worker_pid, within=5)


def test_crashing_worker_fails_with_reason_and_keeps_log(dummy_home, server_factory):
    server = server_factory(dummy_home)
    with server.client() as c:
        job_id = start_dummy(c, steps=10, delay=0.01, crash_at=4)
        job = wait_for(c, job_id, ("failed", "completed"))
        assert job["status"] == "failed"
        assert job["error"]["code"] == "WORKER_CRASHED" and "3" in job["error"]["message"]
        assert job["error"]["message_ja"]
        log = Path(job["log_file"]).read_text()
        assert "crashing on purpose" in log
        assert (dummy_home / "runs" / job_id / "checkpoints" / "checkpoint-2").is_dir()  # partial checkpoint kept
        # a failed train can be resumed from its last checkpoint (the crash is not repeated: no crash_at then)
        tail = c.get(f"/api/jobs/{job_id}/log", params={"tail": 5}).json()
        assert tail["lines"]


def test_server_killed_mid_job_reattaches(dummy_home, server_factory):
    server = server_factory(dummy_home)
    c = server.client()
    job_id = start_dummy(c, steps=40, delay=0.05)
    wait_for(c, job_id, ("running",))
    c.close()
    server.kill()  # the server dies; the detached worker goes on
    time.sleep(0.3)
    server2 = server_factory(dummy_home)
    with server2.client() as c2:
        job = c2.get(f"/train/status/{job_id}").json()
        assert job["status"] in ("running", "completed")
        job = wait_for(c2, job_id, ("completed", "failed", "interrupted"))
        assert job["status"] == "completed" and job["step"] == 40


def test_server_and_worker_gone_then_interrupted_and_resumable(dummy_home, server_factory):
    server = server_factory(dummy_home)
    c = server.client()
    job_id = start_dummy(c, steps=30, delay=0.05)
    wait_for(c, job_id, ("running",))
    while c.get(f"/train/status/{job_id}").json()["step"] < 5:
        time.sleep(0.05)
    c.close()
    server.kill()
    worker_pid = _worker_pid(dummy_home, job_id)
    psutil.Process(worker_pid).kill()  # the machine "stopped" (SIGKILL / TerminateProcess)
    time.sleep(0.3)
    server2 = server_factory(dummy_home)
    with server2.client() as c2:
        job = c2.get(f"/train/status/{job_id}").json()
        assert job["status"] == "interrupted"
        assert job["error"]["code"] == "JOB_INTERRUPTED"
        assert c2.post(f"/api/jobs/{job_id}/resume").json()["job_id"] == job_id
        job = wait_for(c2, job_id, ("completed", "failed"))
        assert job["status"] == "completed", job
        assert job["result"]["start_step"] >= 4  # continued from its checkpoint, not from zero
        assert job["attempts"] == 2


@pytest.mark.skipif(os.name == "nt", reason="POSIX process check")
def test_queue_runs_one_gpu_job_at_a_time(dummy_home, server_factory):
    server = server_factory(dummy_home)
    with server.client() as c:
        first = start_dummy(c, "q1", steps=20, delay=0.05)
        second = start_dummy(c, "q2", steps=2, delay=0.01)
        wait_for(c, first, ("running",))
        job2 = c.get(f"/train/status/{second}").json()
        assert job2["status"] == "queued" and job2["queue_position"] == 1
        assert wait_for(c, second, ("completed",))["status"] == "completed"
        first_job = c.get(f"/train/status/{first}").json()
        assert first_job["status"] == "completed"


@pytest.mark.skipif(os.name == "nt", reason="SIGINT to a console process group is POSIX here")
def test_ctrl_c_stops_the_server_with_a_job_followed_and_the_job_goes_on(dummy_home, server_factory):
    """A regression: an open job event stream (the UI following a job) kept Ctrl+C from stopping the server."""
    import threading

    server = server_factory(dummy_home)
    with server.client() as c:
        job_id = start_dummy(c, steps=200, delay=0.05)
        wait_for(c, job_id, ("running",))

    def follow() -> None:
        try:
            with server.client() as follower, follower.stream("GET", f"/api/jobs/{job_id}/events") as r:
                for _ in r.iter_lines():
                    pass
        except Exception:
            pass

    threading.Thread(target=follow, daemon=True).start()
    time.sleep(1.0)
    server.proc.send_signal(signal.SIGINT)
    server.proc.wait(timeout=10)  # stops within seconds, not when the job ends
    worker_pid = _worker_pid(dummy_home, job_id)
    assert psutil.pid_exists(worker_pid), "the job's worker must survive the server"
    server2 = server_factory(dummy_home)
    with server2.client() as c2:
        assert c2.get(f"/train/status/{job_id}").json()["status"] == "running"
        c2.post(f"/train/cancel/{job_id}")
        assert wait_for(c2, job_id, ("canceled",))["status"] == "canceled"
