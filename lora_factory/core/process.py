"""Starting and stopping detached worker processes, the right way on each OS.

A job's worker runs in its own process group (its own session on POSIX, ``CREATE_NEW_PROCESS_GROUP``
on Windows) so that stopping the server, or a Ctrl+C in its terminal, does not stop training, and so
that a cancel can take the worker's whole tree down (dataloader workers, tokenizer threads ...).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

IS_WINDOWS = sys.platform.startswith("win")


def spawn_detached(args: list[str], log_path: Path, env: dict[str, str] | None = None,
                   cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """Start ``args`` detached from the caller, stdout and stderr appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child, closed right after spawn
    kwargs: dict[str, object] = {}
    if IS_WINDOWS:
        kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW  # type: ignore[attr-defined]
    else:
        kwargs["start_new_session"] = True
    try:
        return subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=env, cwd=str(cwd) if cwd else None, close_fds=True, **kwargs,  # type: ignore[arg-type]
        )
    finally:
        log.close()


def create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def is_alive(pid: int | None, expected_create_time: float | None = None) -> bool:
    """True when ``pid`` runs and is the same process we started (pid reuse is checked)."""
    if not pid:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        if expected_create_time is not None and abs(proc.create_time() - expected_create_time) > 1.0:
            return False
        return True
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def kill_tree(pid: int, grace: float = 3.0) -> None:
    """Terminate a process and all of its descendants; kill whatever is left after ``grace`` s."""
    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    procs = [root] + root.children(recursive=True)
    # the group is signalled only when the process leads its own (a detached job worker): a child that
    # shares its parent's group (the inference worker shares the server's, which may share a terminal's
    # or a test runner's) is ended by its tree alone, never by a signal to everyone in that group
    own_group = not IS_WINDOWS and _leads_group(pid)
    if own_group:
        try:
            os.killpg(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError, OSError):
            pass
    for proc in procs:
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace)
    if own_group:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, OSError):
            pass
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=grace)


def _leads_group(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except (ProcessLookupError, PermissionError, OSError):
        return False


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_alive(pid):
            return True
        time.sleep(0.05)
    return not is_alive(pid)
