"""What runs inside a job's own process: ``python -m lora_factory.core.jobs.worker <job_id> --home DIR``.

It loads the same plugins as the server, builds the :class:`JobContext`, calls the hook for the
job's kind, moves the output into place, registers it with its lineage and writes the final state.
Whatever happens, the log and the run folder (checkpoints, partial output) stay for the user.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

from lora_factory.core.errors import LoRAFactoryError
from lora_factory.core.jobs.checkpoints import latest_checkpoint
from lora_factory.core.jobs.context import JobContext
from lora_factory.core.jobs.hook_call import ProgressWriter, call_hook, error_body
from lora_factory.core.jobs.ranks import job_devices
from lora_factory.core.jobs.store import JobStore
from lora_factory.core.plugin_host.host import load_plugin_host
from lora_factory.core.process import create_time
from lora_factory.core.storage.db import now_iso
from lora_factory.core.storage.secrets import load_secrets, merge_secrets
from lora_factory.core.storage.settings import export_to_environment
from lora_factory.core.storage.workspace import Workspace, has_files, write_text_atomic

HOOK_RESULT_FILE = "hook_result.json"  # the hook's result, once its output is complete: a resume only publishes


class StopWhileLoading:
    """Honours a cancel while a train hook is still loading (model, tokenizer, data).

    A plugin can only stop cooperatively once it polls ``ctx.should_stop()``; before that (a model
    load may take minutes) a cancel would wait for the host's grace period and end in a kill. Until
    the plugin's first poll or progress report, this thread ends the job at once instead: status
    ``canceled``, the previous attempt's partial output put back, the checkpoints untouched.
    """

    def __init__(self, store: JobStore, job_id: str, ctx: JobContext, restore: Any, interval: float = 0.3) -> None:
        self.store, self.job_id, self.ctx, self.restore, self.interval = store, job_id, ctx, restore, interval
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lora-factory-stop-while-loading", daemon=True)

    def start(self) -> StopWhileLoading:
        self._thread.start()
        return self

    def finish(self) -> None:
        self._done.set()

    def _run(self) -> None:
        while not self._done.wait(self.interval):
            with self.ctx.poll_lock:
                if self.ctx.stop_polled or self._done.is_set():
                    return
                try:
                    requested = bool(self.store.get(self.job_id)["cancel_requested_at"])
                except Exception:  # noqa: BLE001 - a busy database: ask again
                    continue
                if not requested:
                    continue
                _log_quietly(self.ctx, "キャンセル: 読み込み中に停止しました / canceled while loading: stopped at once")
                self.restore()
                self.store.update(self.job_id, status="canceled", finished_at=now_iso(), exit_code=0, error={
                    "code": "CANCELED_WHILE_LOADING", "message": "Canceled while the job was loading; nothing was trained.",
                    "message_ja": "読み込み中にキャンセルしました(学習は始まっていません)。", "detail": None})
                os._exit(0)


def _log_quietly(ctx: JobContext, message: str) -> None:
    try:
        ctx.log(message)
    except OSError:  # a full disk: the row still gets the error
        pass


def run_job(job_id: str, home: Path) -> int:
    from lora_factory.core.jobs.finalize import finalize_job  # keeps this module's import light

    plugin_host = load_plugin_host(home)
    workspace = Workspace(home, plugin_host.modalities().keys())
    store = JobStore(workspace.db_path)
    job = store.get(job_id)
    run_dir = workspace.run_dir(job_id)
    kind, modality = job["kind"], job["modality"]
    writer = ProgressWriter(store, job_id)

    def stop_requested() -> bool:
        return bool(store.get(job_id)["cancel_requested_at"])

    resume_ckpt = latest_checkpoint(run_dir / "checkpoints") if job["resume"] else None
    ctx = JobContext(job_id, workspace, run_dir, workspace.log_path(kind, job_id), on_progress=writer,
                     stop_requested=stop_requested, resume_checkpoint=resume_ckpt, kind=kind, modality=modality)
    previous_output = run_dir / "output.previous"
    result_file = run_dir / HOOK_RESULT_FILE

    def restore_previous_output() -> None:
        """The partial output of the attempt before a resume comes back when this attempt made none."""
        if previous_output.is_dir() and not has_files(ctx.output_dir):
            shutil.rmtree(ctx.output_dir, ignore_errors=True)
            os.replace(previous_output, ctx.output_dir)

    try:
        ctx.log(f"worker started (pid {os.getpid()}) for {kind} job {job_id}, modality {modality}"
                + (f", resuming from {resume_ckpt.name}" if resume_ckpt else ""))
        store.update(job_id, pid=os.getpid(), pid_create_time=create_time(os.getpid()))
        export_to_environment(home)  # a damaged settings.json is this job's error, in words
        saved = _read_hook_result(result_file) if job["resume"] else None
        if saved is not None and has_files(ctx.output_dir):
            ctx.log("training had already finished: publishing its output only / 学習は完了済み: 出力の公開のみ行います")
            result, stopped = saved["result"], bool(saved.get("stopped"))
        else:
            result_file.unlink(missing_ok=True)
            if job["resume"] and has_files(ctx.output_dir):
                shutil.rmtree(previous_output, ignore_errors=True)
                os.replace(ctx.output_dir, previous_output)  # rebuilt by this attempt, kept until it has
                ctx.output_dir.mkdir(parents=True)
            for record in plugin_host.records:
                if record.error:
                    ctx.log(f"plugin {record.name} not loaded: {record.error}")
            devices = job_devices()
            # several devices: N ranks under the launcher (benchmarks/gpu_scale.py also launches one rank)
            launched = kind == "train" and (len(devices) > 1 or os.environ.get("LORA_FACTORY_ALWAYS_LAUNCH") == "1")
            # the ranks load on their own; a cancel while they load ends in the grace kill
            watcher = StopWhileLoading(store, job_id, ctx, restore_previous_output).start() \
                if kind == "train" and not launched else None
            try:
                spec = dict(job["spec"])
                executor = spec.pop("executor", None)  # where the hook runs is the host's business, not the plugin's
                if executor:  # a Ray cluster's workers run the ranks (run_rank), driven from here
                    from lora_factory.core.jobs.cluster.driver import run_on_cluster

                    result = run_on_cluster(executor, job, spec, home, ctx, on_progress=writer,
                                            stop_requested=stop_requested, resume_checkpoint=resume_ckpt)
                elif launched:
                    devices = devices or ["cpu:0"]
                    from lora_factory.core.jobs.ranks import launch_ranks

                    result = launch_ranks(job, home, ctx, devices)
                else:
                    result = call_hook(plugin_host, kind, modality, spec=merge_secrets(spec, load_secrets(run_dir)),
                                       ctx=ctx)
            finally:
                if watcher is not None:
                    with ctx.poll_lock:
                        watcher.finish()
            writer.flush()
            stopped = ctx.should_stop() or bool(result.get("stopped"))
            write_text_atomic(result_file, json.dumps({"result": result, "stopped": stopped}, ensure_ascii=False,
                                                      default=str))
            shutil.rmtree(previous_output, ignore_errors=True)
        result = finalize_job(workspace, store, job, ctx, result, plugin_host, canceled=stopped)
        final = "canceled" if stopped else "completed"
        store.update(job_id, status=final, finished_at=now_iso(), result=result, exit_code=0)
        result_file.unlink(missing_ok=True)
        ctx.log(f"job {final}")
        return 0
    except BaseException as exc:  # noqa: BLE001 - every failure must land in the row and the log
        try:
            writer.flush()
        except Exception:  # noqa: BLE001 - the database may be what failed
            pass
        _log_quietly(ctx, "job failed:\n" + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
        try:
            restore_previous_output()
        except OSError:
            pass
        status = "canceled" if ctx.should_stop() else "failed"
        store.update(job_id, status=status, finished_at=now_iso(), error=error_body(exc), exit_code=1)
        return 1


def _read_hook_result(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("result"), dict) else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lora_factory.core.jobs.worker")
    parser.add_argument("job_id")
    parser.add_argument("--home", required=True)
    args = parser.parse_args(argv)
    try:
        return run_job(args.job_id, Path(args.home))
    except LoRAFactoryError as exc:
        print(json.dumps(exc.to_dict(), ensure_ascii=False), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
