"""A real Ray cluster on this machine for the cluster tests: ``ray start --head`` with 2 CPUs, once per module.

Started small and fast (no dashboard, an 80 MB object store, no usage stats) in its own session, with
this checkout on the workers' ``PYTHONPATH`` (Ray's workers import ``lora_factory`` as a cluster node
would from its own install), and torn down after: the processes of that session, by id.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, free_port

RAY_MISSING = "Ray is not installed: pip install 'lora-factory[cluster]' (python setup.py --test does)"

# Ray Train's own knobs for a one-machine test cluster, given to the head node and to the servers (Ray Train
# passes them on from the driver, our job worker, to its controller and workers): no preemption watcher and
# no state-actor reconciliation (two more actors, each a Python process importing Ray, for spot-node drains
# and Ray's dashboard, which a laptop cluster has neither of), and the worker group polled every 0.5 s rather
# than 2 s, so a finished or lost rank is seen sooner. Measured: the cluster tests went from 89 to 81 s.
RAY_TRAIN_TEST_ENV = {"RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0", "RAY_TRAIN_ENABLE_STATE_ACTOR_RECONCILIATION": "0",
                      "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5"}


def _session_pids(sid: int) -> list[int]:
    import psutil

    pids = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getsid(proc.pid) == sid:
                pids.append(proc.pid)
        except (OSError, psutil.Error):
            continue
    return pids


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    """The address (``127.0.0.1:PORT``) of a 2-CPU Ray head node, stopped after the module."""
    pytest.importorskip("ray", reason=RAY_MISSING)
    port = free_port()
    temp = Path(tempfile.mkdtemp(prefix="lfray"))  # short: Ray's socket paths must fit in 107 characters
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
               RAY_USAGE_STATS_ENABLED="0", **RAY_TRAIN_TEST_ENV)
    ray_cli = Path(sys.executable).with_name("ray")
    log = open(temp / "ray_start.log", "wb")  # noqa: SIM115
    head = subprocess.Popen(
        [str(ray_cli), "start", "--head", "--block", "--port", str(port), "--node-ip-address", "127.0.0.1",
         "--num-cpus", "2", "--num-gpus", "0", "--include-dashboard=false", "--disable-usage-stats",
         "--object-store-memory", str(80 * 1024 * 1024), "--temp-dir", str(temp)],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        import socket

        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if head.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("ray start failed: " + (temp / "ray_start.log").read_text(errors="replace")) from None
                time.sleep(0.2)
        yield address
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        time.sleep(1.0)
        for pid in _session_pids(head.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            head.wait(10)
        except subprocess.TimeoutExpired:
            pass
        log.close()
        shutil.rmtree(temp, ignore_errors=True)
