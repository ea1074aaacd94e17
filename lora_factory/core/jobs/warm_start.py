"""Warm start: job workers forked from a process that has already imported the heavy libraries (Linux).

A spawned worker imports torch, transformers, peft (or diffusers) before it does anything: about 10 s
on a 2-core machine, every job. The server keeps one warm process (``core.jobs.zygote``) that imports
what a modality's jobs need (its ``worker_modules``) the first time such a job starts, and forks the
following workers from it: the first job of a modality starts as before, the next ones at once.

When it is used (``LORA_FACTORY_WARM_START``: ``auto`` by default, ``on``, ``off``): on Linux only (fork);
with ``auto``, only on a machine without a GPU device, because CUDA must never have been initialised
before a fork, and that has not been verified on a GPU yet (``on`` opts in there; the warm process still
refuses every job once torch has initialised CUDA in it). Windows and macOS always spawn.

Whatever goes wrong here costs the speed only: a refusal, a warm process that died, a changed
environment (devices, settings) all end in the ordinary spawn (``JobManager._spawn``), and the job
runs as it would have.
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from lora_factory.core import process
from lora_factory.core.jobs.zygote import EXIT_FILE

ENV_WARM_START = "LORA_FACTORY_WARM_START"
WARM_KINDS = ("train", "eval", "merge", "export")  # the kinds whose workers import the modality's libraries
DOWNLOADS_WITH_THE_LIBRARIES = ("tiny", "single_file")  # download sources whose worker builds or converts a model


def imports_modality_libraries(kind: str, spec: dict[str, Any], *, gpu: bool = False,
                               model_operations: frozenset[str] | set[str] = frozenset()) -> bool:
    """Whether a job's worker imports its modality's libraries (so the warm process imports them first).

    The kinds in ``WARM_KINDS`` do. A download does when it builds the offline demo model (``source``
    ``tiny``: ``lora-factory tiny-model``, the UI's demo button), which is made with torch and the model
    library, or when it converts an imported single-file checkpoint (``source`` ``single_file``: an A1111 /
    ComfyUI ``.safetensors`` made a diffusers folder by the model library); a real download only fetches
    files and does not wait for those imports. A refine does when it loads a model: a GPU-bound one
    (``gpu``: Evol-Instruct with a local model, transcription), or one with an operation its plugin lists
    as ``uses_model`` (``model_operations``: the image tagger and captioner); cleaning and deduplication
    do not. Such a refine, and the training after it, then share one import instead of paying one each.

    A job with an ``executor`` (a training on a Ray cluster, ``core.jobs.cluster``) does not: its worker here
    only drives the cluster (Ray, the relay, the publication), and the ranks import the libraries on the
    nodes; importing them here too cost this machine a warm process of torch and the model library (about
    10 s of CPU and 1 GB of memory) for nothing.
    """
    if spec.get("executor"):
        return False
    if kind in WARM_KINDS:
        return True
    if kind == "download":
        return spec.get("source") in DOWNLOADS_WITH_THE_LIBRARIES
    if kind == "refine":
        return gpu or any(isinstance(op, dict) and op.get("op") in model_operations
                          for op in spec.get("operations") or [])
    return False


# variables a worker reads only once it runs (which devices it was given, how to print, where torch's compiler
# caches: torch writes TORCHINDUCTOR_CACHE_DIR into the environment of a process that first asks for it, e.g.
# a plugin's conformance run with the services in its own process): set per fork; any other difference from
# the warm process's environment (read by libraries at import) needs a fresh one
PER_FORK_KEYS = frozenset({"LORA_FACTORY_JOB_DEVICES", "LORA_FACTORY_INFERENCE_DEVICE", "CUDA_VISIBLE_DEVICES",
                           "CUDA_DEVICE_ORDER", "PYTHONIOENCODING", "TORCHINDUCTOR_CACHE_DIR"})


def import_environment(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in PER_FORK_KEYS}


def warm_start_wanted(has_gpu: Callable[[], bool], env: dict[str, str] | None = None) -> bool:
    """Whether this server forks its job workers (see the module's docstring)."""
    mode = ((os.environ if env is None else env).get(ENV_WARM_START) or "auto").strip().lower()
    if mode in ("off", "0", "false", "no") or not sys.platform.startswith("linux"):
        return False
    if mode in ("on", "1", "true", "yes"):
        return True
    return not has_gpu()


def gpu_device_nodes() -> bool:
    """A GPU that CUDA or ROCm could initialise (its device nodes), whatever nvidia-smi says."""
    dev = Path("/dev")
    return any(dev.glob("nvidia[0-9]*")) or (dev / "kfd").exists()


class WarmStarter:
    """The server's side of the warm process: hands it jobs, records their pids, falls back to spawn.

    :param on_pid: records a forked worker's pid and start time in its job row.
    :param fallback: ``fallback(job_id, why)`` starts a job the ordinary way (called without this object's
        lock held).
    """

    def __init__(self, home: Path, on_pid: Callable[[str, int, float | None], None],
                 fallback: Callable[[str, str], None]) -> None:
        self.home = Path(home)
        self.on_pid = on_pid
        self.fallback = fallback
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._env: dict[str, str] | None = None
        self._pending: dict[str, subprocess.Popen[str]] = {}  # job id -> the warm process asked for it
        self._answers: dict[str, _Answer] = {}  # inference forks wait for their answer here
        self._tokens = itertools.count(1)
        self.forked: set[str] = set()  # jobs whose worker was forked (their exit code is in a file)

    def start(self, job_id: str, log: Path, env: dict[str, str], preload: list[str]) -> bool:
        """Ask the warm process for ``job_id``'s worker; False: start it the ordinary way now."""
        return self._ask({"job_id": job_id, "target": "job", "env": env, "log": str(log), "cwd": str(self.home),
                          "preload": list(preload)}) is not None

    def fork_inference(self, env: dict[str, str], log: Path, preload: list[str],
                       timeout: float = 300.0) -> ForkedProcess | None:
        """The inference worker, forked, talking over two named pipes; None: spawn it the ordinary way."""
        folder = Path(tempfile.mkdtemp(prefix="lora-factory-infer-"))
        try:
            requests, answers = folder / "requests", folder / "answers"
            os.mkfifo(requests, 0o600)
            os.mkfifo(answers, 0o600)
            read_fd = os.open(answers, os.O_RDONLY | os.O_NONBLOCK)  # before the fork: its open never waits
            token = f"inference-{next(self._tokens)}"
            answer = self._answers[token] = _Answer()
            try:
                asked = self._ask({"job_id": token, "target": "inference", "env": env, "log": str(log),
                                   "cwd": str(self.home), "preload": list(preload), "stdin": str(requests),
                                   "stdout": str(answers)})
                pid = answer.pid(timeout) if asked is not None else None
            finally:
                self._answers.pop(token, None)
            if pid is None:
                os.close(read_fd)
                return None
            write_fd = _open_when_read(requests, pid, timeout=60.0)
            if write_fd is None:
                os.close(read_fd)
                process.kill_tree(pid, grace=1.0)
                return None
            for fd in (read_fd, write_fd):
                os.set_blocking(fd, True)
            return ForkedProcess(pid, open(write_fd, "w", encoding="utf-8", buffering=1),  # noqa: SIM115
                                 open(read_fd, encoding="utf-8"))  # noqa: SIM115
        except OSError:
            return None
        finally:
            shutil.rmtree(folder, ignore_errors=True)  # both ends are open (or given up): the names can go

    def _ask(self, request: dict[str, Any]) -> subprocess.Popen[str] | None:
        """Send one request to the warm process (a fresh one when there is none or its import-time
        environment differs); None when it could not be asked."""
        env = request["env"]
        with self._lock:
            if self._proc is not None and (self._proc.poll() is not None
                                           or self._env != import_environment(env)):
                self._stop_locked(wait=False)  # gone, or started with other variables: a fresh one
            if self._proc is None:
                try:
                    self._launch_locked(env)
                except OSError:
                    return None
            proc = self._proc
            assert proc is not None and proc.stdin is not None
            self._pending[request["job_id"]] = proc
            try:
                proc.stdin.write(json.dumps(request) + "\n")
                proc.stdin.flush()
            except (OSError, ValueError):
                del self._pending[request["job_id"]]
                self._stop_locked(wait=False)
                return None
            return proc

    def pending(self, job_id: str) -> bool:
        """Handed to the warm process, which has not answered yet (it may still be importing)."""
        with self._lock:
            return job_id in self._pending

    def exit_code(self, job_id: str) -> tuple[bool, int | None]:
        """(known, code) of a forked worker that ended: the warm process writes it when it reaps the worker."""
        try:
            data = json.loads((self.home / "runs" / job_id / EXIT_FILE).read_text(encoding="utf-8"))
            return True, int(data["exit_code"])
        except (OSError, ValueError, KeyError, TypeError):
            return False, None

    def close(self) -> None:
        with self._lock:
            self._stop_locked()

    # -- inside ------------------------------------------------------------------------------------
    def _launch_locked(self, env: dict[str, str]) -> None:
        log_path = self.home / "logs" / "warm_start.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "a", encoding="utf-8")  # noqa: SIM115 - handed to the child, closed after the start
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "lora_factory.core.jobs.zygote", "--home", str(self.home)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, encoding="utf-8", bufsize=1,
                env=env, cwd=str(self.home), start_new_session=True, close_fds=True)
        finally:
            log.close()
        self._proc, self._env = proc, import_environment(env)
        assert proc.stdout is not None
        threading.Thread(target=self._read_answers, args=(proc, proc.stdout), name="lora-factory-warm-start",
                         daemon=True).start()

    def _stop_locked(self, wait: bool = True) -> None:
        """Close the warm process's input: it answers what it was asked, then ends; its workers go on."""
        proc, self._proc, self._env = self._proc, None, None
        if proc is None:
            return
        try:
            if proc.stdin:
                proc.stdin.close()
        except OSError:
            pass
        if not wait:
            return
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill_tree(proc.pid, grace=1.0)

    def _read_answers(self, proc: subprocess.Popen[str], answers: TextIO) -> None:
        """The warm process's answers until it ends; whatever it never answered is then spawned."""
        for line in answers:
            try:
                answer = json.loads(line)
                job_id = str(answer["job_id"])
            except (ValueError, KeyError, TypeError):
                continue
            with self._lock:
                known = self._pending.pop(job_id, None) is proc
                if answer.get("refused") and self._proc is proc:
                    self._stop_locked(wait=False)  # the next job gets a fresh warm process
            if not known:
                continue
            waiter = self._answers.pop(job_id, None)
            if waiter is not None:  # an inference fork: its caller waits for this answer
                waiter.give(answer)
                continue
            if answer.get("pid"):
                self.forked.add(job_id)
                self.on_pid(job_id, int(answer["pid"]), answer.get("create_time"))
            else:
                self.fallback(job_id, str(answer.get("refused")))
        proc.wait()
        with self._lock:
            orphans = [job_id for job_id, asked in self._pending.items() if asked is proc]
            for job_id in orphans:
                del self._pending[job_id]
            if self._proc is proc:
                self._proc, self._env = None, None
        for job_id in orphans:
            waiter = self._answers.pop(job_id, None)
            if waiter is not None:
                waiter.give({})
                continue
            self.fallback(job_id, f"the warm process ended (exit code {proc.returncode}); see logs/warm_start.log")


class _Answer:
    """The warm process's answer to one inference fork, handed from its reader thread to the caller."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._answer: dict[str, Any] = {}

    def give(self, answer: dict[str, Any]) -> None:
        self._answer = answer
        self._event.set()

    def pid(self, timeout: float) -> int | None:
        """The forked worker's pid; None when it was refused, the warm process ended, or no answer came in time."""
        if not self._event.wait(timeout) or not self._answer.get("pid"):
            return None
        return int(self._answer["pid"])


def _open_when_read(path: Path, pid: int, timeout: float) -> int | None:
    """The write end of ``path``, once the forked worker has opened it for reading (None if it died first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # ENXIO: no reader yet
                raise
        if not process.is_alive(pid):
            return None
        time.sleep(0.01)
    return None


class ForkedProcess:
    """What the inference client needs of a ``subprocess.Popen`` for a worker the warm process forked
    (not this process's child: it is watched through its pid)."""

    def __init__(self, pid: int, stdin: TextIO, stdout: TextIO) -> None:
        self.pid, self.stdin, self.stdout = pid, stdin, stdout
        self.returncode: int | None = None
        self._started = process.create_time(pid)

    def poll(self) -> int | None:
        if self.returncode is None and not process.is_alive(self.pid, self._started):
            self.returncode = 0  # its exit code belongs to the warm process, which reaps it
            self._close_streams()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not process.wait_gone(self.pid, timeout if timeout is not None else 1e9):
            raise subprocess.TimeoutExpired(f"inference worker {self.pid}", timeout or 0)
        return self.poll() or 0

    def _close_streams(self) -> None:
        for stream in (self.stdin, self.stdout):
            try:
                stream.close()
            except (OSError, ValueError):
                pass
