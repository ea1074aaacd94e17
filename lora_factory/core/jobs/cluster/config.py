"""Which Ray cluster a training job goes to, and what each of its workers asks of it.

The address comes from ``LORA_FACTORY_CLUSTER`` (what ``lora-factory serve --cluster ADDRESS`` sets
for its own run) or else the ``cluster_address`` setting. Resources per worker are a free mapping
(``{"CPU": 2}``, ``{"GPU": 1, "CPU": 4}``, a custom resource): never a hard-coded GPU bundle, so a
CPU-only cluster runs the same jobs.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from lora_factory.core.errors import LoRAFactoryError
from lora_factory.core.storage.settings import load_settings

ENV_ADDRESS = "LORA_FACTORY_CLUSTER"
DEFAULT_RESOURCES = {"CPU": 1.0}
GCS_PORT, CLIENT_PORT = 6379, 10001
_ADDRESS = re.compile(r"^(ray://)?([A-Za-z0-9._-]+|\[[0-9A-Fa-f:]+\])(:(\d{1,5}))?$")


class ClusterExecutor(BaseModel):
    """The ``executor`` block of a cluster job's spec (kept in ``config.json``: a re-run goes to the same place)."""

    model_config = ConfigDict(extra="forbid")
    kind: str = "ray"
    address: str
    workers: int = Field(1, ge=1, le=1024)
    resources_per_worker: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_RESOURCES))
    use_gpu: bool = False
    workspace: str | None = Field(None, description="the workspace's path on the nodes when it differs from here")

    def need(self) -> dict[str, float]:
        """What the whole job takes from the cluster."""
        return {k: v * self.workers for k, v in self.resources_per_worker.items()}


def cluster_address(home: Path) -> str | None:
    """The cluster training jobs go to, or None for local jobs; a damaged settings file is raised."""
    return os.environ.get(ENV_ADDRESS) or load_settings(home).cluster_address or None


def parse_address(address: str) -> tuple[str, int]:
    """``host[:port]`` (a node's GCS, port 6379) or ``ray://host[:port]`` (Ray Client, port 10001)."""
    match = _ADDRESS.match(address.strip())
    if not match:
        raise LoRAFactoryError("CLUSTER_ADDRESS_INVALID",
                               f"クラスターのアドレス「{address}」が不正です(例: 10.0.0.5:6379 または ray://10.0.0.5:10001)。",
                               f"The cluster address '{address}' is invalid (e.g. 10.0.0.5:6379 or ray://10.0.0.5:10001).",
                               http_status=422, detail={"address": address})
    port = int(match.group(4)) if match.group(4) else (CLIENT_PORT if match.group(1) else GCS_PORT)
    return match.group(2).strip("[]"), port


def executor_for(home: Path, workers: int | None = None) -> ClusterExecutor | None:
    """The executor block for a new training job, or None when no cluster is set."""
    address = cluster_address(home)
    if not address:
        return None
    parse_address(address)
    settings = load_settings(home)
    resources = dict(settings.cluster_resources_per_worker or DEFAULT_RESOURCES)
    return ClusterExecutor(address=address, workers=workers or settings.cluster_workers or 1,
                           resources_per_worker=resources, use_gpu=float(resources.get("GPU", 0)) > 0,
                           workspace=settings.cluster_workspace)


def check_reachable(address: str, timeout: float = 3.0) -> None:
    """A TCP connection to the cluster's port, answered in ``timeout`` s, or a 4xx naming the address.

    Cheap enough for every submit; what the cluster holds is the probe's job (``probe.py``).
    """
    host, port = parse_address(address)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        raise unreachable(address, f"{type(exc).__name__}: {exc}") from exc


def unreachable(address: str, reason: str) -> LoRAFactoryError:
    return LoRAFactoryError(
        "CLUSTER_UNREACHABLE",
        f"Ray クラスター {address} に接続できません({reason})。クラスターが起動しているか、アドレス(設定またはserve --cluster)を確認してください。",
        f"Cannot reach the Ray cluster at {address} ({reason}). Check that the cluster is up and the address "
        "(the setting or serve --cluster).",
        http_status=409, detail={"address": address, "reason": reason})


def fits(need_per_worker: dict[str, float], workers: int, nodes: list[dict[str, Any]], key: str) -> bool:
    """Whether ``workers`` workers, each needing ``need_per_worker``, can be placed on the nodes'
    ``key`` resources (``"available"`` or ``"resources"``): one worker lives on one node, so the
    cluster's total is not enough, each worker must fit on some node (first fit)."""
    free = [dict(node.get(key) or {}) for node in nodes if node.get("alive", True)]
    for _ in range(workers):
        for node in free:
            if all(node.get(name, 0.0) + 1e-9 >= amount for name, amount in need_per_worker.items()):
                for name, amount in need_per_worker.items():
                    node[name] = node.get(name, 0.0) - amount
                break
        else:
            return False
    return True
