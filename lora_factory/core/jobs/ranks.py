"""One train job across N devices: the launcher (in the job worker) and what one rank runs.

The job worker (:mod:`lora_factory.core.jobs.worker`) reads ``LORA_FACTORY_JOB_DEVICES``; with more than
one id it calls :func:`launch_ranks` instead of the hook: torch's elastic launcher (``torchrun``'s API)
starts N processes ``python -m lora_factory.core.jobs.ranks <job_id> --home DIR`` on this machine (forked
from the worker when the worker itself was forked warm, :func:`ranks_may_fork`; spawned otherwise), each
with ``RANK`` / ``LOCAL_RANK`` / ``WORLD_SIZE`` / ``MASTER_ADDR`` / ``MASTER_PORT``, and tears all of them
down as soon as one fails. Each of them calls :func:`run_rank`, which works under any launcher that sets
that environment (Ray Train's ``TorchTrainer`` on a cluster calls it too):

- it joins the process group (gloo on CPUs, nccl on GPUs) with a bounded collective timeout;
- rank 0 gets the job's real context (progress to the job row and ``metrics.jsonl``, samples, the job
  log); the others a :class:`RankContext` whose log is ``logs/<kind>_<job>.rank<N>.log`` and which
  drops progress and samples; every rank's stdout / stderr lands in its own log too;
- every rank calls the plugin's ``train`` hook; the plugin keeps file writes behind
  ``kit.dist.is_main_process()``; rank 0 writes the hook's result to ``runs/<job>/rank_result.json``,
  which the worker then publishes exactly as a one-process job's.

A rank whose parent (the worker) disappears (``kill -9``) ends itself within a second, so no rank
outlives its job.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lora_factory.core.errors import LoRAFactoryError
from lora_factory.core.jobs.context import JobContext

RANK_RESULT_FILE = "rank_result.json"
DISTRIBUTED_FILE = "distributed.json"
STRATEGY_FILE = "strategy.json"
FAILED_RANK_LINGER_S = 1.5  # how long a failing rank waits before it exits (see run_rank)
DEVICES_ENV = "LORA_FACTORY_JOB_DEVICES"


def job_devices(environ: dict[str, str] | None = None) -> list[str]:
    """The device ids the scheduler gave this job (``LORA_FACTORY_JOB_DEVICES``, comma separated)."""
    raw = (environ if environ is not None else os.environ).get(DEVICES_ENV, "") or ""
    return [part.strip() for part in raw.split(",") if part.strip()]


def rank_log_path(job_log: Path, rank: int) -> Path:
    """Rank 0 writes the job log itself; rank N its own file beside it: ``<job log stem>.rank<N>.log``."""
    job_log = Path(job_log)
    return job_log if rank == 0 else job_log.with_name(f"{job_log.stem}.rank{rank}.log")


def effective_batch(spec: dict[str, Any], world: int) -> dict[str, Any]:
    """Per device × devices × accumulation, from the spec's params (the plugins' common names)."""
    params = spec.get("params") or {}
    per_device = params.get("batch_size") or params.get("per_device_batch_size") or 1
    accum = params.get("grad_accum") or params.get("gradient_accumulation") or params.get("gradient_accumulation_steps") or 1
    try:
        per_device, accum = int(per_device), int(accum)
    except (TypeError, ValueError):
        per_device, accum = 1, 1
    return {"per_device_batch": per_device, "devices": int(world), "grad_accum": accum,
            "effective_batch": per_device * int(world) * accum}


class RankContext(JobContext):
    """The context of a rank other than 0: its own log, no progress records, no samples.

    ``should_stop`` is False here: the ranks stop together when rank 0 (which reads the cancel flag)
    says so through a collective (``kit.dist.any_rank``, ``kit.loop.stop_everywhere``).
    """

    def progress(self, step: int, max_steps: int, loss: float | None = None, **metrics: Any) -> None:
        if not self.stop_polled:
            with self.poll_lock:
                self.stop_polled = True
        self.last_metrics = {"step": int(step), "max_steps": int(max_steps or 0), "loss": loss}

    def report_sample(self, path: Path | str, step: int, kind: str = "image", caption: str | None = None,
                      **meta: Any) -> dict[str, Any]:
        return {"step": int(step), "kind": kind, "file": None, "caption": caption}


# -- one rank ----------------------------------------------------------------------------------------
def run_rank(job_id: str, home: Path, job: dict[str, Any] | None = None,
             progress: Callable[[dict[str, Any]], None] | None = None,
             stop_requested: Callable[[], bool] | None = None) -> int:
    """Run this process's share of train job ``job_id``; 0 on success (rank 0 wrote the hook's result).

    Needs ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` (``LOCAL_RANK`` for the GPU);
    raises (a non-zero exit under a launcher) when the hook fails, after logging why.

    A launcher whose ranks run on other hosts (Ray Train, ``core/jobs/cluster``) passes the job row
    (``job``: id, kind, modality, spec, resume) and rank 0's ``progress`` and ``stop_requested``: the
    ranks then never open the workspace's database (SQLite in WAL mode serves one host only).
    """
    from lora_factory.core.jobs.checkpoints import latest_checkpoint
    from lora_factory.core.jobs.store import JobStore
    from lora_factory.core.plugin_host.host import load_plugin_host
    from lora_factory.core.storage.secrets import load_secrets, merge_secrets
    from lora_factory.core.storage.settings import export_to_environment
    from lora_factory.core.storage.workspace import Workspace, write_text_atomic

    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    home = Path(home)
    plugin_host = load_plugin_host(home)
    workspace = Workspace(home, plugin_host.modalities().keys())
    store = JobStore(workspace.db_path) if job is None else None
    if store is not None:
        job = store.get(job_id)
    kind, modality = job["kind"], job["modality"]
    run_dir = workspace.run_dir(job_id)
    log_path = rank_log_path(workspace.log_path(kind, job_id), rank)
    if rank != 0:
        _redirect_output(log_path)
    resume_ckpt = latest_checkpoint(run_dir / "checkpoints") if job["resume"] else None
    if rank == 0:
        from lora_factory.core.jobs.hook_call import ProgressWriter

        writer = ProgressWriter(store, job_id) if store is not None else None
        sink = writer if writer is not None else progress
        batch = effective_batch(job["spec"], world)

        def on_progress(record: dict[str, Any]) -> None:
            if sink is not None:
                sink({**record, "world_size": world, "effective_batch": batch["effective_batch"]})

        def stop() -> bool:
            if store is not None:
                return bool(store.get(job_id)["cancel_requested_at"])
            return bool(stop_requested and stop_requested())

        ctx: JobContext = JobContext(job_id, workspace, run_dir, log_path, on_progress=on_progress,
                                     stop_requested=stop, resume_checkpoint=resume_ckpt, kind=kind, modality=modality)
    else:
        writer = None
        ctx = RankContext(job_id, workspace, run_dir, log_path, resume_checkpoint=resume_ckpt, kind=kind,
                          modality=modality)
    _watch_parent()
    ctx.log(f"rank {rank}/{world} started (pid {os.getpid()}, local rank {os.environ.get('LOCAL_RANK', '0')})")
    try:
        export_to_environment(home)
        init_process_group(rank, world)
        from lora_factory.core.jobs.hook_call import call_hook

        result = call_hook(plugin_host, kind, modality, spec=merge_secrets(job["spec"], load_secrets(run_dir)), ctx=ctx)
        if writer is not None:
            writer.flush()
        if rank == 0:
            stopped = ctx.should_stop() or bool(result.get("stopped"))
            write_text_atomic(run_dir / RANK_RESULT_FILE, json.dumps({"result": result, "stopped": stopped},
                                                                     ensure_ascii=False, default=str))
        ctx.log(f"rank {rank} finished")
        return 0
    except BaseException as exc:
        import traceback

        try:
            ctx.log(f"rank {rank} failed:\n" + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
        except OSError:
            pass
        if rank == 0:  # the worker reports the plugin's own error (its code and words), not only "rank 0 died"
            from lora_factory.core.jobs.hook_call import error_body

            try:
                write_text_atomic(run_dir / RANK_RESULT_FILE, json.dumps({"error": error_body(exc)}, ensure_ascii=False))
            except OSError:
                pass
        if world > 1:
            # a rank killed from outside dies at once, and its peers fail a moment later in their next
            # collective ("connection closed by peer"): waiting here lets the launcher, which polls every
            # 0.2 s and names the first failure it sees, find the rank that really failed first
            time.sleep(FAILED_RANK_LINGER_S)
        raise
    finally:
        _destroy_process_group()


def init_process_group(rank: int, world: int) -> None:
    """Join the job's process group (nccl when this rank has a GPU, else gloo), collectives bounded."""
    if world <= 1:
        return
    from datetime import timedelta

    import torch
    import torch.distributed as tdist

    from lora_factory.kit.dist import collective_timeout_s

    if tdist.is_initialized():
        return
    use_cuda = torch.cuda.is_available() and os.environ.get("CUDA_VISIBLE_DEVICES", None) != ""
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    tdist.init_process_group("nccl" if use_cuda else "gloo", rank=rank, world_size=world,
                             timeout=timedelta(seconds=collective_timeout_s()))


def _destroy_process_group() -> None:
    if "torch" not in sys.modules:
        return
    import torch.distributed as tdist

    if tdist.is_available() and tdist.is_initialized():
        try:
            tdist.destroy_process_group()
        except Exception:  # noqa: BLE001 - a peer already gone: nothing left to tidy
            pass


def _redirect_output(log_path: Path) -> None:
    """This rank's stdout / stderr (warnings, tracebacks, native crashes) into its own log file."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(str(log_path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _watch_parent(interval: float = 0.5) -> None:
    """End this rank when its parent (the job worker, the launcher) is gone: no orphan keeps a device."""
    parent = os.getppid()
    if parent <= 1:
        return

    def watch() -> None:
        import psutil

        while True:
            time.sleep(interval)
            if os.getppid() != parent or not psutil.pid_exists(parent):
                os._exit(3)

    threading.Thread(target=watch, name="lora-factory-parent-watch", daemon=True).start()


# -- the launcher (inside the job worker) --------------------------------------------------------------
def launch_ranks(job: dict[str, Any], home: Path, ctx: JobContext, devices: list[str]) -> dict[str, Any]:
    """Start ``len(devices)`` ranks of ``job`` under torch's elastic launcher; wait; return rank 0's result.

    A rank that fails ends the others at once (the launcher's monitor) and the job with
    ``RANK_FAILED``, naming the rank and the last lines of its log.
    """
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, Std
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    world = len(devices)
    run_dir = Path(ctx.run_dir)
    (run_dir / RANK_RESULT_FILE).unlink(missing_ok=True)
    info = {"world_size": world, "devices": devices, "launcher": "torch.distributed.run (elastic_launch)",
            "backend": "nccl" if any(not d.startswith("cpu") for d in devices) else "gloo",
            **effective_batch(job["spec"], world)}
    (run_dir / DISTRIBUTED_FILE).write_text(json.dumps(info, ensure_ascii=False, indent=2), encoding="utf-8")
    ctx.log(f"launching {world} ranks on devices {', '.join(devices)} ({info['backend']}); effective batch "
            f"{info['per_device_batch']} per device × {world} devices × {info['grad_accum']} accumulation = "
            f"{info['effective_batch']}")
    forked = ranks_may_fork()
    config = LaunchConfig(
        min_nodes=1, max_nodes=1, nproc_per_node=world, run_id=f"lora-factory-{job['id']}",
        rdzv_backend="c10d", rdzv_endpoint=f"127.0.0.1:{_free_port()}", rdzv_configs={"timeout": 120},
        max_restarts=0, monitor_interval=0.2, start_method="fork" if forked else "spawn", shutdown_timeout=5,
        logs_specs=DefaultLogsSpecs(log_dir=os.devnull, redirects=Std.NONE),
    )
    ctx.log(f"ranks {'forked from this warm worker' if forked else 'started as new processes'}")
    try:
        if forked:
            elastic_launch(config, forked_rank)(job["id"], str(home))
        else:
            elastic_launch(config, sys.executable)("-m", "lora_factory.core.jobs.ranks", job["id"], "--home", str(home))
    except ChildFailedError as exc:
        raise rank_failure(exc, ctx, run_dir) from None
    saved = _read_json(run_dir / RANK_RESULT_FILE)
    if not isinstance(saved, dict) or not isinstance(saved.get("result"), dict):
        raise LoRAFactoryError("RANK_FAILED", "ランク 0 が結果を残さずに終了しました。ログを確認してください。",
                               "Rank 0 ended without leaving a result. See the log.", http_status=500,
                               detail={"rank": 0})
    (run_dir / RANK_RESULT_FILE).unlink(missing_ok=True)  # the worker keeps its own copy (hook_result.json)
    result = dict(saved["result"])
    result["distributed"] = info
    if saved.get("stopped"):
        result["stopped"] = True
    return result


def ranks_may_fork() -> bool:
    """Fork the ranks from this worker instead of spawning them: where this worker was itself forked from
    the warm process (its libraries imported, a fork checked safe there: ``core.jobs.zygote``) and has not
    initialised CUDA (a CUDA context does not survive a fork; a rank initialises its own).

    A spawned rank imports torch, transformers and peft (or diffusers) again: several seconds of CPU
    per rank before the first step, on every job.
    """
    from lora_factory.core.jobs.fork_state import forked_warm

    if not forked_warm():
        return False
    torch = sys.modules.get("torch")
    return torch is None or not torch.cuda.is_initialized()


def forked_rank(job_id: str, home: str) -> int:
    """One rank in a fork of the job worker: what ``python -m lora_factory.core.jobs.ranks`` runs.

    The launcher's signal handlers (SIGTERM raises in the launcher) are reset to what a new process
    has, so a rank the launcher ends dies of the signal as a spawned one does; ps shows the rank's
    own command line.
    """
    import signal

    from lora_factory.core.jobs.fork_state import show_as

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    show_as("lora_factory.core.jobs.ranks", [job_id, "--home", home])
    return run_rank(job_id, Path(home))


def rank_failure(exc: Any, ctx: JobContext, run_dir: Path) -> LoRAFactoryError:
    """The job's error for a failed rank: which one (the one killed, else the first to fail), its exit
    code and its log's last lines; rank 0's own error (the plugin's code and words) when it left one."""
    failures = dict(getattr(exc, "failures", {}) or {})
    if not failures:
        return LoRAFactoryError("RANK_FAILED", "ランクが失敗しました。", "A rank failed.", http_status=500)
    # the launcher ends the surviving ranks with SIGTERM once one failed: those are not the cause
    import signal

    causes = [r for r, f in failures.items() if f.exitcode != -int(signal.SIGTERM)] or list(failures)
    rank = min(causes, key=lambda r: (failures[r].timestamp, r))
    code = failures[rank].exitcode
    tail = tail_lines(rank_log_path(Path(ctx.log_path), rank), 12)
    saved = _read_json(run_dir / RANK_RESULT_FILE)
    if rank == 0 and isinstance(saved, dict) and isinstance(saved.get("error"), dict):
        err = saved["error"]
        return LoRAFactoryError(err.get("code") or "RANK_FAILED", err.get("message_ja") or err.get("message", ""),
                                err.get("message") or "", http_status=500,
                                detail={"rank": 0, "exit_code": code, "last_lines": tail, "cause": err.get("detail")})
    how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
    ctx.log(f"rank {rank} failed ({how}); its last log lines:\n" + "\n".join(tail))
    return LoRAFactoryError(
        "RANK_FAILED",
        f"ランク {rank} が異常終了しました({how})。他のランクも停止しました。最後のログ: {' / '.join(tail[-3:])}",
        f"Rank {rank} failed ({how}); the other ranks were stopped. Its last log lines: {' / '.join(tail[-3:])}",
        http_status=500, detail={"rank": rank, "exit_code": code, "last_lines": tail,
                                 "failed_ranks": sorted(failures)})


def tail_lines(path: Path, count: int) -> list[str]:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - 16384))
            lines = fh.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return []
    return [line for line in lines if line.strip()][-count:]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lora_factory.core.jobs.ranks")
    parser.add_argument("job_id")
    parser.add_argument("--home", required=True)
    args = parser.parse_args(argv)
    return run_rank(args.job_id, Path(args.home))


if __name__ == "__main__":
    sys.exit(main())
