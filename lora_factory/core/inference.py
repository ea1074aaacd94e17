"""The server's side of inference: one worker process that keeps models loaded, one request at a time.

The server never imports torch; it forwards chat requests to ``infer_worker`` over pipes and relays
its events (tokens) to the HTTP client as they arrive.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lora_factory.core import process
from lora_factory.core.errors import LoRAFactoryError


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
                [sys.executable, "-m", "lora_factory.core.infer_worker", "--home", str(self.home)],
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

        The lock is held for the whole request; if the consumer stops early, the rest of this
        request's output is drained so the next request starts on a clean stream.
        """
        with self._lock:
            proc = self._ensure_started()
            req_id = next(self._ids)
            assert proc.stdin and proc.stdout
            try:
                proc.stdin.write(json.dumps({"id": req_id, "modality": modality, "request": request},
                                            ensure_ascii=False) + "\n")
                proc.stdin.flush()
            except (BrokenPipeError, OSError) as exc:
                raise self._died() from exc
            finished = False
            try:
                while True:
                    line = proc.stdout.readline()
                    if not line:
                        finished = True
                        raise self._died()
                    msg = json.loads(line)
                    if msg.get("id") != req_id:
                        continue
                    if "error" in msg:
                        finished = True
                        raise LoRAFactoryError.from_dict({"error": msg["error"]}, http_status=msg.get("status", 500))
                    if msg.get("end"):
                        finished = True
                        return
                    yield msg["event"]
            finally:
                if not finished:
                    self._drain(proc, req_id)

    @staticmethod
    def _drain(proc: subprocess.Popen[str], req_id: int) -> None:
        assert proc.stdout
        for line in proc.stdout:
            msg = json.loads(line)
            if msg.get("id") == req_id and ("end" in msg or "error" in msg):
                return

    def complete(self, modality: str, request: dict[str, Any]) -> dict[str, Any]:
        done: dict[str, Any] = {"text": ""}
        pieces = []
        for event in self.stream(modality, dict(request, stream=False)):
            if event.get("type") == "token":
                pieces.append(event.get("text", ""))
            elif event.get("type") == "done":
                done = event
        done.setdefault("text", "".join(pieces))
        return done

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            try:
                if self._proc.stdin:
                    self._proc.stdin.close()
                self._proc.wait(timeout=5)
            except (subprocess.TimeoutExpired, OSError):
                process.kill_tree(self._proc.pid)
        self._proc = None
