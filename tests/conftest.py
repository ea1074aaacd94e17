"""Shared fixtures. Tests never load plugins installed in the environment (entry points)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

os.environ["LORA_FACTORY_NO_ENTRY_POINTS"] = "1"
os.environ["LORA_FACTORY_NO_OPEN"] = "1"
# FastAPI's TestClient sends "Host: testserver": allowed through the documented setting, as a user would
os.environ.setdefault("LORA_FACTORY_ALLOWED_HOSTS", "testserver")
os.environ.setdefault("HF_HUB_OFFLINE", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
DUMMY_PLUGIN = Path(__file__).parent / "host" / "dummy_plugin.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def dummy_home(tmp_path: Path) -> Path:
    """A workspace with the dummy test plugin dropped in, a model folder and a dataset."""
    home = tmp_path / "ws"
    (home / "plugins").mkdir(parents=True)
    shutil.copy(DUMMY_PLUGIN, home / "plugins" / "dummy_plugin.py")
    (home / "models" / "dummy" / "base").mkdir(parents=True)
    (home / "models" / "dummy" / "base" / "weights.txt").write_text("w")
    (home / "datasets" / "dummy").mkdir(parents=True)
    (home / "datasets" / "dummy" / "data.txt").write_text("a\nb\nc\n")
    return home


class ServerProcess:
    """``lora-factory serve`` in a subprocess, as a user starts it."""

    def __init__(self, home: Path, env: dict[str, str] | None = None) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ, **(env or {}))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> ServerProcess:
        log = open(self.home.parent / f"server_{self.port}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lora_factory.cli", "serve", "--home", str(self.home), "--port", str(self.port)],
            stdout=log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/utils/paths", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {(self.home.parent / f'server_{self.port}.log').read_text()}")
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
        return httpx.Client(base_url=self.url, timeout=30)


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
