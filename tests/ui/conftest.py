"""Fixtures for the browser tests: a real server on a free port, a tiny text model, headless Chromium.

Why a real server in a subprocess: the UI is only as good as its conversation with the actual API
(SSE framing, multipart, error bodies), so nothing here is mocked. The server runs
``python -m lora_factory.cli serve`` exactly as a user would start it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import answers_for_home

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO_ROOT = Path(__file__).resolve().parents[2]
TERMINAL = {"completed", "failed", "canceled", "interrupted"}
DEFAULT_VIEWPORT = {"width": 1280, "height": 800}

def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_job(client: httpx.Client, job_id: str, timeout: float = 180.0) -> dict[str, Any]:
    """Poll a job until it ends; its status is returned, not asserted, so callers say what they expect."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job.get("status") in TERMINAL:
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not end within {timeout} s: {job}")


def option_values(select: Any, including: str | None = None, at_least: int = 1, timeout_ms: float = 20_000) -> list[str]:
    """The values of a ``<select>``'s options once they are there.

    The UI fills its model / dataset / device lists from a fetch that may answer after the tab is drawn,
    so reading the options at once can see an empty list (a CI run failed on exactly that). This waits
    until at least ``at_least`` options exist and, when given, one has the value ``including``.
    """
    deadline = time.monotonic() + timeout_ms / 1000
    while True:  # the locator is resolved again at each look: a form may redraw the <select> meanwhile
        values = list(select.locator("option").evaluate_all("os => os.map(o => o.value)"))
        if len(values) >= at_least and (including is None or including in values):
            return values
        if time.monotonic() > deadline:
            raise AssertionError(f"the list never offered {including!r} (at least {at_least} options): {values}")
        time.sleep(0.1)


class Server:
    """A running ``lora-factory serve`` and an HTTP client bound to it."""

    def __init__(self, home: Path, port: int, process: subprocess.Popen[bytes], log_path: Path) -> None:
        self.home = home
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.process = process
        self.log_path = log_path
        self.client = httpx.Client(base_url=self.url, timeout=60.0)
        self.model_ref = ""

    def wait_job(self, job_id: str, timeout: float = 180.0) -> dict[str, Any]:
        return wait_job(self.client, job_id, timeout)

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@contextlib.contextmanager
def running_server(home: Path, env_extra: dict[str, str] | None = None) -> Iterator[Server]:
    """``lora-factory serve`` on ``home`` (its ``plugins/`` folder loaded), stopped afterwards."""
    port = _free_port()
    log_path = home.parent / f"ui_server_{port}.log"
    env = dict(os.environ, LORA_FACTORY_NO_BROWSER="1", PYTHONUNBUFFERED="1", **(env_extra or {}))
    # The settings saved through the UI must be what the worker uses, not a developer's own token / mirror.
    for name in ("HF_TOKEN", "HF_ENDPOINT", "HUGGING_FACE_HUB_TOKEN"):
        env.pop(name, None)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "lora_factory.cli", "serve", "--home", str(home), "--port", str(port)],
            cwd=str(REPO_ROOT),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    srv = Server(home, port, process, log_path)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise AssertionError(f"the server exited with {process.returncode}:\n{srv.log_tail()}")
            try:
                if answers_for_home(srv.client, "", home, timeout=2):
                    break
            except (httpx.HTTPError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the server did not answer within 60 s:\n{srv.log_tail()}")
            time.sleep(0.2)
        yield srv
    finally:
        srv.client.close()
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("ui_home")) as srv:
        # The tiny offline text model every browser test trains on.
        res = srv.client.post("/api/models/tiny", json={"modality": "text", "name": "tiny-ui"})
        assert res.status_code == 200, res.text
        job = wait_job(srv.client, res.json()["job_id"])
        assert job["status"] == "completed", f"{job}\n{srv.log_tail()}"
        models = srv.client.get("/api/models", params={"modality": "text"}).json()["models"]
        tiny = next(m for m in models if m["name"] == "tiny-ui")
        srv.model_ref = tiny.get("rel_path") or tiny["name"]
        yield srv


class ReducedMotionBrowser:
    """The session's Chromium, whose contexts ask for reduced motion unless a test says otherwise.

    Why: the UI honours the OS's "reduce motion" setting (app.css), and without it a spinner on screen
    keeps Chromium drawing 60 frames a second, about 0.1 s of CPU each second (measured) on the 2-core
    runner the whole suite shares, during every wait for a job. No test is about the spinning itself;
    ``test_reduced_motion_stops_the_spinner`` checks both settings."""

    def __init__(self, chromium: Any) -> None:
        self._chromium = chromium

    def new_context(self, **options: Any) -> Any:
        return self._chromium.new_context(**{"reduced_motion": "reduce", **options})

    def __getattr__(self, name: str) -> Any:
        return getattr(self._chromium, name)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        # test_ui.py skips itself on a developer's machine; reaching this means CI, where it must run.
        pytest.fail(f"{CHROMIUM} is missing: the UI tests are required in CI (apt-get install chromium)")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield ReducedMotionBrowser(chromium)
        finally:
            chromium.close()


