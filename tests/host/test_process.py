"""Ending a process tree never signals the caller's own process group."""

from __future__ import annotations

import os
import subprocess
import sys
import time

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
