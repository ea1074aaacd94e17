"""Whether a training job goes to the cluster, and whether the cluster can take it: at submit and in the queue.

Submit (``plan_cluster_job``): no cluster set → None (a local job). Otherwise the address must
answer (a 409 ``CLUSTER_UNREACHABLE`` at once, never a job that fails later for it) and, when the
monitor already knows the cluster, the workers must fit its nodes at all (422 naming what it has).

Queue (``ClusterGate``): a queued cluster job starts only when its workers fit the nodes' free
resources in the monitor's last answer; meanwhile local jobs start past it.
"""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path
from typing import Any

from lora_factory.core.errors import LoRAFactoryError
from lora_factory.core.jobs.cluster.config import ClusterExecutor, check_reachable, executor_for, fits
from lora_factory.core.jobs.cluster.probe import ClusterMonitor


def plan_cluster_job(home: Path, monitor: ClusterMonitor, workers: int | None = None) -> dict[str, Any] | None:
    """The ``executor`` block for a new training job, or None when training runs here."""
    executor = executor_for(home, workers)
    if executor is None:
        return None
    if importlib.util.find_spec("ray") is None:
        raise LoRAFactoryError(
            "CLUSTER_RAY_MISSING", "Ray がインストールされていません: pip install \"lora-factory[cluster]\" を実行してください。",
            "Ray is not installed here: run pip install \"lora-factory[cluster]\".", http_status=409,
            detail={"address": executor.address})
    check_reachable(executor.address)
    snapshot = monitor.snapshot(executor.address, wait=True, timeout=30)  # a few seconds, the first time only
    if snapshot and snapshot.get("ok") and not fits(executor.resources_per_worker, executor.workers,
                                                    snapshot["nodes"], "resources"):
        raise LoRAFactoryError(
            "CLUSTER_TOO_SMALL",
            f"クラスターには {executor.workers} ワーカー(各 {executor.resources_per_worker})を置けるノードがありません"
            f"(合計 {snapshot.get('total')})。",
            f"The cluster cannot place {executor.workers} worker(s) of {executor.resources_per_worker} each on its nodes "
            f"(it has {snapshot.get('total')} in all).",
            http_status=422, detail={"need_per_worker": executor.resources_per_worker, "workers": executor.workers,
                                     "total": snapshot.get("total")})
    return executor.model_dump()


class ClusterGate:
    """The scheduler's question for each queued job: may it start now?"""

    def __init__(self, monitor: ClusterMonitor) -> None:
        self.monitor = monitor
        self._waiting_logged: set[str] = set()
        self.on_wait: Any = None  # (job_id, line) -> None: the scheduler writes it to the job's log

    def can_start(self, job_id: str, spec_json: str | None) -> bool:
        try:
            block = (json.loads(spec_json or "{}") or {}).get("executor")
            executor = ClusterExecutor.model_validate(block) if block else None
        except ValueError:  # a damaged spec (pydantic's error is one too): the worker fails it in words
            return True
        if executor is None:
            return True
        snapshot = self.monitor.snapshot(executor.address)
        if snapshot is None or not snapshot.get("checked_at"):
            return False  # the first answer is on its way (a few seconds)
        if not snapshot.get("ok"):
            return True  # the job's worker fails it with the cluster's reason (resumable), never a silent wait
        if fits(executor.resources_per_worker, executor.workers, snapshot["nodes"], "available"):
            self.monitor.invalidate(executor.address)  # what it takes shows in the next answer
            self._waiting_logged.discard(job_id)
            return True
        if job_id not in self._waiting_logged and self.on_wait is not None:
            self._waiting_logged.add(job_id)
            self.on_wait(job_id, f"waiting for the cluster's free resources: {executor.workers} worker(s) of "
                                 f"{executor.resources_per_worker}, free now {snapshot.get('available')} "
                                 f"(as of {time.strftime('%H:%M:%S', time.localtime(snapshot['checked_at']))})")
        return False
