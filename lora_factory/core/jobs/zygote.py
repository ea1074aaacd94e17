"""The warm process behind a warm start: ``python -m lora_factory.core.jobs.zygote --home DIR`` (Linux).

Why: a job's worker spends most of its start importing torch, transformers, peft, diffusers (about
10 s a job on a 2-core machine, more than many short jobs spend training). This process imports them
once, the first time a job of a modality asks for them, and then forks one worker per job: the fork
has them already, and runs exactly the code a spawned worker runs (``core.jobs.worker.main``).

The server's inference worker (the chat / generation model process) is forked the same way.

Protocol (one JSON object per line): the server writes ``{"job_id", "target", "env", "log", "cwd",
"preload"}`` (and for ``target`` ``inference`` the paths of two named pipes, ``stdin`` and ``stdout``) on
stdin; this process answers ``{"job_id", "pid", "create_time"}`` once the worker is forked, or
``{"job_id", "refused": reason}`` when it must not fork it (the server then spawns the worker the
ordinary way). It never touches a GPU: it refuses every job once torch has initialised CUDA, and the
server only starts it on a machine without one (``warm_start.warm_start_wanted``).

Each worker leads its own session (a cancel ends its whole tree, a Ctrl+C in the server's terminal
does not reach it), writes to its job's log, gets the environment the server gives it (the variables
read at import are the ones this process started with: the server starts a fresh one when they
change), and a job worker's exit code lands in ``runs/<job_id>/worker_exit.json``, which the scheduler
reads when a worker died without writing its final state. End of stdin (the server stopped) ends
this process; running workers go on, as spawned ones do.
"""

from __future__ import annotations

import argparse
import atexit
import gc
import importlib
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any, NoReturn

from lora_factory.core.errors import LoRAFactoryError
from lora_factory.core.jobs.fork_state import mark_forked_warm, show_as
from lora_factory.core.process import create_time
from lora_factory.core.storage.settings import ENV_BY_FIELD, export_to_environment, load_settings
from lora_factory.core.storage.workspace import write_text_atomic

EXIT_FILE = "worker_exit.json"


def settings_environment(home: Path) -> dict[str, str | None]:
    """What ``export_to_environment`` takes from the settings now (a changed token or mirror makes this
    process stale: libraries imported here read some of these variables once, at import)."""
    try:
        settings = load_settings(home)
    except Exception:  # noqa: BLE001 - a damaged file is the worker's error to report, in words
        return {"damaged": "1"}
    return {env: getattr(settings, field) for field, env in ENV_BY_FIELD.items()}


