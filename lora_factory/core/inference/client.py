"""The server's side of inference: one worker process that keeps models loaded, one request at a time.

The server never imports torch; it forwards chat requests to ``core.inference.worker`` over pipes and relays
its events (tokens) to the HTTP client as they arrive.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lora_factory.core import process
from lora_factory.core.errors import LoRAFactoryError
from lora_factory.core.inference.session import collect_events


class InferenceClient:
    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _ensure_started(self) -> subprocess.Popen[str]:
        if self.running:
            assert self._proc is not None
            return self._proc
        log = open(self.home / "logs" / "inference.log", "a", encoding="utf-8")  # noqa: SIM115
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8")
        kwargs: dict[str, Any] = {}
        if process.IS_WINDOWS:
            kwargs["creationflags"] = subprocess.CREATE_NO_WINDOW  # type: ignore[attr-defined]
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "lora_factory.core.inference.worker", "--home", str(self.home)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, encoding="utf-8",
                bufsize=1, env=env, cwd=str(self.home), **kwargs,
            )
        finally:
            log.close()
        ready = self._proc.stdout.readline() if self._proc.stdout else ""
        if not ready:
            raise self._died()
        return self._proc

    def _died(self) -> LoRAFactoryError:
        self._proc = None
        return LoRAFactoryError("INFERENCE_WORKER_DIED",
                                "推論プロセスが終了しました。logs/inference.log を確認してください。",
                                "The inference process ended; see logs/inference.log.", http_status=500)

    def stream(self, modality: str, request: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Yield the worker's events for one request; raises ``LoRAFactoryError`` on its errors.

        A reader thread owns the request from start to end: it drains the worker's answer and
        releases the lock even when the HTTP client goes away mid-stream, so an abandoned chat never
        blocks the next one (and never blocks the event loop).
        """
        self._lock.acquire()
        try:
            proc = self._ensure_started()
            req_id = next(self._ids)
            assert proc.stdin and proc.stdout
            proc.stdin.write(json.dumps({"id": req_id, "modality": modality, "request": request},
                                        ensure_ascii=False) + "\n")
            proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            self._lock.release()
            raise self._died() from exc
        except BaseException:
            self._lock.release()
            raise
        events: queue.Queue[tuple[str, Any]] = queue.Queue()
        threading.Thread(target=self._read_answer, args=(proc, req_id, events), daemon=True,
                         name=f"lora-factory-infer-{req_id}").start()
        while True:
            kind, payload = events.get()
            if kind == "event":
                yield payload
            elif kind == "error":
                raise payload
            else:
                return

    def _read_answer(self, proc: subprocess.Popen[str], req_id: int, events: queue.Queue[tuple[str, Any]]) -> None:
        try:
            assert proc.stdout
            while True:
                line = proc.stdout.readline()
                if not line:
                    events.put(("error", self._died()))
                    return
                msg = json.loads(line)
                if msg.get("id") != req_id:
                    continue
                if "error" in msg:
                    events.put(("error", LoRAFactoryError.from_dict({"error": msg["error"]},
                                                                    http_status=msg.get("status", 500))))
                    return
                if msg.get("end"):
                    events.put(("end", None))
                    return
                events.put(("event", msg["event"]))
        except Exception as exc:  # noqa: BLE001 - the consumer must always get an answer
            events.put(("error", LoRAFactoryError("INFERENCE_FAILED", f"推論に失敗しました: {exc}",
                                                  f"Inference failed: {exc}", http_status=500)))
        finally:
            self._lock.release()

    def complete(self, modality: str, request: dict[str, Any]) -> dict[str, Any]:
        """The whole answer: the ``done`` event with the joined text and the media files written."""
        return collect_events(self.stream(modality, dict(request, stream=False)))

    def release(self, wait_s: float = 30.0) -> bool:
        """Stop the worker (and free the memory its models hold) once the current answer is done.

        Returns True when a worker was running. After ``wait_s`` the worker is stopped anyway: a
        training job that needs the GPU comes first, and the chat only sees an error it can retry.
        """
        if not self.running:
            return False
        acquired = self._lock.acquire(timeout=wait_s)
        try:
            self.close()
        finally:
            if acquired:
                self._lock.release()
        return True

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            try:
                if self._proc.stdin:
                    self._proc.stdin.close()
                self._proc.wait(timeout=5)
            except (subprocess.TimeoutExpired, OSError):
                process.kill_tree(self._proc.pid)
        self._proc = None
