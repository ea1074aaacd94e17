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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from lora_factory.core import process
from lora_factory.core.errors import LoRAFactoryError
from lora_factory.core.inference.gate import POLL_S, ClientGone, InferenceGate
from lora_factory.core.inference.session import collect_events


class InferenceClient:
    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        self._proc: subprocess.Popen[str] | None = None
        self.gate = InferenceGate()
        self._lock = self.gate.lock  # held while a request runs (release() waits on it)
        self._ids = itertools.count(1)
        # where the next worker runs: a device id (the server's device table chooses), or None
        self.place: Callable[[], str | None] = lambda: None
        self.device: str | None = None
        # forks the worker from the jobs' warm process where there is one (wired by services.py, see
        # core/jobs/warm_start): (environment, log, modality) -> a Popen-like process, or None to spawn it
        self.fork: Callable[[dict[str, str], Path, str | None], Any] | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _ensure_started(self, modality: str | None = None) -> subprocess.Popen[str]:
        if self.running:
            assert self._proc is not None
            return self._proc
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8")
        self.device = self.place()
        if self.device is not None:  # the GPU it may see ("" for a simulated device), like a job's worker
            env.update({"LORA_FACTORY_INFERENCE_DEVICE": self.device, "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
                        "CUDA_VISIBLE_DEVICES": "" if self.device.startswith("cpu:") else self.device})
        forked = self.fork(env, self.home / "logs" / "inference.log", modality) if self.fork else None
        if forked is not None:
            self._proc = forked
            return self._wait_ready(forked)
        log = open(self.home / "logs" / "inference.log", "a", encoding="utf-8")  # noqa: SIM115
        kwargs: dict[str, Any] = {}
        if process.IS_WINDOWS:
            kwargs["creationflags"] = subprocess.CREATE_NO_WINDOW  # type: ignore[attr-defined]
        else:
            # its own process group: close() may kill the worker's group, which must never be the
            # server's own (a worker slow to exit once took the server, or the test run, down with it)
            kwargs["start_new_session"] = True
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "lora_factory.core.inference.worker", "--home", str(self.home)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, encoding="utf-8",
                bufsize=1, env=env, cwd=str(self.home), **kwargs,
            )
        finally:
            log.close()
        return self._wait_ready(self._proc)

    def _wait_ready(self, proc: subprocess.Popen[str]) -> subprocess.Popen[str]:
        ready = proc.stdout.readline() if proc.stdout else ""
        if not ready:
            raise self._died()
        return proc

    def _died(self) -> LoRAFactoryError:
        self._proc = None
        return LoRAFactoryError("INFERENCE_WORKER_DIED",
                                "推論プロセスが終了しました。logs/inference.log を確認してください。",
                                "The inference process ended; see logs/inference.log.", http_status=500)

    def stream(self, modality: str, request: dict[str, Any],
               cancelled: Callable[[], bool] | None = None) -> Iterator[dict[str, Any]]:
        """Yield the worker's events for one request; raises ``LoRAFactoryError`` on its errors.

        Waiting for the worker is bounded (``InferenceGate``: ``INFERENCE_BUSY`` 429 / 503). A reader
        thread owns the request from start to end: it drains the worker's answer and releases the
        worker even when the HTTP client goes away mid-stream. When the consumer stops early (the
        generator is closed) or ``cancelled()`` turns true, the worker is told to stop generating,
        so an abandoned request neither blocks the next one nor keeps the model busy.
        """
        try:
            self.gate.acquire(cancelled)
        except ClientGone:
            raise client_gone() from None
        try:
            proc = self._ensure_started(modality)
            req_id = next(self._ids)
            assert proc.stdin and proc.stdout
            self._send(proc, {"id": req_id, "modality": modality, "request": request})
        except (BrokenPipeError, OSError) as exc:
            self.gate.release()
            raise self._died() from exc
        except BaseException:
            self.gate.release()
            raise
        events: queue.Queue[tuple[str, Any]] = queue.Queue()
        threading.Thread(target=self._read_answer, args=(proc, req_id, events), daemon=True,
                         name=f"lora-factory-infer-{req_id}").start()
        finished = False
        try:
            while True:
                try:
                    kind, payload = events.get(timeout=POLL_S if cancelled else None)
                except queue.Empty:
                    if cancelled is not None and cancelled():
                        raise client_gone() from None
                    continue
                if kind == "event":
                    yield payload
                elif kind == "error":
                    finished = True
                    raise payload
                else:
                    finished = True
                    return
        finally:
            if not finished:
                self.cancel(proc, req_id)

    @staticmethod
    def _send(proc: subprocess.Popen[str], msg: dict[str, Any]) -> None:
        assert proc.stdin
        proc.stdin.write(json.dumps(msg, ensure_ascii=False) + "\n")
        proc.stdin.flush()

    def cancel(self, proc: subprocess.Popen[str], req_id: int) -> None:
        """Ask the worker to stop request ``req_id`` (its client is gone); the reader thread still
        drains the answer and frees the worker."""
        try:
            self._send(proc, {"cancel": req_id})
        except (OSError, ValueError):
            pass

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
            self.gate.release()

    def complete(self, modality: str, request: dict[str, Any],
                 cancelled: Callable[[], bool] | None = None) -> dict[str, Any]:
        """The whole answer: the ``done`` event with the joined text and the media files written."""
        return collect_events(self.stream(modality, dict(request, stream=False), cancelled))

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
        self.device = None


def client_gone() -> LoRAFactoryError:
    """The HTTP client left before its answer: logged as 499, never sent (nobody is listening)."""
    return LoRAFactoryError("CLIENT_GONE", "クライアントが切断したため推論を中止しました。",
                            "The client went away; the inference was stopped.", http_status=499)
