"""The job manager: submit, queue, start workers, watch them, cancel, recover after a restart.

The server runs :meth:`JobManager.tick` in a background thread; ``lora-factory train --wait`` runs
the same loop in the CLI. Workers are detached, so the loop may stop (server shut down) while jobs
go on; at the next start :meth:`recover` re-attaches the live ones and marks the dead ones
``interrupted``, from where a train job can be resumed from its last checkpoint.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lora_factory.core import process
from lora_factory.core.errors import DISK_FULL_SIGNS, LoRAFactoryError, as_user_error, confirmation_required, disk_full
from lora_factory.core.jobs.cluster.admission import ClusterGate
from lora_factory.core.jobs.cluster.probe import ClusterMonitor
from lora_factory.core.jobs.device_table import DeviceTable
from lora_factory.core.jobs.store import GPU_KINDS, JOB_KINDS, TERMINAL_STATUSES, JobStore, new_job_id
from lora_factory.core.jobs.warm_start import (
    WarmStarter,
    gpu_device_nodes,
    imports_modality_libraries,
    warm_start_wanted,
)
from lora_factory.core.storage.db import now_iso
from lora_factory.core.storage.secrets import load_secrets, merge_secrets, save_secrets, split_secrets
from lora_factory.core.storage.workspace import Workspace, safe_name, write_text_atomic

DEFAULT_CANCEL_GRACE_S = 15.0


class JobManager:
    def __init__(self, workspace: Workspace, store: JobStore, max_gpu_jobs: int | None = None,
                 max_other_jobs: int = 4, cancel_grace_s: float | None = None) -> None:
        self.workspace = workspace
        self.store = store
        # None: one job per device where devices exist, one GPU-kind job at a time where none does
        explicit = max_gpu_jobs or os.environ.get("LORA_FACTORY_MAX_GPU_JOBS")
        self.max_gpu_jobs: int | None = int(explicit) if explicit else None
        self.max_other_jobs = max_other_jobs
        if cancel_grace_s is None:
            cancel_grace_s = float(os.environ.get("LORA_FACTORY_CANCEL_GRACE", DEFAULT_CANCEL_GRACE_S))
        self.cancel_grace_s = cancel_grace_s
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        # called before a GPU-bound job starts (the server frees the chat model's memory there)
        self.before_gpu_job: Callable[[dict[str, Any]], None] | None = None
        # the devices jobs share (learnt once: nvidia-smi or LORA_FACTORY_DEVICES, see core/jobs/devices)
        self.devices = DeviceTable(store)
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._health: dict[str, Any] = {"last_tick_at": None, "consecutive_failures": 0, "last_error": None}
        # a Ray cluster's free resources hold a cluster job back in the queue (core/jobs/cluster)
        self.cluster = ClusterMonitor(workspace.home)
        self.cluster_gate = ClusterGate(self.cluster)
        self.cluster_gate.on_wait = lambda job_id, line: self._append_log(self.store.get(job_id), line)
        # workers forked from a warm process (the server turns it on: enable_warm_start); the libraries a
        # modality's workers import come from its plugin (``worker_modules``, wired by services.py)
        self.warm: WarmStarter | None = None
        self.worker_modules: Callable[[str], list[str]] = lambda modality: []
        self.model_operations: Callable[[str], set[str]] = lambda modality: set()  # refine ops that load a model
        self._dead_since: dict[str, float] = {}

    def enable_warm_start(self) -> bool:
        """Fork job workers from a warm process where that is safe (``core/jobs/warm_start``); True if on."""
        # the device nodes, not the device table: that runs nvidia-smi, which server start-up need not wait for
        if self.warm is None and warm_start_wanted(gpu_device_nodes):
            self.warm = WarmStarter(self.workspace.home, on_pid=self._record_forked_pid, fallback=self._spawn_instead)
        return self.warm is not None

    # -- submitting ----------------------------------------------------------------------------
    def submit(self, kind: str, modality: str, spec: dict[str, Any], output_name: str | None = None,
               parent_job: str | None = None, gpu: bool | None = None,
               devices: int | list[int | str] | None = None) -> str:
        """Queue a job: ``runs/<id>/config.json`` (the fully resolved spec), then its row in SQLite.

        The files come first and the row last, so a failure (a full disk) leaves nothing behind: no
        row without its run folder, no run folder without its row. ``devices`` (a count or a list of
        ids) is checked against the machine's devices first: 422 naming them when it asks too much.
        """
        if kind not in JOB_KINDS:
            raise LoRAFactoryError("UNKNOWN_JOB_KIND", f"不明なジョブ種別: {kind}", f"Unknown job kind: {kind}")
        gpu = kind in GPU_KINDS if gpu is None else gpu
        device_request = self.devices.resolve(devices, default=1 if gpu else 0)
        spec, secrets = split_secrets(spec)
        job_id = new_job_id()
        run_dir = self.workspace.run_dir(job_id)
        log = self.workspace.log_path(kind, job_id)
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            save_secrets(run_dir, secrets)
            config = {"job_id": job_id, "kind": kind, "modality": modality, "output_name": output_name, "spec": spec,
                      "devices": device_request}
            write_text_atomic(run_dir / "config.json", json.dumps(config, ensure_ascii=False, indent=2))
            with open(log, "a", encoding="utf-8") as fh:
                fh.write(f"[{time.strftime('%H:%M:%S')}] queued {kind} job {job_id} ({modality})\n")
            self.store.create(kind, modality, spec, output_name, gpu=gpu, parent_job=parent_job, job_id=job_id,
                              device_request=device_request)
        except BaseException as exc:
            shutil.rmtree(run_dir, ignore_errors=True)
            log.unlink(missing_ok=True)
            known = as_user_error(exc)
            if known is None or known is exc:
                raise
            raise known from exc
        try:
            self.tick()
        except Exception as exc:  # the job is queued; the scheduler's loop starts it once it can
            self._record_failure(exc)
        return job_id

    def log_path(self, job: dict[str, Any]) -> Path:
        return self.workspace.log_path(job["kind"], job["id"])

    # -- the loop ------------------------------------------------------------------------------
    def start_background(self, interval: float = 0.5) -> None:
        if self._thread and self._thread.is_alive():
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.tick()
                    self._record_success()
                except Exception as exc:  # a full disk, a locked DB, a vanished file: the loop goes on
                    self._record_failure(exc)

        self._thread = threading.Thread(target=loop, name="lora-factory-scheduler", daemon=True)
        self._thread.start()

    def _record_success(self) -> None:
        self._health["last_tick_at"] = time.time()
        self._health["consecutive_failures"] = 0

    def _record_failure(self, exc: BaseException) -> None:
        """Remember the error for ``/api/system``; telling the console is best effort (stderr may be a
        file on the same full disk, and that must not kill the loop)."""
        self._health["consecutive_failures"] = int(self._health.get("consecutive_failures") or 0) + 1
        known = as_user_error(exc)
        self._health["last_error"] = known.to_dict()["error"] if known else {
            "code": "SCHEDULER_ERROR", "message": f"{type(exc).__name__}: {exc}",
            "message_ja": f"スケジューラーでエラー: {type(exc).__name__}: {exc}", "detail": None}
        self._health["last_error_at"] = time.time()
        try:
            print(f"[lora-factory] scheduler: {exc!r}", file=sys.stderr)
        except Exception:  # noqa: BLE001
            pass

    def stop_background(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        if self.warm is not None:
            self.warm.close()

    def health(self) -> dict[str, Any]:
        """Whether jobs can start: the loop thread is alive and its last passes did not fail."""
        running = bool(self._thread and self._thread.is_alive())
        failures = int(self._health.get("consecutive_failures") or 0)
        ok = running and failures == 0
        return {"ok": ok, "running": running, "consecutive_failures": failures,
                "last_tick_at": self._health.get("last_tick_at"), "last_error": self._health.get("last_error"),
                "last_error_at": self._health.get("last_error_at")}

    def tick(self) -> None:
        """One pass: reap finished workers, enforce cancel grace periods, start queued jobs."""
        with self._lock:
            for job in self.store.by_status("running"):
                self._watch(job)
            self._reap_finished_children()
            while True:
                job = self.store.claim_next(self.max_gpu_jobs, self.max_other_jobs, pool=self.devices.ids(),
                                            avoid=self.devices.soft_held(), can_start=self.cluster_gate.can_start)
                if job is None:
                    break
                if (job["gpu"] or job["devices"]) and self.before_gpu_job is not None:
                    try:
                        self.before_gpu_job(job)
                    except Exception as exc:  # never keeps a job from starting
                        self._append_log(job, f"could not free the chat model before the job: {exc!r}")
                self._start(job)

    def _reap_finished_children(self) -> None:
        """Workers that wrote their own final state are no longer watched: collect their exit status
        so no zombie process stays behind the server."""
        for job_id, child in list(self._children.items()):
            if child.poll() is not None and self.store.get(job_id)["status"] != "running":
                del self._children[job_id]

    def _worker_env(self, job: dict[str, Any]) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        env.setdefault("PYTHONIOENCODING", "utf-8")
        env.update(self.devices.worker_env(job["devices"] or []))
        return env

    def _start(self, job: dict[str, Any]) -> None:
        if job["devices"]:
            self._append_log(job, f"devices: {', '.join(job['devices'])}")
        env = self._worker_env(job)
        if self.warm is not None:
            wanted = imports_modality_libraries(job["kind"], job.get("spec") or {}, gpu=bool(job.get("gpu")),
                                                model_operations=self.model_operations(job["modality"]))
            preload = self.worker_modules(job["modality"]) if wanted else []
            if self.warm.start(job["id"], self.log_path(job), env, preload):
                return  # the warm process forks it; its pid comes back through _record_forked_pid
        self._spawn(job, env)

    def _spawn(self, job: dict[str, Any], env: dict[str, str]) -> None:
        args = [sys.executable, "-m", "lora_factory.core.jobs.worker", job["id"], "--home", str(self.workspace.home)]
        try:
            proc = process.spawn_detached(args, self.log_path(job), env=env, cwd=self.workspace.home)
        except OSError as exc:
            known = as_user_error(exc)
            self.store.update(job["id"], status="failed", finished_at=now_iso(), error=known.to_dict()["error"] if known else {
                "code": "WORKER_START_FAILED", "message": f"Could not start the worker: {exc}",
                "message_ja": f"ワーカーを起動できませんでした: {exc}"})
            return
        self._children[job["id"]] = proc
        # the worker records its own pid too (on Windows a venv's python.exe is a launcher whose child
        # is the real worker): whichever writes first wins, so pid and start time stay one pair
        self.store.set_pid_if_unset(job["id"], proc.pid, process.create_time(proc.pid))

    def _spawn_instead(self, job_id: str, why: str) -> None:
        """The warm process could not fork this job's worker: spawn it as without a warm start."""
        with self._lock:
            job = self.store.get(job_id)
            if job["status"] != "running" or job["pid"]:
                return
            self._append_log(job, f"warm start not used ({why}): starting the worker the ordinary way")
            self._spawn(job, self._worker_env(job))

    def _record_forked_pid(self, job_id: str, pid: int, started: float | None) -> None:
        self.store.set_pid_if_unset(job_id, pid, started)
        if self.store.get(job_id)["status"] != "running":  # canceled while its worker was being forked
            process.kill_tree(pid)

    def _watch(self, job: dict[str, Any]) -> None:
        job_id = job["id"]
        child = self._children.get(job_id)
        if child is not None:
            code = child.poll()
            alive = code is None
        else:
            code = None
            if job["pid"]:
                alive = process.is_alive(job["pid"], job["pid_create_time"])
            elif self.warm is not None and self.warm.pending(job_id):
                alive = True  # the warm process is still importing or forking it
            else:
                # claimed by another process (CLI / server) that has not recorded its pid yet; one that
                # never does within a minute died between claiming and spawning
                alive = _seconds_since(job["started_at"]) < 60
        if not alive and self.warm is not None and job_id in self.warm.forked:
            known, code = self.warm.exit_code(job_id)
            if not known and time.monotonic() - self._dead_since.setdefault(job_id, time.monotonic()) < 5:
                return  # the warm process writes a forked worker's exit code when it reaps it: a moment
        if not alive:
            self._children.pop(job_id, None)
            self._dead_since.pop(job_id, None)
            fresh = self.store.get(job_id)
            if fresh["status"] == "running":  # the worker died without writing its final state
                reason_en = f"The worker process ended unexpectedly (exit code {code})." if code is not None \
                    else "The worker process is gone."
                error = {"code": "WORKER_CRASHED", "message": reason_en + " See the log.",
                         "message_ja": f"ワーカープロセスが異常終了しました(終了コード {code})。ログを確認してください。"}
                if self._log_says_disk_full(fresh):  # it died writing: say so, not "crashed"
                    error = disk_full().to_dict()["error"]
                self.store.transition(job_id, ("running",), status="failed", finished_at=now_iso(), exit_code=code,
                                      error=error)
                self._append_log(fresh, f"worker ended unexpectedly (exit code {code})")
            return
        if job["cancel_requested_at"] and time.time() - job["cancel_requested_at"] > self.cancel_grace_s:
            self._append_log(job, f"cancel grace period ({self.cancel_grace_s:.0f} s) passed: killing the worker")
            if job["pid"]:
                process.kill_tree(job["pid"])
            if child is not None:
                child.wait(timeout=10)
                self._children.pop(job_id, None)
            self.store.transition(job_id, ("running",), status="canceled", finished_at=now_iso(),
                                  error={"code": "CANCELED_KILLED", "message": "Canceled: the worker was stopped after the grace period.",
                                         "message_ja": "キャンセル: 猶予時間を過ぎたためワーカーを停止しました。"})

    def _log_says_disk_full(self, job: dict[str, Any]) -> bool:
        """The end of the job's log names a full disk (the worker could not even record its error)."""
        try:
            with open(self.log_path(job), "rb") as fh:
                fh.seek(0, 2)
                fh.seek(max(0, fh.tell() - 8192))
                tail = fh.read().decode("utf-8", "replace")
        except OSError:
            return False
        return any(sign in tail for sign in DISK_FULL_SIGNS)

    def _append_log(self, job: dict[str, Any], line: str) -> None:
        """Best effort: a log line that cannot be written (a full disk) never stops a state change."""
        try:
            with open(self.log_path(job), "a", encoding="utf-8") as fh:
                fh.write(f"[{time.strftime('%H:%M:%S')}] [host] {line}\n")
        except OSError:
            pass

    # -- recovery ------------------------------------------------------------------------------
    def recover(self) -> dict[str, list[str]]:
        """At start-up: re-attach running jobs whose worker lives, mark the others ``interrupted``."""
        attached, interrupted = [], []
        for job in self.store.by_status("running"):
            if process.is_alive(job["pid"], job["pid_create_time"]):
                attached.append(job["id"])
                self._append_log(job, "server restarted: re-attached to the running worker")
                continue
            if self.store.transition(job["id"], ("running",), status="interrupted", finished_at=now_iso(), error={
                "code": "JOB_INTERRUPTED",
                "message": "The worker was gone when the server started (machine or server stopped). "
                           + ("Resume it from its last checkpoint." if job["kind"] == "train" else "Re-run it."),
                "message_ja": "サーバー起動時にワーカーが見つかりませんでした(PC またはサーバーの停止)。"
                              + ("最後のチェックポイントから再開できます。" if job["kind"] == "train" else "再実行してください。")}):
                interrupted.append(job["id"])
                self._append_log(job, "server restarted: the worker was gone, job marked interrupted")
        return {"attached": attached, "interrupted": interrupted}

    # -- user actions --------------------------------------------------------------------------
    def cancel(self, job_id: str) -> dict[str, Any]:
        job = self.store.get(job_id)
        if job["status"] == "queued":
            self.store.transition(job_id, ("queued",), status="canceled", finished_at=now_iso())
        elif job["status"] == "running":
            if not job["cancel_requested_at"]:
                self.store.update(job_id, cancel_requested_at=time.time())
                self._append_log(job, "cancel requested")
        else:
            raise LoRAFactoryError(
                "JOB_NOT_RUNNING", f"ジョブ {job_id} は既に終了しています({job['status_ja']})。",
                f"Job {job_id} has already ended ({job['status']}).", http_status=409,
                detail={"status": job["status"]},
            )
        return self.store.get(job_id)

    def resume(self, job_id: str) -> str:
        """Queue an interrupted / failed train job again under the same id, from its last checkpoint."""
        job = self.store.get(job_id)
        if job["kind"] != "train" or job["status"] not in ("interrupted", "failed") :
            raise LoRAFactoryError(
                "JOB_NOT_RESUMABLE",
                "再開できるのは中断または失敗した学習ジョブだけです。",
                "Only an interrupted or failed train job can be resumed.", http_status=409,
                detail={"status": job["status"], "kind": job["kind"]},
            )
        name = job["output_name"]
        dest = self.output_destination(job["kind"], job["modality"], name) if name else None
        if dest is not None and dest.exists():
            raise self._resume_name_taken(job_id, name, "exists")
        if not self.store.requeue(job_id, ("interrupted", "failed"), output_name=name, kind=job["kind"],
                                  modality=job["modality"], status="queued", resume=1, error=None, finished_at=None,
                                  cancel_requested_at=None, pid=None, pid_create_time=None, devices=None):
            raise self._resume_name_taken(job_id, name, "job")
        self._append_log(job, "resume requested: queued again from the last checkpoint")
        self.tick()
        return job_id

    @staticmethod
    def _resume_name_taken(job_id: str, name: str, why: str) -> LoRAFactoryError:
        """Checked before a resume trains for hours only to fail at publishing."""
        return LoRAFactoryError(
            "OUTPUT_EXISTS",
            f"出力名「{name}」は既に" + ("存在します" if why == "exists" else "別の待機中・実行中のジョブが使っています")
            + "。このジョブは再開できません。別の出力名で再実行してください(再実行ボタン)。",
            f"The output name '{name}' is " + ("already taken" if why == "exists" else "used by another queued or running job")
            + "; this job cannot be resumed. Re-run it under another output name.",
            http_status=409, detail={"output_name": name, "job_id": job_id})

    def rerun(self, job_id: str, output_name: str | None = None) -> str:
        """A new job from ``runs/<id>/config.json``; a taken output name gets ``-v2``, ``-v3`` ..."""
        job = self.store.get(job_id)
        config_path = self.workspace.run_dir(job_id) / "config.json"
        from_row = {"spec": job["spec"], "output_name": job["output_name"]}
        try:
            config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.exists() else from_row
        except (OSError, ValueError):
            config = from_row  # a damaged config.json: the row holds the same spec
        if not isinstance(config, dict) or not isinstance(config.get("spec"), dict) or not config["spec"]:
            config = from_row
        if not isinstance(config.get("spec"), dict) or not config["spec"]:
            raise LoRAFactoryError(
                "JOB_DAMAGED", f"ジョブ {job_id} の記録(config.json とデータベースの行)が壊れているため再実行できません。",
                f"Job {job_id} cannot be re-run: its config.json and its database row are both damaged.",
                http_status=409, detail={"job_id": job_id})
        spec = merge_secrets(dict(config["spec"]), load_secrets(self.workspace.run_dir(job_id)))
        name = safe_name(output_name, "output name") if output_name else config.get("output_name")
        if name and job["kind"] in ("train", "merge", "refine", "download", "export"):
            name = self.free_output_name(job["kind"], job["modality"], name)
            spec["output_name"] = name
        return self.submit(job["kind"], job["modality"], spec, output_name=name, parent_job=job_id, gpu=job["gpu"],
                           devices=job["device_request"] if job["device_request"] else None)

    def output_destination(self, kind: str, modality: str, name: str) -> Path | None:
        if kind == "train":
            return self.workspace.adapters_dir(modality) / name
        if kind in ("download", "merge"):
            return self.workspace.models_dir(modality) / name
        if kind == "export":
            return self.workspace.exports_dir(modality) / name
        if kind == "refine":  # a folder dataset is <name>/, a file dataset <name>.<its suffix>
            return self.workspace.datasets_dir(modality) / name
        return None

    def output_taken(self, kind: str, modality: str, name: str) -> bool:
        """Whether ``name`` is already used in the folder the job's output goes to (for a refine, by a
        folder or by a file of any suffix: the plugin chooses the suffix)."""
        dest = self.output_destination(kind, modality, name)
        if dest is None:
            return False
        if dest.exists():
            return True
        return kind == "refine" and any(dest.parent.glob(glob.escape(dest.name) + ".*"))

    def free_output_name(self, kind: str, modality: str, name: str) -> str:
        base = name
        for suffix in ("-v", "_v"):
            if suffix in name and name.rsplit(suffix, 1)[1].isdigit():
                base = name.rsplit(suffix, 1)[0]
        candidate, n = name, 1
        while True:
            if not self.output_taken(kind, modality, candidate) and not self.store.output_name_taken(kind, modality, candidate):
                return candidate
            n += 1
            candidate = f"{base}-v{n}"

    def delete(self, job_id: str, confirm: bool) -> None:
        job = self.store.get(job_id)
        if not confirm:
            raise confirmation_required(job_id)
        if job["status"] in ("queued", "running"):
            raise LoRAFactoryError("JOB_ACTIVE", "実行中・待機中のジョブは削除できません。先にキャンセルしてください。",
                                   "A queued or running job cannot be deleted; cancel it first.", http_status=409)
        run_dir = self.workspace.run_dir(job_id)
        home = self.workspace.home
        if run_dir.exists() and home in run_dir.resolve().parents:
            shutil.rmtree(run_dir)
        log = self.log_path(job)
        if log.exists():
            log.unlink()
        self.store.delete(job_id)

    def wait(self, job_id: str, timeout: float | None = None, poll: float = 0.3,
             on_update: Any = None) -> dict[str, Any]:
        """Drive the loop until the job ends (the CLI's ``--wait``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self.tick()
            job = self.store.get(job_id)
            if on_update:
                on_update(job)
            if job["status"] in TERMINAL_STATUSES:
                return job
            if deadline is not None and time.monotonic() > deadline:
                return job
            time.sleep(poll)


def _seconds_since(iso: str | None) -> float:
    from datetime import datetime, timezone

    if not iso:
        return float("inf")
    return (datetime.now(timezone.utc) - datetime.fromisoformat(iso)).total_seconds()
