"""What each Ray Train worker runs for a cluster job (``TorchTrainer(train_loop_per_worker=…)``).

Ray Train has already set the torch.distributed environment (``RANK``, ``WORLD_SIZE``,
``MASTER_ADDR`` …) and the process group. The worker finds the workspace on the node's shared
storage, refuses at once when it is not there (a silent empty workspace would train nothing), and
runs the job's hook with a :class:`JobContext` whose row updates and stop flag go through the
driver's channel actor instead of SQLite. Files (log, metrics, samples, checkpoints, output) are
written to the shared run folder, as a local job writes them.
"""

from __future__ import annotations

import json
import os
import socket
import traceback
from pathlib import Path
from typing import Any

from lora_factory.core.errors import LoRAFactoryError, as_user_error


def remap_paths(value: Any, old: str, new: str) -> Any:
    """Absolute paths of the spec under this machine's workspace, moved to the nodes' mount point."""
    if old == new:
        return value
    if isinstance(value, str) and (value == old or value.startswith(old.rstrip("/\\") + os.sep)):
        return new + value[len(old):]
    if isinstance(value, dict):
        return {k: remap_paths(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [remap_paths(v, old, new) for v in value]
    return value


def check_shared_workspace(home: Path, job_id: str) -> Path:
    """The run folder as this node sees it; an error naming the node when the workspace is not shared."""
    config = home / "runs" / job_id / "config.json"
    try:
        same_job = json.loads(config.read_text(encoding="utf-8")).get("job_id") == job_id
    except (OSError, ValueError):
        same_job = False
    if not same_job:
        node = socket.gethostname()
        raise LoRAFactoryError(
            "CLUSTER_WORKSPACE_NOT_SHARED",
            f"ノード {node} からワークスペース {home} が見えません({config} がありません)。すべてのノードで同じワークスペースを"
            "共有ストレージ(NFS など)にマウントし、別のパスなら設定 cluster_workspace にそのパスを指定してください(docs/scaling.md)。",
            f"Node {node} does not see the workspace {home} ({config} is missing). Mount the workspace on shared storage "
            "(NFS, SMB …) on every node, and set cluster_workspace to its path there if it differs (docs/scaling.md).",
            http_status=500, detail={"node": node, "path": str(home)})
    return config.parent


def train_loop_per_worker(config: dict[str, Any]) -> None:
    import ray
    import ray.train

    channel = config["channel"]
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    try:
        home = Path(config["home"])
        run_dir = check_shared_workspace(home, config["job_id"])
        if world > 1:
            result = _run_as_rank(config, home, run_dir, channel, rank, world)
        else:
            result = _run_hook(config, home, run_dir, channel, rank)
        if rank == 0:
            ray.get(channel.set_result.remote(result))
    except BaseException as exc:
        body = _error_body(exc)
        cause = body.get("detail")
        body["detail"] = {**(cause if isinstance(cause, dict) else {"cause": cause}), "rank": rank, "node": socket.gethostname(),
                          "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-4000:]}
        ray.get(channel.set_error.remote(rank, body))
        raise


def _run_as_rank(config: dict[str, Any], home: Path, run_dir: Path, channel: Any, rank: int,
                 world: int) -> dict[str, Any]:
    """Several workers: each runs its share through the rank entry point of issue 15 §2, under the
    torch.distributed environment Ray Train set. The job row and rank 0's progress and stop flag come
    and go through the driver's channel, so no rank opens the workspace's database; rank 0 leaves the
    hook's result in the run folder, as under the local launcher."""
    import ray

    from lora_factory.core.jobs.ranks import RANK_RESULT_FILE, run_rank

    job = {"id": config["job_id"], "kind": config["kind"], "modality": config["modality"],
           "spec": dict(config["spec"]), "resume": bool(config.get("resume_checkpoint"))}
    code = run_rank(config["job_id"], home, job=job, progress=lambda record: channel.progress.remote(record),
                    stop_requested=lambda: bool(ray.get(channel.should_stop.remote())))
    if code:
        raise LoRAFactoryError("RANK_FAILED", f"ランク {rank} が終了コード {code} で終了しました。",
                               f"Rank {rank} ended with exit code {code}.", http_status=500, detail={"rank": rank})
    if rank != 0:
        return {}
    saved = json.loads((run_dir / RANK_RESULT_FILE).read_text(encoding="utf-8"))
    result = dict(saved["result"])
    result["distributed"] = {"world_size": world, "launcher": "ray.train.torch.TorchTrainer"}
    if saved.get("stopped"):
        result["stopped"] = True
    return result


def _run_hook(config: dict[str, Any], home: Path, run_dir: Path, channel: Any, rank: int) -> dict[str, Any]:
    import ray

    from lora_factory.core.jobs.context import JobContext
    from lora_factory.core.plugin_host.host import load_plugin_host
    from lora_factory.core.storage.secrets import load_secrets, merge_secrets
    from lora_factory.core.storage.settings import export_to_environment
    from lora_factory.core.storage.workspace import Workspace

    kind, modality, job_id = config["kind"], config["modality"], config["job_id"]
    plugin_host = load_plugin_host(home)
    workspace = Workspace(home, plugin_host.modalities().keys())
    export_to_environment(home)
    resume = Path(config["resume_checkpoint"]) if config.get("resume_checkpoint") else None
    main = rank == 0

    def on_progress(record: dict[str, Any]) -> None:
        channel.progress.remote(record)

    def stop_requested() -> bool:
        return bool(ray.get(channel.should_stop.remote()))

    log_path = workspace.log_path(kind, job_id)
    ctx = JobContext(job_id, workspace, run_dir, log_path, on_progress=on_progress if main else None,
                     stop_requested=stop_requested, resume_checkpoint=resume, kind=kind, modality=modality)
    ctx.log(f"rank {rank} started on node {socket.gethostname()} (pid {os.getpid()})")
    spec = merge_secrets(dict(config["spec"]), load_secrets(run_dir))
    result = plugin_host.call("train", modality, spec=spec, ctx=ctx)  # only train jobs go to a cluster
    if result is None:
        raise LoRAFactoryError("HOOK_NOT_IMPLEMENTED", f"モダリティ「{modality}」のプラグインは train を実装していません。",
                               f"No plugin implements train for modality '{modality}'.", http_status=400)
    return dict(result) if isinstance(result, dict) else {"value": result}


def _error_body(exc: BaseException) -> dict[str, Any]:
    """The job row's error, as the local worker writes it (``worker.error_body``, not imported: the
    worker imports this package)."""
    known = as_user_error(exc)
    if known is not None:
        return {"code": known.code, "message": known.message_en, "message_ja": known.message_ja, "detail": known.detail}
    return {"code": "JOB_FAILED", "message": f"{type(exc).__name__}: {exc}",
            "message_ja": f"ジョブが失敗しました: {type(exc).__name__}: {exc}", "detail": None}
