"""The machine's devices, a job's request for some of them, and the environment a worker gets.

The server learns the GPUs once, at start, from ``nvidia-smi`` (never by importing torch), or from
``LORA_FACTORY_DEVICES``:

- unset or ``auto``: every GPU ``nvidia-smi`` lists (none when it is absent or does not answer);
- ``cpu:N``: N simulated devices ``cpu:0`` … ``cpu:N-1`` (machines without a GPU test the
  scheduling with them; the workers run on the CPU);
- ``0,2``: only these GPUs (the others are left to other programs);
- ``none``: no device; every job runs on the CPU as on a machine without a GPU.

A device id is a string: ``"0"``, ``"1"`` … for CUDA GPUs (``nvidia-smi``'s index, with
``CUDA_DEVICE_ORDER=PCI_BUS_ID`` so CUDA numbers them the same), ``"cpu:0"`` … for simulated ones.
A request (``"devices"`` on a job route, ``--devices`` in the CLI) is a count or a list of
indices / ids; it is checked at submit time against what exists (422 naming the devices there).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from lora_factory.core.errors import LoRAFactoryError

ENV_DEVICES = "LORA_FACTORY_DEVICES"
ENV_JOB_DEVICES = "LORA_FACTORY_JOB_DEVICES"
ENV_INFERENCE_DEVICE = "LORA_FACTORY_INFERENCE_DEVICE"
DeviceRequest = int | list[str]


def inventory(env: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """The devices jobs may use, in order: ``{"id", "kind": "cuda" | "cpu", "name", "vram_total_mb"}``."""
    env = os.environ if env is None else env
    declared = (env.get(ENV_DEVICES) or "auto").strip().lower()
    if declared == "none":
        return []
    if declared.startswith("cpu:"):
        try:
            count = int(declared[4:])
        except ValueError:
            count = -1
        if count < 0:
            raise LoRAFactoryError("DEVICES_SETTING_INVALID",
                                   f"{ENV_DEVICES}={declared} は読めません(例: cpu:2、0,1、none)。",
                                   f"{ENV_DEVICES}={declared} is not understood (e.g. cpu:2, 0,1, none).")
        return [{"id": f"cpu:{i}", "kind": "cpu", "name": f"Simulated device {i} (CPU)", "vram_total_mb": None}
                for i in range(count)]
    from lora_factory.core.system_info import gpus

    found = [{"id": str(g["index"]), "kind": "cuda", "name": g["name"], "vram_total_mb": g["vram_total_mb"]}
             for g in gpus(timeout=5)]
    if declared == "auto":
        return found
    wanted = [part.strip() for part in declared.split(",") if part.strip()]
    return [d for d in found if d["id"] in wanted]


def device_ids(devices: Iterable[dict[str, Any]]) -> list[str]:
    return [d["id"] for d in devices]


def resolve_request(requested: int | list[int | str] | None, default: int, available: list[str]) -> DeviceRequest:
    """What a job asks for, checked against ``available``: a count, or the exact ids it wants.

    ``None`` takes ``default`` (1 for GPU work, 0 for CPU-only jobs), lowered to 0 on a machine with
    no device, so such a machine runs every job on the CPU as before devices existed.
    """
    if requested is None:
        return default if available else 0
    if isinstance(requested, bool):  # True is an int to Python, never a device count to a user
        raise too_many(str(requested), available)
    if isinstance(requested, int):
        if requested < 0 or requested > len(available):
            raise too_many(str(requested), available)
        return requested
    ids: list[str] = []
    for item in requested:
        wanted = normalise_id(item, available)
        if wanted is None:
            raise too_many(str(item), available)
        if wanted not in ids:
            ids.append(wanted)
    return ids


def parse_cli(value: str) -> int | list[str]:
    """``--devices 2`` (a count) or ``--devices 0,2`` / ``cuda:2`` / ``cpu:0,cpu:1`` (which ones)."""
    text = value.strip()
    if text.isdigit():
        return int(text)
    return [part.strip() for part in text.split(",") if part.strip()]


def normalise_id(item: int | str, available: list[str]) -> str | None:
    """``1`` / ``"1"`` / ``"cuda:1"`` name GPU 1 (or ``cpu:1`` where the devices are simulated); an id
    names itself."""
    text = str(item).strip().lower()
    if text.startswith("cuda:"):
        text = text[5:]
    if text in available:
        return text
    if text.isdigit() and f"cpu:{text}" in available:
        return f"cpu:{text}"
    return None


def too_many(asked: str, available: list[str]) -> LoRAFactoryError:
    there = ", ".join(available) if available else "なし"
    there_en = ", ".join(available) if available else "none"
    return LoRAFactoryError(
        "DEVICES_UNAVAILABLE",
        f"デバイス指定「{asked}」はこのマシンにありません。使えるデバイス: {there}。",
        f"Devices '{asked}' do not exist on this machine. Devices here: {there_en}.",
        http_status=422, detail={"requested": asked, "available": available})


def choose(request: DeviceRequest | None, pool: list[str], busy: set[str], reserved: set[str],
           avoid: set[str] = frozenset()) -> list[str] | None:  # type: ignore[assignment]
    """The devices a queued job gets now, or None when it must wait.

    ``reserved`` are devices an earlier waiting job is waiting for: a later job never takes one,
    so a large job is not starved by small ones passing it. ``avoid`` (the chat model's device) is
    taken last, so the chat stays loaded while another device is free.
    """
    free = [d for d in pool if d not in busy and d not in reserved]
    if isinstance(request, list):
        return list(request) if all(d in free for d in request) else None
    count = int(request or 0)
    if len(free) < count:
        return None
    free.sort(key=lambda d: d in avoid)
    return free[:count]


def wants(request: DeviceRequest | None, pool: list[str]) -> set[str]:
    """The devices a waiting job may need: its list, or any device of the pool for a count."""
    if isinstance(request, list):
        return set(request)
    return set(pool) if request else set()


def worker_env(assigned: list[str], pool: list[str]) -> dict[str, str]:
    """The contract's worker environment: the ids, and the GPUs CUDA may see ("" hides them all).

    With an empty pool (no device known: no ``nvidia-smi``, e.g. a ROCm or Apple machine) CUDA's
    variables are left as the server has them, so such a machine trains exactly as before.
    """
    env = {ENV_JOB_DEVICES: ",".join(assigned)}
    if pool:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(d for d in assigned if not d.startswith("cpu:"))
        env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    return env
