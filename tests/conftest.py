"""Shared fixtures. Tests never load plugins installed in the environment (entry points).

What the suite builds once and shares (each documented at its definition):
- ``tiny_workspaces`` (session): workspaces with tiny models made by ``lora-factory tiny-model``, copied into
  each test's workspace; ``tiny_workspaces.template(...)`` is a read-only one to import a model from.
- the per-modality session fixtures in ``tests/<modality>/conftest.py`` (``tiny_model``, ``tiny_sd15``,
  ``tiny_tts``, ``tiny_asr``, the shared trainings ``trained_adapter`` / ``trained``).
At the end of a run, the time spent per test folder is printed (``pytest_terminal_summary`` below).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

os.environ["LORA_FACTORY_NO_ENTRY_POINTS"] = "1"
os.environ["LORA_FACTORY_NO_OPEN"] = "1"
# FastAPI's TestClient sends "Host: testserver": allowed through the documented setting, as a user would
os.environ.setdefault("LORA_FACTORY_ALLOWED_HOSTS", "testserver")
os.environ.setdefault("HF_HUB_OFFLINE", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _worker_count() -> int:
    """How many pytest-xdist workers share this machine (1 without xdist or with ``-n0``)."""
    try:
        return max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1))
    except ValueError:
        return 1


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # Windows, macOS
        return os.cpu_count() or 1


# Under pytest-xdist the workers share the cores: each worker, and the servers, job and inference workers it
# starts (they inherit this environment), gets its share of threads. More threads than cores make the tiny
# models several times slower (OpenMP's threads spin while they wait for each other). A value the caller
# set wins.
if _worker_count() > 1:
    for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_name, str(max(1, _cores() // _worker_count())))

REPO = Path(__file__).resolve().parent.parent
DUMMY_PLUGIN = Path(__file__).parent / "host" / "dummy_plugin.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def _end_what_the_test_left_running(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a test that has its own ``tmp_path``: end every process still working in it.

    Job workers are detached by design (they outlive the server and the CLI that started them), so a test
    that only checks what a submit recorded (``train`` from the CLI, ``/train/start`` in a TestClient)
    leaves a worker training a tiny model after it, and a test that stopped its server leaves that
    server's last workers: on a 2-core runner they take the CPU from the tests that follow. Nothing here
    is asserted (tests that care about leftover processes check them themselves); the processes named
    after this test's own folder (``--home``, a job's paths) cannot belong to any other test.
    """
    folder = str(request.getfixturevalue("tmp_path")) if "tmp_path" in request.fixturenames else None
    yield
    if folder is None:
        return
    import psutil

    leftovers = [proc for proc in _processes_naming(folder) if proc.pid != os.getpid()]
    for proc in leftovers:
        with contextlib.suppress(psutil.Error):
            for child in proc.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    child.kill()
            proc.kill()
    psutil.wait_procs(leftovers, timeout=5)


def _processes_naming(folder: str) -> Iterator[Any]:
    """The processes with ``folder`` (or a path inside it) among their command-line arguments. On Linux
    each ``/proc/<pid>/cmdline`` is read once, raw (this runs after most tests: a psutil object for every
    process costs about five times more), and a psutil object is made only for the few that name it."""
    import psutil

    if not sys.platform.startswith("linux") or not os.path.isdir("/proc"):
        for proc in psutil.process_iter(["cmdline"]):
            if any(_names_folder(arg, folder) for arg in proc.info["cmdline"] or ()):
                yield proc
        return
    needle = folder.encode()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(os.path.join(entry.path, "cmdline"), "rb") as fh:
                raw = fh.read()
            if needle not in raw:
                continue
            args = raw.decode(errors="replace").split("\0")
            if any(_names_folder(arg, folder) for arg in args):
                yield psutil.Process(int(entry.name))
        except (OSError, psutil.Error):
            continue


def _names_folder(arg: str, folder: str) -> bool:
    """``arg`` is ``folder`` or a path inside it (``.../test_x1`` is not inside ``.../test_x10``)."""
    at = arg.find(folder)
    while at != -1:
        end = at + len(folder)
        if end == len(arg) or arg[end] in "/\\":
            return True
        at = arg.find(folder, at + 1)
    return False


@pytest.fixture
def dummy_home(tmp_path: Path) -> Path:
    """A workspace with the dummy test plugin dropped in, a model folder and a dataset."""
    return make_dummy_home(tmp_path / "ws")


