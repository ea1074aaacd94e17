"""The local job worker's side of a cluster job: connect to Ray, run ``TorchTrainer``, relay row and stop.

The job worker process stays the job's owner, exactly as for a local job: the scheduler watches its
pid, its stdout is the job's log (Ray forwards the ranks' output there), it writes the row and
publishes the adapter. Killing it (cancel past the grace period) ends the Ray job and its workers,
since Ray tears down what a driver owned when the driver goes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray

from lora_factory.core.errors import LoRAFactoryError
from lora_factory.core.jobs.cluster.config import ClusterExecutor, check_reachable
from lora_factory.core.jobs.cluster.rank import remap_paths, train_loop_per_worker

RELAY_INTERVAL_S = 0.5


@ray.remote(num_cpus=0)
class JobChannel:
    """Between the ranks and the driver: progress records up, the stop flag down, the outcome back."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.stop = False
        self.polled = False
        self.result: dict[str, Any] | None = None
        self.errors: dict[int, dict[str, Any]] = {}

    def progress(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        self.polled = True

    def should_stop(self) -> bool:
        self.polled = True
        return self.stop

    def request_stop(self) -> None:
        self.stop = True

    def drain(self) -> tuple[list[dict[str, Any]], bool]:
        records, self.records = self.records, []
        return records, self.polled

    def set_result(self, result: dict[str, Any]) -> None:
        self.result = result

    def set_error(self, rank: int, body: dict[str, Any]) -> None:
        self.errors[rank] = body

    def outcome(self) -> tuple[dict[str, Any] | None, dict[int, dict[str, Any]]]:
        return self.result, self.errors


def run_on_cluster(executor: dict[str, Any], job: dict[str, Any], spec: dict[str, Any], home: Path, ctx: Any,
                   on_progress: Callable[[dict[str, Any]], None], stop_requested: Callable[[], bool],
                   resume_checkpoint: Path | None) -> dict[str, Any]:
    """Run the job's hook on the cluster's workers; returns the hook's result like ``call_hook``."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    ex = ClusterExecutor.model_validate(executor)
    check_reachable(ex.address)
    local_home = str(Path(home).resolve())
    remote_home = ex.workspace or local_home
    ctx.log(f"cluster job: connecting to Ray at {ex.address}; {ex.workers} worker(s), each {ex.resources_per_worker}; "
            f"workspace on the nodes: {remote_home} (shared storage)")
    ray.init(address=ex.address, logging_level="WARNING", log_to_driver=True)
    relay: _Relay | None = None
    try:
        channel = JobChannel.options(scheduling_strategy=_this_node()).remote()
        config = {"channel": channel, "job_id": job["id"], "kind": job["kind"], "modality": job["modality"],
                  "home": remote_home, "local_home": local_home, "spec": remap_paths(spec, local_home, remote_home),
                  "resume_checkpoint": remap_paths(str(resume_checkpoint), local_home, remote_home)
                  if resume_checkpoint else None}
        remote_run = remap_paths(str(ctx.run_dir.resolve()), local_home, remote_home)
        trainer = TorchTrainer(
            train_loop_per_worker=train_loop_per_worker, train_loop_config=config,
            scaling_config=ScalingConfig(num_workers=ex.workers, use_gpu=ex.use_gpu,
                                         resources_per_worker=dict(ex.resources_per_worker)),
            run_config=RunConfig(name="ray_train", storage_path=str(Path(remote_run)),
                                 failure_config=FailureConfig(max_failures=0)))
        relay = _Relay(channel, ctx, on_progress, stop_requested).start()
        try:
            trainer.fit()
        except Exception as exc:  # noqa: BLE001 - a rank's own error, or the cluster's (a node lost)
            relay.finish()
            _, errors = ray.get(channel.outcome.remote())
            raise _failure(errors, exc, ex.address) from exc
        relay.finish()
        result, errors = ray.get(channel.outcome.remote())
        if result is None:
            raise _failure(errors, RuntimeError("rank 0 returned no result"), ex.address)
        return result
    finally:
        if relay is not None:
            relay.finish()
        ray.shutdown()


def _this_node() -> Any:
    """The channel lives beside the driver, so losing a worker's node does not lose the job's record."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    try:
        return NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=True)
    except Exception:  # noqa: BLE001 - Ray Client: the driver is no node; anywhere will do
        return "DEFAULT"


def _failure(errors: dict[int, dict[str, Any]], exc: BaseException, address: str) -> LoRAFactoryError:
    """The lowest rank's own error when a rank raised one; otherwise the cluster's reason (a worker or
    its node died), which leaves the job failed and resumable from its last checkpoint."""
    if errors:
        body = errors[min(errors)]
        return LoRAFactoryError(body["code"], body["message_ja"], body["message"], detail=body.get("detail"))
    reason = f"{type(exc).__name__}: {exc}".strip()[:1500]
    return LoRAFactoryError(
        "CLUSTER_WORKER_LOST",
        f"Ray クラスター({address})のワーカーまたはノードが失われ、ジョブが失敗しました: {reason}。"
        "最後のチェックポイントから再開できます。",
        f"A worker or node of the Ray cluster ({address}) was lost and the job failed: {reason}. "
        "Resume it from its last checkpoint.", http_status=500, detail={"address": address, "reason": reason})


class _Relay:
    """Every 0.5 s: the ranks' progress into the job row, a cancel from the row to the ranks."""

    def __init__(self, channel: Any, ctx: Any, on_progress: Callable[[dict[str, Any]], None],
                 stop_requested: Callable[[], bool]) -> None:
        self.channel, self.ctx, self.on_progress, self.stop_requested = channel, ctx, on_progress, stop_requested
        self._done = threading.Event()
        self._stop_sent = False
        self._thread = threading.Thread(target=self._run, name="lora-factory-cluster-relay", daemon=True)

    def start(self) -> _Relay:
        self._thread.start()
        return self

    def finish(self) -> None:
        if not self._done.is_set():
            self._done.set()
            self._thread.join(timeout=10)
            try:
                self._pass()  # the last records
            except Exception:  # noqa: BLE001 - the channel is gone with its node; fit() said why
                pass

    def _run(self) -> None:
        while not self._done.wait(RELAY_INTERVAL_S):
            try:
                self._pass()
            except Exception as exc:  # noqa: BLE001 - the channel went with its node: fit() will say why
                self.ctx.log(f"cluster relay: {type(exc).__name__}: {exc}")

    def _pass(self) -> None:
        records, polled = ray.get(self.channel.drain.remote(), timeout=30)
        for record in records:
            self.ctx.last_metrics = record
            self.on_progress(record)
        if polled and not self.ctx.stop_polled:
            with self.ctx.poll_lock:  # the ranks stop cooperatively from now on (see worker.StopWhileLoading)
                self.ctx.stop_polled = True
        if not self._stop_sent and self.stop_requested():
            self.channel.request_stop.remote()
            self._stop_sent = True
            self.ctx.log("cancel requested: asking the cluster's ranks to stop")
