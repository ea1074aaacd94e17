"""One request must not stall the server (issue 16, items 1-3).

Waiting for the one inference worker is bounded (``INFERENCE_BUSY`` 429 / 503 with ``Retry-After``),
a client that has gone leaves the queue, and the rest of the API and the UI stay served whatever
inference does. Every test is bounded in time and talks to 127.0.0.1 only.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from lora_factory.core.errors import LoRAFactoryError
from lora_factory.core.inference.gate import ClientGone, InferenceGate

SLOW = {"modality": "dummy", "base_model": "base", "stream": False,
        "messages": [{"role": "user", "content": "abcdefghijklmnopqrst"}], "params": {"delay": 0.4}}
QUICK = {"modality": "dummy", "base_model": "base", "stream": False,
         "messages": [{"role": "user", "content": "hi"}]}
SLOW_GENERATE = {"modality": "dummy", "base_model": "base", "stream": False,
                 "input": {"prompt": "abcdefghijklmnopqrst"}, "params": {"delay": 0.4}}
QUICK_GENERATE = {"modality": "dummy", "base_model": "base", "stream": False, "input": {"prompt": "hi"}}


def test_a_full_queue_is_told_busy_at_once_with_a_retry_after():
    gate = InferenceGate(max_waiting=1, max_wait_s=30)
    gate.acquire()
    waiter = threading.Thread(target=lambda: (gate.acquire(), gate.release()), daemon=True)
    waiter.start()
    deadline = time.monotonic() + 5
    while gate.waiting < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    start = time.monotonic()
    with pytest.raises(LoRAFactoryError) as err:
        gate.acquire()
    assert time.monotonic() - start < 1
    assert err.value.code == "INFERENCE_BUSY" and err.value.http_status == 429
    assert err.value.detail["retry_after_s"] >= 1
    gate.release()
    waiter.join(5)
    assert not waiter.is_alive()


def test_waiting_is_bounded_in_time_and_a_gone_client_leaves_the_queue():
    gate = InferenceGate(max_waiting=4, max_wait_s=0.5)
    gate.acquire()
    start = time.monotonic()
    with pytest.raises(LoRAFactoryError) as err:
        gate.acquire()
    assert err.value.http_status == 503 and 0.4 < time.monotonic() - start < 3
    gone = threading.Event()
    threading.Timer(0.3, gone.set).start()
    gate.max_wait_s = 30
    start = time.monotonic()
    with pytest.raises(ClientGone):
        gate.acquire(cancelled=gone.is_set)
    assert time.monotonic() - start < 2 and gate.waiting == 0


def test_the_api_and_the_ui_stay_served_while_inference_is_swamped(dummy_home, server_factory):
    """A slow generation, then 45 requests whose clients give up after 3 s (the probe's recipe:
    ``/api/infer/generate`` then small generations; every other one a chat, which shares the gate):
    health, jobs and the UI answer at once, the extra requests hear 429 with a Retry-After, and
    once the slow one ends the next request runs without waiting for the abandoned ones."""
    server = server_factory(dummy_home, LORA_FACTORY_INFER_MAX_WAITING="3", LORA_FACTORY_INFER_MAX_WAIT_S="60")
    with server.client() as client:
        assert client.post("/api/infer/chat", json=QUICK).status_code == 200  # the worker is up
        assert client.post("/api/infer/generate", json=QUICK_GENERATE).json()["text"] == "ih"
        slow = threading.Thread(target=lambda: client.post("/api/infer/generate", json=SLOW_GENERATE), daemon=True)
        slow.start()
        time.sleep(0.5)

        def impatient(i: int) -> int | str:
            route, body = ("/api/infer/generate", QUICK_GENERATE) if i % 2 else ("/api/infer/chat", QUICK)
            try:
                with httpx.Client(base_url=server.url, timeout=3.0) as c:
                    r = c.post(route, json=dict(body, params={"delay": 1.0}))
                    if r.status_code == 429:
                        assert r.json()["error"]["code"] == "INFERENCE_BUSY" and int(r.headers["Retry-After"]) >= 1
                    return r.status_code
            except httpx.TimeoutException:
                return "timeout"

        with ThreadPoolExecutor(45) as pool:
            answers = list(pool.map(impatient, range(45)))
        assert answers.count(429) >= 30, answers
        with httpx.Client(base_url=server.url, timeout=3.0) as c:
            for path in ("/api/health", "/api/jobs", "/static/index.html"):
                start = time.monotonic()
                assert c.get(path).status_code == 200, path
                assert time.monotonic() - start < 2, path
        slow.join(20)
        assert not slow.is_alive()
        start = time.monotonic()
        r = client.post("/api/infer/chat", json=QUICK)
        assert r.status_code == 200, r.text
        assert time.monotonic() - start < 3  # the gone clients' 2 s requests did not run first


def test_a_gone_client_stops_its_generation(dummy_home, server_factory):
    """A streamed generation whose client disconnects is stopped in the worker: the next request is
    answered well before the abandoned one would have finished (20 tokens × 0.5 s)."""
    server = server_factory(dummy_home)
    slow = dict(SLOW, stream=True, params={"delay": 0.5})
    with server.client() as client:
        with client.stream("POST", "/api/infer/chat", json=slow) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if line.startswith("data:"):
                    break  # one token, then the client goes away
        start = time.monotonic()
        r = client.post("/api/infer/chat", json=QUICK)
        assert r.status_code == 200, r.text
        assert time.monotonic() - start < 4


@pytest.mark.skipif(os.name == "nt", reason="process groups are POSIX")
def test_the_inference_worker_has_its_own_process_group(dummy_home):
    """``close()`` kills the worker's process group when it is slow to exit: that group must never be
    the server's own (it once took the conformance run down with SIGTERM)."""
    from lora_factory.core.services import Services

    svc = Services(dummy_home)
    try:
        svc.inference.complete("dummy", {"messages": [{"role": "user", "content": "hi"}]})
        assert os.getpgid(svc.inference._proc.pid) != os.getpgid(0)
    finally:
        svc.close()