def make_dummy_home(home: Path) -> Path:
    """``home`` made a workspace with the dummy test plugin, a model folder and a dataset (for fixtures of any scope)."""
    (home / "plugins").mkdir(parents=True)
    shutil.copy(DUMMY_PLUGIN, home / "plugins" / "dummy_plugin.py")
    (home / "models" / "dummy" / "base").mkdir(parents=True)
    (home / "models" / "dummy" / "base" / "weights.txt").write_text("w")
    (home / "datasets" / "dummy").mkdir(parents=True)
    (home / "datasets" / "dummy" / "data.txt").write_text("a\nb\nc\n")
    return home


def answers_for_home(client: httpx.Client, url: str, home: Path, timeout: float = 1) -> bool:
    """The server at ``url`` answers, and it is the one serving ``home``: a port chosen free may be taken by
    another pytest-xdist worker's server before this one binds."""
    response = client.get(url + "/utils/paths", timeout=timeout)
    return response.status_code == 200 and Path(response.json().get("base", "")).resolve() == home.resolve()


class ServerProcess:
    """``lora-factory serve`` in a subprocess, as a user starts it."""

    def __init__(self, home: Path, env: dict[str, str] | None = None, args: Iterable[str] = ()) -> None:
        self.home = home
        self.args = list(args)  # more `serve` options (--cluster ADDRESS)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ, **(env or {}))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> ServerProcess:
        """Start it and wait until it answers. The port was free when chosen, but another worker's server may
        take it before this one binds (a CI run's test then talked to a server of another test, with other
        plugins): the answer must name this server's home, and a server that could not bind gets a new port."""
        for _ in range(3):
            if self._start_once(timeout):
                return self
            self.port = free_port()
            self.url = f"http://127.0.0.1:{self.port}"
        raise RuntimeError("server could not get a free port")

    def _start_once(self, timeout: float) -> bool:
        log = open(self.home.parent / f"server_{self.port}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lora_factory.cli", "serve", "--home", str(self.home), "--port", str(self.port),
             *self.args],
            stdout=log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + timeout
        # One client for every try: ``httpx.get`` makes a client, and with it an SSL context that parses the CA
        # bundle, at each call; polled every 0.1 s for each of the suite's ~70 servers that was about 2 minutes
        # of CPU in the pytest workers (measured with py-spy).
        with httpx.Client(timeout=1) as probe:
            while time.monotonic() < deadline:
                try:
                    if answers_for_home(probe, self.url, self.home) and self.proc.poll() is None:
                        return True
                except (httpx.HTTPError, ValueError):
                    pass
                if self.proc.poll() is not None:
                    text = (self.home.parent / f"server_{self.port}.log").read_text(errors="replace")
                    if "address already in use" in text.lower():
                        return False
                    raise RuntimeError(f"server exited: {text}")
                time.sleep(0.1)
        raise RuntimeError("server did not answer")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def client(self) -> httpx.Client:
        # 120 s: the first chat starts the inference worker (torch, the model), which takes more than 30 s
        # on a loaded 2-core runner; a test that needs an answer sooner says so itself
        return httpx.Client(base_url=self.url, timeout=120)


@pytest.fixture
def server_factory() -> Iterator:
    started: list[ServerProcess] = []

    def make(home: Path, **env: str) -> ServerProcess:
        server = ServerProcess(home, env)
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.stop()


