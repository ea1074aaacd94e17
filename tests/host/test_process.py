"""Ending a process tree never signals the caller's own process group."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from lora_factory.core import process


@pytest.mark.skipif(process.IS_WINDOWS, reason="process groups are POSIX")
def test_kill_tree_of_a_child_in_our_group_ends_the_child_only():
    """A regression: the inference worker shares the server's process group, and closing it when it did not
    exit in time sent SIGTERM to that whole group: the server (and the test runner that started it)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    assert os.getpgid(child.pid) == os.getpgid(0)
    process.kill_tree(child.pid, grace=2)  # before the fix, this terminated pytest itself
    assert child.wait(5) is not None


@pytest.mark.skipif(process.IS_WINDOWS, reason="process groups are POSIX")
def test_kill_tree_of_a_detached_worker_takes_its_group(tmp_path):
    code = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)"
    worker = process.spawn_detached([sys.executable, "-c", code], tmp_path / "w.log")
    deadline = time.monotonic() + 10
    while not psutil.Process(worker.pid).children() and time.monotonic() < deadline:
        time.sleep(0.05)
    grandchild = psutil.Process(worker.pid).children()[0]
    process.kill_tree(worker.pid, grace=2)
    assert worker.wait(5) is not None
    assert not grandchild.is_running() or grandchild.status() == psutil.STATUS_ZOMBIE


def test_a_test_server_whose_port_was_taken_starts_on_another_and_never_answers_for_the_other(tmp_path, server_factory):
    """A CI run: the port chosen for a test's server was taken by another worker's server before it bound,
    and the test talked to that other server (other plugins: 'Modality dummy is not available')."""
    from tests.conftest import ServerProcess, make_dummy_home

    first = server_factory(make_dummy_home(tmp_path / "first"))
    second = ServerProcess(make_dummy_home(tmp_path / "second"))
    second.port, second.url = first.port, first.url  # the race, made certain
    try:
        second.start()
        assert second.port != first.port
        with second.client() as c:
            assert Path(c.get("/utils/paths").json()["base"]).resolve() == (tmp_path / "second").resolve()
    finally:
        second.stop()
