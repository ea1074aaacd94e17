"""Stopping a process tree never signals the caller's own process group."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO


@pytest.mark.skipif(sys.platform.startswith("win"), reason="process groups are POSIX")
def test_kill_tree_of_a_child_in_the_callers_group_spares_the_caller():
    """The inference worker runs in the server's (or pytest's) group; when it does not stop within its
    grace period, ``kill_tree`` used to signal that whole group, stopping the caller with it."""
    script = textwrap.dedent("""
        import os, subprocess, sys
        from lora_factory.core import process
        os.setpgrp()  # a group of our own, so a wrong signal cannot reach the test runner
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        assert os.getpgid(child.pid) == os.getpgrp()
        process.kill_tree(child.pid, grace=5)
        assert child.wait(5) is not None
        print("caller survived")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 0 and "caller survived" in out.stdout, (out.returncode, out.stderr)