def wait_for(client: httpx.Client, job_id: str, statuses: tuple[str, ...], timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    job: dict = {}
    while time.monotonic() < deadline:
        job = client.get(f"/train/status/{job_id}").json()
        if job.get("status") in statuses:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not reach {statuses}: {job}")


# -- tiny models, built once per session --------------------------------------------------------------------


class TinyWorkspaces:
    """Workspaces holding tiny models built by ``lora-factory tiny-model``, each set built once per session.

    ``copy(dest, ("text", "--out", "models/text/tiny"), ...)`` gives a test the workspace ``dest`` exactly as
    running ``lora-factory tiny-model <args> --home dest`` for each build would have left it (the models,
    and their artifact records in the database, which is copied with them), and returns what each command
    printed (its JSON). The first request for a set of builds runs the command's own ``main`` in this
    process (torch and the model libraries are imported here already; a subprocess per build would import
    them again, several seconds each) into a template workspace; later requests copy that template.
    ``plugins`` are drop-in plugin files put into the workspace before the builds (part of the key).

    Under pytest-xdist ``root`` is shared by the session's workers: a template is named after its key, built
    by the first worker that asks for it while the others wait on its file lock, and marked finished by the
    file of what the commands printed (written last, so a worker that died half-way leaves no template
    that looks finished; the next one builds it again).

    ``template(...)`` is the template itself, for a test that only reads a model from it (an import):
    never write into it.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._built: dict[tuple, tuple[Path, list[dict]]] = {}

    def template(self, *builds: Iterable[str], plugins: Iterable[Path] = ()) -> Path:
        return self._build(tuple(tuple(b) for b in builds), tuple(Path(p) for p in plugins))[0]

    def copy(self, dest: Path, *builds: Iterable[str], plugins: Iterable[Path] = ()) -> list[dict]:
        template, printed = self._build(tuple(tuple(b) for b in builds), tuple(Path(p) for p in plugins))
        shutil.copytree(template, dest)
        return printed

    def _build(self, builds: tuple[tuple[str, ...], ...], plugins: tuple[Path, ...]) -> tuple[Path, list[dict]]:
        key = (builds, plugins)
        if key not in self._built:
            from filelock import FileLock

            name = "ws-" + hashlib.sha256(json.dumps(
                [builds, [[p.name, p.read_text(encoding="utf-8")] for p in plugins]]).encode()).hexdigest()[:16]
            home, done = self.root / name, self.root / f"{name}.json"
            with FileLock(str(self.root / f"{name}.lock")):
                if not done.exists():
                    shutil.rmtree(home, ignore_errors=True)
                    write_json_atomic(done, self._run(home, builds, plugins))
                self._built[key] = (home, json.loads(done.read_text(encoding="utf-8")))
        return self._built[key]

    @staticmethod
    def _run(home: Path, builds: tuple[tuple[str, ...], ...], plugins: tuple[Path, ...]) -> list[dict]:
        from lora_factory.cli import main

        (home / "plugins").mkdir(parents=True)
        for plugin in plugins:
            shutil.copy(plugin, home / "plugins" / plugin.name)
        printed = []
        for build in builds:
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(["tiny-model", *build, "--home", str(home)])
            assert code == 0, f"lora-factory tiny-model {' '.join(build)}: {err.getvalue()}"
            printed.append(json.loads(out.getvalue()))
        gc.collect()  # the command's database connections close, so the copied database is complete
        # What is alive now (torch, transformers, the model libraries the builds imported) is frozen out of the
        # collector's walks, as the warm process does (core/jobs/zygote.freeze_what_is_loaded): the Trainer starts
        # each in-process training of the tests with a full collection, 0.5-1 s in a pytest worker otherwise.
        gc.freeze()
        return printed


def write_json_atomic(path: Path, data: object) -> None:
    temp = path.with_name(path.name + ".tmp")
    temp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(temp, path)


def session_shared_dir(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """A folder of this test session that every pytest-xdist worker sees (a worker's own temp folder is
    ``.../pytest-N/popen-gwK``; their parent ``pytest-N`` is the run's), or this process's own."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    folder = base / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def tiny_workspaces(tmp_path_factory: pytest.TempPathFactory) -> TinyWorkspaces:
    """Tiny models built once per session through ``lora-factory tiny-model``, copied into each test's
    workspace (see :class:`TinyWorkspaces`); one build for all pytest-xdist workers."""
    return TinyWorkspaces(session_shared_dir(tmp_path_factory, "tiny-workspaces"))


# -- how pytest-xdist shares the tests out (pyproject's addopts: -n auto --dist loadfile) ---------------------

@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: one worker per core this process may use, counting hyper-threads (a "2-core" CI runner is
    often one core with two), at most 4: the tests start servers and workers of their own, and beyond 4 the
    per-worker set-up (a browser, a server with a tiny model) outweighs the gain. ``PYTEST_XDIST_AUTO_NUM_WORKERS``
    overrides it, as pytest-xdist documents."""
    chosen = os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS", "")
    return int(chosen) if chosen.isdigit() else max(1, min(4, _cores()))


# Session fixtures that train: the files that use one of them form one group (one worker, one training);
# keyed by folder, as two folders may give a fixture the same name.
SHARED_TRAININGS = {"tests/text": ("trained_adapter",), "tests/image": ("trained",)}

# Folders whose files share session fixtures that cost much in every worker that builds them: the browser tests'
# server (its warm process imports torch and trains the tiny model the tests use) and Chromium with its driver,
# about 45 s of CPU per worker. Their files form one group, so one worker builds them once.
SHARED_SESSION_FOLDERS = ("tests/ui",)

# Files whose tests are independent of each other (no module fixture, no order) and long one by one: each
# test is a group of its own, so that the workers share the file.
SPLIT_BY_TEST = ("tests/conformance/test_conformance.py",)

# The longest files first (measured: the whole suite on 2 workers, the sum of each file's test times), so that
# no long one starts last and leaves one worker running alone at the end; the others follow in collection
# order. A name missing here only loses its place.
LONGEST_FIRST = ("tests/ui", "tests/cluster/test_ray_cluster.py", "tests/conformance/test_conformance.py",
                 "tests/image/test_end_to_end.py", "tests/audio/test_end_to_end.py", "tests/text/test_end_to_end.py")


@functools.cache
def _group_of_file(path: str) -> str:
    """A test file's group: the shared training its source names as a fixture argument, or the file itself.
    Read from the source so the controller, which collects nothing, groups as the workers would."""
    folder = _folder_of(path + "::")
    if folder in SHARED_SESSION_FOLDERS:
        return folder
    try:
        source = (REPO / path).read_text(encoding="utf-8")
    except OSError:
        return path
    for fixture in SHARED_TRAININGS.get(folder, ()):
        if re.search(rf"def test_\w*\([^)]*\b{fixture}\b", source):
            return f"{folder}/{fixture}"
    return path


def _group_of(nodeid: str) -> str:
    path = nodeid.split("::", 1)[0]
    return nodeid if path in SPLIT_BY_TEST else _group_of_file(path)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """``--dist loadfile`` with this suite's groups (see ``_group_of``): a file's module fixtures (a shared
    server) stay in one worker, files sharing a training too. (``--dist loadgroup`` would do it with marks,
    but pytest-xdist 3.8 cannot rename pytest 9's node ids, so its marks are lost.)"""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class GroupScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _group_of(nodeid)

    return GroupScheduling(config, log)  # type: ignore[arg-type]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (in each worker, which all sort alike) the groups go longest first, the files of a
    group together; in one process the order stays as collected."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    rank = {group: i for i, group in enumerate(LONGEST_FIRST)}
    order = {group: i for i, group in enumerate(dict.fromkeys(_group_of_file(i.nodeid.split("::", 1)[0]) for i in items))}
    position = {id(item): i for i, item in enumerate(items)}

    def key(item: pytest.Item) -> tuple[int, int, int]:
        group = _group_of_file(item.nodeid.split("::", 1)[0])
        return rank.get(group, len(rank)), order[group], position[id(item)]

    items.sort(key=key)


# -- time per test folder -----------------------------------------------------------------------------------

_FOLDER_SECONDS: dict[str, float] = {}
_FOLDER_TESTS: dict[str, set[str]] = {}
_STARTED = time.monotonic()


def _folder_of(nodeid: str) -> str:
    """``tests/text/test_x.py::t`` -> ``tests/text``; a file directly under tests/ counts as ``tests``."""
    parts = nodeid.split("::", 1)[0].split("/")
    return "/".join(parts[:2]) if len(parts) > 2 else parts[0] if len(parts) > 1 else "."


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Counted where the summary is printed: in this process, or under pytest-xdist in the controller, which
    gets every worker's reports through this same hook (a worker's own count is never printed)."""
    folder = _folder_of(report.nodeid)
    _FOLDER_SECONDS[folder] = _FOLDER_SECONDS.get(folder, 0.0) + report.duration
    _FOLDER_TESTS.setdefault(folder, set()).add(report.nodeid)


def pytest_terminal_summary(terminalreporter) -> None:  # noqa: ANN001
    """Seconds per test folder (setup, call and teardown, shared fixtures counted where first used)."""
    if not _FOLDER_SECONDS:
        return
    terminalreporter.write_sep("=", "time per test folder")
    total = sum(_FOLDER_SECONDS.values())
    for folder, seconds in sorted(_FOLDER_SECONDS.items(), key=lambda kv: -kv[1]):
        terminalreporter.write_line(f"{seconds:8.1f} s  {len(_FOLDER_TESTS[folder]):4d} tests  {folder}")
    terminalreporter.write_line(f"{total:8.1f} s  {sum(map(len, _FOLDER_TESTS.values())):4d} tests  total")
    workers = getattr(terminalreporter.config.option, "numprocesses", None) or 0
    terminalreporter.write_line(f"{time.monotonic() - _STARTED:8.1f} s  wall, "
                                f"{f'{workers} pytest-xdist workers (the times above add up all workers)' if workers else 'one process'}")