class Zygote:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.children: dict[int, str] = {}  # pid -> job id, until reaped
        self.settings = settings_environment(home)
        self.preloaded: list[str] = []
        self.failed_imports: dict[str, str] = {}
        self.unsafe: str | None = None  # set for good once a fork is found unsafe (see probe_fork)

    def reap(self, *_: Any) -> None:
        """SIGCHLD: collect every finished worker and keep its exit code beside its run."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            job_id = self.children.pop(pid, None)
            if job_id is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            try:
                write_text_atomic(self.home / "runs" / job_id / EXIT_FILE, json.dumps({"pid": pid, "exit_code": code}))
            except OSError:
                pass

    def preload(self, modules: list[str]) -> None:
        before = len(self.preloaded)
        for name in modules:
            if name in sys.modules or name in self.failed_imports:
                continue
            started = time.monotonic()
            try:
                importlib.import_module(name)
                self.preloaded.append(name)
                print(f"[warm start] {name} imported in {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
            except Exception as exc:  # noqa: BLE001 - the worker imports what it needs itself, and says why
                self.failed_imports[name] = f"{type(exc).__name__}: {exc}"
                print(f"[warm start] could not preload {name}: {exc!r}", file=sys.stderr, flush=True)
        if len(self.preloaded) > before:
            freeze_what_is_loaded()
            if self.unsafe is None:
                self.unsafe = probe_fork()

    def refusal(self) -> str | None:
        """Why this process must not fork a worker now (None: it may)."""
        if self.unsafe:
            return self.unsafe
        if settings_environment(self.home) != self.settings:
            return "settings changed"
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_initialized():
            return "CUDA initialised in the warm process"
        return None

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        job_id = str(request["job_id"])
        self.preload([str(m) for m in request.get("preload") or []])
        refused = self.refusal()
        if refused:
            return {"job_id": job_id, "refused": refused}
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            become_worker(request, self.home)
        if request.get("target", "job") == "job":
            self.children[pid] = job_id
        return {"job_id": job_id, "pid": pid, "create_time": create_time(pid)}


def freeze_what_is_loaded() -> None:
    """Move every object alive now (the imported libraries: about half a million for torch, transformers
    and peft) out of the garbage collector's sight, as Python's docs advise before ``fork()``.

    Why: a full collection walks every tracked object, about 0.4 s with those libraries loaded, and a
    forked worker runs several (the Trainer starts each training with one, and the interpreter runs them
    as objects pile up): frozen, the imported objects are skipped and the fork's collections only walk
    what the job made. It also keeps the collector from writing into pages the fork shares with this
    process. What this process made before is collected first, so no garbage is frozen with it.
    """
    gc.collect()
    gc.freeze()


def probe_fork(timeout: float = 20.0) -> str | None:
    """Fork once and run a parallel torch operation in the fork: None when it finishes.

    A library that ran a parallel (OpenMP) operation while it was imported here would make every fork
    hang in its first one (GNU OpenMP does not survive a fork): such a warm process refuses every job.
    """
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})  # this child is waited for here, not reaped
    try:
        return _probe(torch, timeout)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})


def _probe(torch: Any, timeout: float) -> str | None:
    pid = os.fork()
    if pid == 0:
        try:
            x = torch.ones(256, 256)  # a matrix product (BLAS threads) and an elementwise one (ATen's)
            y = torch.ones(1 << 20).add_(1)
            os._exit(0 if float((x @ x).sum()) == 256.0 ** 3 and float(y.sum()) == 2.0 * (1 << 20) else 1)
        finally:
            os._exit(1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return None if os.waitstatus_to_exitcode(status) == 0 else "a fork of the warm process fails its first torch operation"
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return "a fork of the warm process hangs in its first parallel operation (OpenMP used before the fork)"


def become_worker(request: dict[str, Any], home: Path) -> NoReturn:
    """In the fork: the process a spawned worker would be (its own session, environment, streams and cwd).

    ``target`` ``job``: a job's worker (``core.jobs.worker``), its output to the job's log. ``inference``:
    the inference worker (``core.inference.worker``), its protocol on the two named pipes the server made
    (opened in the server's order: answers first, then requests), its stderr to the log.
    """
    code = 1
    try:
        os.setsid()
        inference = request.get("target") == "inference"
        module = "lora_factory.core.inference.worker" if inference else "lora_factory.core.jobs.worker"
        args = ["--home", str(home)] if inference else [str(request["job_id"]), "--home", str(home)]
        show_as(module, args)  # first: the title needs the environment's memory as the process started
        mark_forked_warm()  # its own children (a job's ranks) may be forked too (core.jobs.ranks)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.environ.clear()
        os.environ.update({str(k): str(v) for k, v in (request.get("env") or {}).items()})
        log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if inference:
            answers = os.open(request["stdout"], os.O_WRONLY)
            requests = os.open(request["stdin"], os.O_RDONLY)
            streams = (requests, answers, log)
        else:
            streams = (os.open(os.devnull, os.O_RDONLY), log, log)
        for target_fd, fd in enumerate(streams):
            os.dup2(fd, target_fd)
        for fd in set(streams):
            if fd > 2:
                os.close(fd)
        # new stream objects: the warm process's own may hold buffered lines of its protocol
        sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
        sys.stdout = open(1, "w", encoding="utf-8", buffering=1, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", encoding="utf-8", buffering=1, closefd=False)  # noqa: SIM115
        os.chdir(request.get("cwd") or home)
        # randomness: Python's random and NumPy's global generator reseed themselves in a fork; torch's
        # starts from its fixed default seed, as in a spawned worker (the warm process draws nothing)
        if inference:
            from lora_factory.core.inference.worker import main as inference_main

            code = inference_main(args)
        else:
            from lora_factory.core.jobs.worker import main as job_main

            code = job_main(args)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - whatever it is belongs in the log
        traceback.print_exc()
        code = 1
    finally:
        try:
            atexit._run_exitfuncs()  # what the interpreter would run at a spawned worker's exit
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lora_factory.core.jobs.zygote")
    parser.add_argument("--home", required=True)
    args = parser.parse_args(argv)
    home = Path(args.home)
    try:  # as each worker does first: the libraries imported here see the same variables
        export_to_environment(home)
    except LoRAFactoryError:
        pass  # a damaged settings file: each worker reports it in words
    zygote = Zygote(home)
    signal.signal(signal.SIGCHLD, zygote.reap)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            answer = zygote.handle(json.loads(line))
        except Exception as exc:  # noqa: BLE001 - a bad request is refused; the server spawns that job itself
            job_id = ""
            try:
                job_id = str(json.loads(line).get("job_id", ""))
            except (ValueError, AttributeError):
                pass
            answer = {"job_id": job_id, "refused": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(answer), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
