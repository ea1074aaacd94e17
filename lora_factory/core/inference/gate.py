"""The queue in front of the one inference worker: bounded in length and in waiting time.

Why: the worker answers one request at a time, and every request that waits for it holds one of the
server's threads. Without a bound, a slow generation followed by many small requests used every
thread, and ``/api/health``, ``/api/jobs`` and the UI's files went unanswered. With this gate at most
``max_waiting`` requests wait (the next one is told ``INFERENCE_BUSY`` 429 at once), none waits longer
than ``max_wait_s`` (503), and a waiter whose client has gone leaves the queue at the next poll.
Both answers carry ``retry_after_s``, sent as a ``Retry-After`` header.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

from lora_factory.core.errors import LoRAFactoryError

POLL_S = 0.2


class ClientGone(Exception):
    """The HTTP client went away while its request waited or ran: nobody is left to answer."""


def busy(status: int, retry_after_s: int, waiting: int) -> LoRAFactoryError:
    return LoRAFactoryError(
        "INFERENCE_BUSY",
        f"推論プロセスが他のリクエストを処理中です。{retry_after_s} 秒ほど後にもう一度試してください。",
        f"The inference process is busy with other requests; try again in about {retry_after_s} s.",
        http_status=status, detail={"retry_after_s": retry_after_s, "waiting": waiting})


class InferenceGate:
    """One holder at a time, at most ``max_waiting`` waiters, each for at most ``max_wait_s``."""

    def __init__(self, max_waiting: int | None = None, max_wait_s: float | None = None) -> None:
        self.max_waiting = max(0, int(max_waiting if max_waiting is not None
                                      else os.environ.get("LORA_FACTORY_INFER_MAX_WAITING", "4")))
        self.max_wait_s = float(max_wait_s if max_wait_s is not None
                                else os.environ.get("LORA_FACTORY_INFER_MAX_WAIT_S", "120"))
        self.lock = threading.Lock()
        self._count_lock = threading.Lock()
        self.waiting = 0

    def acquire(self, cancelled: Callable[[], bool] | None = None) -> None:
        """Take the worker, or raise ``INFERENCE_BUSY`` (429: queue full, 503: waited too long) or
        ``ClientGone`` when ``cancelled()`` turns true while waiting."""
        if self.lock.acquire(blocking=False):
            return
        with self._count_lock:
            if self.waiting >= self.max_waiting:
                raise busy(429, max(1, int(self.max_wait_s // 4) or 1), self.waiting)
            self.waiting += 1
        try:
            deadline = time.monotonic() + self.max_wait_s
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise busy(503, max(1, int(self.max_wait_s // 4) or 1), self.waiting)
                if self.lock.acquire(timeout=min(POLL_S, left)):
                    return
                if cancelled is not None and cancelled():
                    raise ClientGone()
        finally:
            with self._count_lock:
                self.waiting -= 1

    def release(self) -> None:
        self.lock.release()
