"""Who holds which device now: the scheduler's jobs, and the chat / generation model process.

Jobs hold their devices in their row (``devices``, set when the scheduler claims them), so the
server and a CLI ``--wait`` loop sharing one workspace see the same holders. The inference worker
holds a device softly: it is placed on a device no job uses, and a job that is given that device
stops it first (``gpu_release.ChatModelRelease``); the scheduler gives jobs the other devices first.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from lora_factory.core.jobs import devices as dev
from lora_factory.core.jobs.store import JobStore


class DeviceTable:
    def __init__(self, store: JobStore) -> None:
        self.store = store
        self._devices: list[dict[str, Any]] | None = None
        self._lock = threading.Lock()
        # the inference worker's device while it runs (set by the server's wiring, services.py)
        self.inference_device: Callable[[], str | None] = lambda: None

    def all(self) -> list[dict[str, Any]]:
        """The machine's devices, learnt once (nvidia-smi takes a moment; devices do not come and go)."""
        with self._lock:
            if self._devices is None:
                self._devices = dev.inventory()
            return self._devices

    def ids(self) -> list[str]:
        return dev.device_ids(self.all())

    def resolve(self, requested: int | list[int | str] | None, default: int) -> dev.DeviceRequest:
        return dev.resolve_request(requested, default, self.ids())

    def worker_env(self, assigned: list[str]) -> dict[str, str]:
        return dev.worker_env(assigned, self.ids())

    def soft_held(self) -> set[str]:
        held = self.inference_device()
        return {held} if held else set()

    def busy(self) -> dict[str, str]:
        """device id -> the running job on it."""
        return {d: job["id"] for job in self.store.by_status("running") for d in (job.get("devices") or [])}

    def place_inference(self) -> str | None:
        """The device for the chat / generation model: the last free one (jobs take the first ones),
        else the last one, shared as before devices existed; None where there is no device."""
        ids = self.ids()
        if not ids:
            return None
        busy = self.busy()
        free = [d for d in ids if d not in busy]
        return (free or ids)[-1]

    def view(self) -> list[dict[str, Any]]:
        """``GET /api/system``'s ``devices``: each device and what runs on it."""
        running = {job["id"]: job for job in self.store.by_status("running")}
        busy = self.busy()
        inference = self.inference_device()
        out = []
        for device in self.all():
            job = running.get(busy.get(device["id"], ""))
            out.append({**device,
                        "job": None if job is None else {"id": job["id"], "kind": job["kind"],
                                                         "modality": job["modality"],
                                                         "output_name": job["output_name"]},
                        "inference": device["id"] == inference})
        return out