class PageWatch:
    """What a page did that it should not: console errors, uncaught exceptions, requests leaving 127.0.0.1."""

    def __init__(self) -> None:
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []
        self.external_requests: list[str] = []

    def assert_clean(self) -> None:
        assert not self.external_requests, f"requests left 127.0.0.1: {self.external_requests}"
        assert not self.page_errors, f"uncaught page errors: {self.page_errors}"
        assert not self.console_errors, f"console errors: {self.console_errors}"


class PagePool:
    """Pages for the browser tests, each in a browser context no other open page shares, its storage as new.

    Why: a new Chromium context costs the machine about 2 s of CPU beyond its page (a storage partition, a
    network context, a renderer process started cold), and the browser tests open about 70 pages. Measured
    on the 2-core runner, the machine's CPU per load of the app: 3.4 s in a new context, 1.4 s in a kept
    context whose keeper page stays open on the server (its renderer process stays up).

    A context is lent to one page at a time (a test with two pages open gets two). When the page is released
    the context's cookies and the local storage of every origin the page asked anything of are cleared
    (sessionStorage, init scripts, routes and the viewport belong to the page and go with it), so the next
    page starts as a new context would; ``test_a_released_page_leaves_nothing_to_the_next`` checks it."""

    def __init__(self, browser: Any, keep_url: str) -> None:
        self._browser = browser
        self._keep_url = keep_url
        self._free: list[tuple[Any, Any, Any]] = []  # (context, its keeper page, a CDP session on the keeper)
        self._lent: dict[int, tuple[Any, Any, Any, set[str]]] = {}

    def page(self, viewport: dict[str, int] | None = None, init_script: str | None = None) -> Any:
        from urllib.parse import urlparse

        context, keeper, cdp = self._free.pop() if self._free else self._new_context()
        page = context.new_page()
        page.set_viewport_size(viewport or DEFAULT_VIEWPORT)
        if init_script:
            page.add_init_script(init_script)
        origins: set[str] = set()

        def on_request(request: Any) -> None:
            parsed = urlparse(request.url)
            if parsed.scheme in ("http", "https"):
                origins.add(f"{parsed.scheme}://{parsed.netloc}")

        page.on("request", on_request)
        self._lent[id(page)] = (context, keeper, cdp, origins)
        return page

    def release(self, page: Any) -> None:
        context, keeper, cdp, origins = self._lent.pop(id(page))
        try:
            for opened in context.pages:  # the page, and any popup it opened
                if opened is not keeper:
                    opened.close()
            context.clear_cookies()
            for origin in sorted(origins):
                cdp.send("Storage.clearDataForOrigin", {"origin": origin, "storageTypes": "local_storage"})
        except Exception:  # noqa: BLE001 - a context that cannot be cleaned is not lent again
            with contextlib.suppress(Exception):
                context.close()
            return
        self._free.append((context, keeper, cdp))

    def close(self) -> None:
        for context, _, _ in self._free:
            with contextlib.suppress(Exception):
                context.close()
        self._free.clear()

    def _new_context(self) -> tuple[Any, Any, Any]:
        context = self._browser.new_context(viewport=DEFAULT_VIEWPORT, locale="ja-JP", accept_downloads=True)
        context.set_default_timeout(20_000)
        keeper = context.new_page()
        keeper.goto(self._keep_url)  # an image: no script, nothing stored
        return context, keeper, context.new_cdp_session(keeper)


@pytest.fixture(scope="session")
def page_pool(browser: Any, server: Server) -> Iterator[PagePool]:
    pool = PagePool(browser, server.url + "/favicon.svg")
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture()
def watched_page(page_pool: PagePool, server: Server) -> Iterator[tuple[Any, PageWatch]]:
    """A page as in a fresh context (own localStorage) at 1280x800; every test ends with the clean-page check."""
    from urllib.parse import urlparse

    page = page_pool.page(DEFAULT_VIEWPORT)
    watch = PageWatch()

    def on_request(request: Any) -> None:
        parsed = urlparse(request.url)
        if parsed.scheme in ("data", "blob", "about"):
            return
        if parsed.hostname != "127.0.0.1":
            watch.external_requests.append(request.url)

    def on_console(msg: Any) -> None:
        if msg.type == "error":
            watch.console_errors.append(msg.text)

    page.on("request", on_request)
    page.on("console", on_console)
    page.on("pageerror", lambda exc: watch.page_errors.append(str(exc)))
    try:
        yield page, watch
    finally:
        page_pool.release(page)
