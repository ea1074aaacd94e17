"""What a Ray cluster holds: ``python -m lora_factory.core.jobs.cluster.probe ADDRESS`` prints one JSON line.

A subprocess, so the server never imports Ray (seconds, and a Ray driver inside the server would
tie its life to the cluster's). :class:`ClusterMonitor` runs it in the background and keeps the last
answer: the scheduler asks it whether a queued cluster job fits the free resources, the System tab
shows its nodes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

PROBE_TIMEOUT_S = 60.0


def probe(address: str) -> dict[str, Any]:
    """Connect as a short-lived driver and read the nodes, their total and free resources."""
    import ray
    from ray._private.state import available_resources_per_node

    ray.init(address=address, logging_level="ERROR", log_to_driver=False, configure_logging=False)
    try:
        free = available_resources_per_node()
        nodes = [{"id": n["NodeID"], "address": n.get("NodeManagerAddress"), "hostname": n.get("NodeManagerHostname"),
                  "alive": bool(n.get("Alive")), "resources": _public(n.get("Resources") or {}),
                  "available": _public(free.get(n["NodeID"], {})) if n.get("Alive") else {}}
                 for n in ray.nodes()]
        return {"ok": True, "address": address, "ray_version": ray.__version__, "nodes": nodes,
                "total": _public(ray.cluster_resources()), "available": _public(ray.available_resources())}
    finally:
        ray.shutdown()


def _public(resources: dict[str, Any]) -> dict[str, float]:
    """Ray's own bookkeeping resources (``node:…``) are not something a worker asks for."""
    return {k: float(v) for k, v in resources.items() if not k.startswith("node:")}


def run_probe(address: str, timeout: float = PROBE_TIMEOUT_S) -> dict[str, Any]:
    """The probe in a subprocess; every failure (no Ray installed, unreachable, timeout) is an answer."""
    from lora_factory.core.errors import LoRAFactoryError
    from lora_factory.core.jobs.cluster.config import check_reachable

    started = time.time()
    try:
        check_reachable(address)  # seconds, where Ray would retry for a minute
        out = subprocess.run([sys.executable, "-m", "lora_factory.core.jobs.cluster.probe", address],
                             capture_output=True, text=True, timeout=timeout, encoding="utf-8", errors="replace")
        lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
        answer = json.loads(lines[-1]) if lines else {
            "ok": False, "error": (out.stderr.strip().splitlines() or [f"exit code {out.returncode}"])[-1][:500]}
    except subprocess.TimeoutExpired:
        answer = {"ok": False, "error": f"no answer within {timeout:.0f} s"}
    except LoRAFactoryError as exc:
        answer = {"ok": False, "error": exc.message_en, "error_ja": exc.message_ja, "code": exc.code}
    except (OSError, ValueError) as exc:
        answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    answer.setdefault("address", address)
    answer["checked_at"] = time.time()
    answer["took_s"] = round(time.time() - started, 2)
    return answer


class ClusterMonitor:
    """The last probe of each cluster address, refreshed in the background when older than ``max_age``."""

    def __init__(self, home: Path, max_age: float = 10.0) -> None:
        self.home = Path(home)
        self.max_age = max_age
        self._last: dict[str, dict[str, Any]] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    def configured_address(self) -> str | None:
        from lora_factory.core.jobs.cluster.config import cluster_address

        try:
            return cluster_address(self.home)
        except Exception:  # noqa: BLE001 - a damaged settings file is reported by the settings card
            return None

    def snapshot(self, address: str | None = None, wait: bool = False,
                 timeout: float = PROBE_TIMEOUT_S) -> dict[str, Any] | None:
        """The last answer for ``address`` (default: the configured cluster), None before the first;
        starts a refresh when it is stale. With ``wait``, blocks until the first answer when there is none."""
        address = address or self.configured_address()
        if not address:
            return None
        with self._lock:
            last = self._last.get(address)
            stale = last is None or time.time() - last["checked_at"] > self.max_age
            thread = self._threads.get(address)
            if stale and not (thread and thread.is_alive()):
                thread = threading.Thread(target=self._refresh, args=(address,), daemon=True,
                                          name="lora-factory-cluster-probe")
                self._threads[address] = thread
                thread.start()
        if wait and last is None and thread is not None:
            thread.join(timeout)
            with self._lock:
                last = self._last.get(address, last)
        return last

    def view(self, wait_s: float = 15.0) -> dict[str, Any]:
        """What ``/api/system`` shows: the configured cluster, its nodes and resources, or why it does not answer."""
        address = self.configured_address()
        if not address:
            return {"configured": False}
        last = self.snapshot(address, wait=True, timeout=wait_s)
        if last is None:
            return {"configured": True, "address": address, "ok": None, "pending": True}
        return {"configured": True, **last, "address": address}

    def invalidate(self, address: str) -> None:
        """Ask again before the next decision (a cluster job just started and takes resources)."""
        with self._lock:
            if address in self._last:
                self._last[address] = {**self._last[address], "checked_at": 0.0}

    def _refresh(self, address: str) -> None:
        answer = run_probe(address)
        with self._lock:
            self._last[address] = answer


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        answer = probe(args[0])
    except Exception as exc:  # noqa: BLE001 - the caller wants the reason, in one line
        answer = {"ok": False, "address": args[0], "error": f"{type(exc).__name__}: {exc}"[:500]}
    print(json.dumps(answer, ensure_ascii=False), flush=True)
    return 0 if answer.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
