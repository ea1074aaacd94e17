"""One object that holds the host's parts for a workspace; the routes and the CLI both call it.

Routes stay thin: they validate the body (pydantic), call one method here and return its JSON.
Every path a client names is resolved inside the workspace here, before a job is queued.
"""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lora_factory.core.catalog.artifacts import ArtifactStore
from lora_factory.core.catalog.datasets import DatasetCatalog
from lora_factory.core.catalog.exports import ExportCatalog
from lora_factory.core.catalog.models import Catalog
from lora_factory.core.errors import LoRAFactoryError, as_user_error
from lora_factory.core.inference.client import InferenceClient
from lora_factory.core.inference.generation import Generation, resolve_infer
from lora_factory.core.inference.media import MediaStore
from lora_factory.core.jobs.regression import parse_suite
from lora_factory.core.jobs.scheduler import JobManager
from lora_factory.core.jobs.store import JobStore
from lora_factory.core.plugin_host.host import PluginHost, load_plugin_host
from lora_factory.core.schemas import (
    ChatRequest,
    DownloadRequest,
    EvalRequest,
    ExportRequest,
    ImportRequest,
    MergeRequest,
    RefineRequest,
    TinyModelRequest,
    TrainStartRequest,
)
from lora_factory.core.storage.db import check_database, move_aside
from lora_factory.core.storage.workspace import Workspace, name_from_folder, safe_name


def default_home() -> Path:
    return Path(os.environ.get("LORA_FACTORY_HOME") or Path.cwd())


class Services:
    def __init__(self, home: Path | str | None = None, plugin_host: PluginHost | None = None) -> None:
        self._gpu_present: bool | None = None
        home_path = Path(home) if home else default_home()
        home_path.mkdir(parents=True, exist_ok=True)
        self.workspace = Workspace(home_path, ())
        self.plugins = plugin_host or load_plugin_host(self.workspace.home)
        self.workspace.ensure(self.plugins.modalities().keys())
        self.notices: list[dict[str, Any]] = []  # what the user must be told once (UI banner, /api/health)
        self.scheduler_expected = False  # the server sets it; the CLI drives the loop itself
        try:
            damage = check_database(self.workspace.db_path)
            moved = move_aside(self.workspace.db_path) if damage else None
            self.store = JobStore(self.workspace.db_path)
            self.jobs = JobManager(self.workspace, self.store)
            self.artifacts = ArtifactStore(self.workspace.db_path, self.workspace.home)
        except (sqlite3.Error, OSError) as exc:
            known = as_user_error(exc)  # a full disk at start-up: DISK_FULL, and the database is kept
            if known is None:
                raise
            raise known from exc
        if moved is not None:
            self._recover_database(str(damage), moved)
        self.catalog = Catalog(self.workspace, self.plugins, self.artifacts, used_by=self.active_job_using)
        self.datasets = DatasetCatalog(self.workspace, self.plugins, self.artifacts, remove=self.catalog.remove_unused)
        self.exports = ExportCatalog(self.workspace, self.artifacts, remove=self.catalog.remove_unused)
        self.inference = InferenceClient(self.workspace.home)
        self.media = MediaStore(self.workspace)
        self.generation = Generation(self.plugins, self.catalog, self.media, self.inference, self.workspace)
        self.jobs.before_gpu_job = self.free_chat_model_for

    def update_settings(self, changes: dict[str, Any]) -> Any:
        """Save settings; a new ``modality_owners`` choice reloads the plugins (and the chat's model
        process, which loaded them) so the next request already goes to the chosen plugin."""
        from lora_factory.core.storage.settings import update_settings

        settings = update_settings(self.workspace.home, changes)
        if "modality_owners" in changes:
            self.reload_plugins()
        return settings

    def reload_plugins(self) -> None:
        self.plugins = load_plugin_host(self.workspace.home)
        self.workspace.ensure(self.plugins.modalities().keys())
        self.catalog.plugins = self.datasets.plugins = self.generation.plugins = self.plugins
        self.inference.release()
    def _recover_database(self, damage: str, moved: Path) -> None:
        """A fresh database after a damaged one: history rebuilt from the files, the user told."""
        from lora_factory.core.jobs.recovery import rebuild_history

        rebuilt = rebuild_history(self.workspace, self.store, self.artifacts)
        moved_rel = self.workspace.relative(moved)
        notice = {
            "code": "DATABASE_RECOVERED", "level": "warning",
            "message": f"The job database was damaged ({damage}). It was moved to {moved_rel} and a fresh one was "
                       f"started; {len(rebuilt['jobs'])} jobs and {len(rebuilt['adapters'])} adapters were rebuilt "
                       "from runs/ and lora_adapters/.",
            "message_ja": f"ジョブのデータベースが壊れていました({damage})。{moved_rel} に退避して新しく作り直し、"
                          f"runs/ と lora_adapters/ からジョブ {len(rebuilt['jobs'])} 件とアダプター "
                          f"{len(rebuilt['adapters'])} 件を復元しました。",
            "detail": {"moved_to": moved_rel, "reason": damage, **rebuilt},
        }
        self.notices.append(notice)
        line = f"[lora-factory] {notice['message_ja']}\n[lora-factory] {notice['message']}\n"
        try:
            print(line, end="", file=sys.stderr)
            with open(self.workspace.home / "logs" / "recovery.log", "a", encoding="utf-8") as fh:
                fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {notice['message']}\n")
        except OSError:
            pass

    def startup_housekeeping(self, recovered: dict[str, list[str]]) -> None:
        """At server start: remove the temporaries an interrupted publish or delete left behind (all of
        them when no job runs; with live workers only those a day old, as one may be publishing)."""
        running = self.store.by_status("running")
        try:
            removed = self.workspace.clean_stale_temporaries(0.0 if not running else 24 * 3600.0)
        except OSError:
            removed = []
        try:
            self.media.prune_uploads()
        except OSError:
            pass
        if removed:
            print(f"[lora-factory] removed leftovers of interrupted writes: {', '.join(removed)}", file=sys.stderr)

    def health(self) -> dict[str, Any]:
        """What keeps the server from doing its work, for ``/api/health`` and the UI's banner."""
        import shutil

        from lora_factory.core.storage.settings import load_settings

        problems: list[dict[str, Any]] = []
        scheduler = self.jobs.health()
        if self.scheduler_expected and not scheduler["running"]:
            problems.append({"code": "SCHEDULER_STOPPED", "level": "error",
                             "message": "The job scheduler is not running: queued jobs will not start. Restart the server.",
                             "message_ja": "ジョブのスケジューラーが停止しています。待機中のジョブは開始されません。サーバーを再起動してください。",
                             "detail": scheduler.get("last_error")})
        elif self.scheduler_expected and scheduler["consecutive_failures"]:
            last = scheduler.get("last_error") or {}
            problems.append({"code": "SCHEDULER_FAILING", "level": "error",
                             "message": f"The job scheduler keeps failing: {last.get('message')}",
                             "message_ja": f"ジョブのスケジューラーでエラーが続いています: {last.get('message_ja')}",
                             "detail": last})
        try:
            load_settings(self.workspace.home)
        except LoRAFactoryError as exc:
            problems.append(exc.to_dict()["error"] | {"level": "error"})
        try:
            free = shutil.disk_usage(self.workspace.home).free
        except OSError:
            free = None
        if free is not None and free < 512 * 1024**2:
            problems.append({"code": "DISK_LOW", "level": "warning",
                             "message": f"Only {free // 1024**2} MiB free on the workspace's disk.",
                             "message_ja": f"ワークスペースのディスクの空きが {free // 1024**2} MiB しかありません。",
                             "detail": {"free_bytes": free}})
        return {"ok": not any(p.get("level") == "error" for p in problems), "scheduler": scheduler,
                "problems": problems, "notices": self.notices}

    def free_chat_model_for(self, job: dict[str, Any]) -> None:
        """Before a GPU-bound job: stop the chat's model process so its VRAM is free for the job.

        ``LORA_FACTORY_RELEASE_INFERENCE``: ``auto`` (default: when an NVIDIA GPU is present),
        ``always`` or ``never``. The next chat message loads the model again.
        """
        mode = os.environ.get("LORA_FACTORY_RELEASE_INFERENCE", "auto")
        if mode == "never" or (mode == "auto" and not self._has_gpu()):
            return
        if self.inference.release():
            with open(self.jobs.log_path(job), "a", encoding="utf-8") as fh:
                fh.write("[host] the chat model was unloaded to free GPU memory for this job\n")

    def _has_gpu(self) -> bool:
        if self._gpu_present is None:
            from lora_factory.core.system_info import gpus

            self._gpu_present = bool(gpus())
        return self._gpu_present

    def close(self) -> None:
        self.jobs.stop_background()
        self.inference.close()
        self.store.close()
        self.artifacts.close()

    # -- jobs ----------------------------------------------------------------------------------
    def active_job_using(self, path: Path) -> str | None:
        """The id of a queued or running job whose spec names ``path`` (or something inside it)."""
        target = str(Path(path).resolve())

        def names(value: Any) -> bool:
            if isinstance(value, str):
                return value == target or value.startswith(target + os.sep)
            if isinstance(value, dict):
                return any(names(v) for v in value.values())
            if isinstance(value, list):
                return any(names(v) for v in value)
            return False

        for job in self.store.by_status("queued", "running"):
            if names(job["spec"]):
                return job["id"]
        return None

    def job_view(self, job_id: str) -> dict[str, Any]:
        job = self.store.get(job_id)
        return self.present_job(job)

    def present_job(self, job: dict[str, Any]) -> dict[str, Any]:
        metrics = job.get("metrics") or {}
        duration = None
        if job.get("started_at"):
            from datetime import datetime, timezone

            try:
                start = datetime.fromisoformat(job["started_at"])
                end = datetime.fromisoformat(job["finished_at"]) if job.get("finished_at") else datetime.now(timezone.utc)
                duration = max(0.0, (end - start).total_seconds())
            except (TypeError, ValueError):  # a damaged row: shown without a duration
                duration = None
        return {
            "job_id": job["id"],
            "id": job["id"],
            "kind": job["kind"],
            "modality": job["modality"],
            "status": job["status"],
            "status_ja": job["status_ja"],
            "created_at": job["created_at"],
            "started_at": job["started_at"],
            "finished_at": job["finished_at"],
            "duration": duration,
            "step": job["step"] or 0,
            "max_steps": job["max_steps"] or 0,
            "loss": job["loss"],
            "eta": metrics.get("eta"),
            "metrics": metrics,
            "result": job["result"],
            "error": job["error"],
            "queue_position": self.store.queue_position(job),
            "cancel_requested": bool(job["cancel_requested_at"]),
            "output_name": job["output_name"],
            "log_file": str(self.jobs.log_path(job)),
            "run_dir": str(self.workspace.run_dir(job["id"])),
            "resume": job["resume"],
            "attempts": job["attempts"],
            "parent_job": job["parent_job"],
            "spec": job["spec"],
            "damaged": job.get("damaged") or None,
        }

    def list_jobs(self, kind: str | None = None, status: str | None = None, modality: str | None = None,
                  limit: int = 200) -> list[dict[str, Any]]:
        return [self.present_job(j) for j in self.store.list(kind, status, modality, limit)]

    def log_tail(self, job_id: str, tail: int = 200) -> dict[str, Any]:
        job = self.store.get(job_id)
        path = self.jobs.log_path(job)
        lines: list[str] = []
        if path.exists():
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()[-max(1, min(tail, 5000)):]
        return {"job_id": job_id, "log_file": str(path), "lines": lines}

    def _run_records(self, job_id: str, name: str) -> list[dict[str, Any]]:
        """The records of a JSON-lines file of the job's run folder (a line being written is skipped)."""
        import json

        self.store.get(job_id)
        path = self.workspace.run_dir(job_id) / name
        out = []
        for line in path.read_text(encoding="utf-8").splitlines() if path.exists() else []:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line being written right now
        return out

    def metrics(self, job_id: str) -> list[dict[str, Any]]:
        return self._run_records(job_id, "metrics.jsonl")

    def samples(self, job_id: str) -> list[dict[str, Any]]:
        """``runs/<id>/samples.jsonl``: what ``ctx.report_sample`` recorded, with URLs."""
        return [self.present_sample(job_id, record) for record in self._run_records(job_id, "samples.jsonl")]

    def present_sample(self, job_id: str, record: dict[str, Any]) -> dict[str, Any]:
        return dict(record, url=self.media.run_file_url(job_id, str(record.get("file", ""))))

    # -- submitting work -----------------------------------------------------------------------
    def _output_name(self, kind: str, modality: str, name: str, model_kind: str | None = None) -> str:
        """A safe output name not yet taken; ``model_kind`` puts a download under ``models/<m>/<kind>/``."""
        name = safe_name(name, "output name")
        if model_kind and model_kind != "base":
            self.catalog.models_folder(modality, model_kind)  # a known kind, or 400
            name = f"{model_kind}/{name}"
        if self.jobs.output_taken(kind, modality, name):
            raise LoRAFactoryError("OUTPUT_EXISTS", f"「{name}」は既に存在します。別の名前を指定してください。",
                                   f"'{name}' already exists; choose another name.", http_status=409,
                                   detail={"output_name": name})
        return name

    def start_train(self, req: TrainStartRequest) -> str:
        self.plugins.require_modality(req.modality)
        base = self.catalog.model_path(req.modality, req.base_model)
        dataset = self.datasets.dataset_path(req.modality, req.dataset)
        output_name = self._output_name("train", req.modality, req.output_name)
        spec: dict[str, Any] = {
            "base_model": str(base),
            "dataset": str(dataset),
            "base_model_ref": self.workspace.relative(base),
            "dataset_ref": self.workspace.relative(dataset),
            "dataset_options": self.datasets.dataset_options(dataset),
            "output_name": output_name,
            "preset": req.preset,
            "params": dict(req.params),
            "trust_remote_code": req.trust_remote_code,
        }
        resolved = self.plugins.call("resolve_train_spec", req.modality, spec=spec)
        if resolved is not None:
            spec = resolved
        return self.jobs.submit("train", req.modality, spec, output_name=output_name)

    def start_refine(self, req: RefineRequest) -> str:
        desc = self.plugins.require_modality(req.modality)
        dataset = self.datasets.dataset_path(req.modality, req.dataset)
        output_name = safe_name(req.output_name, "output name")
        for suffix in [".jsonl", *(desc.get("dataset_extensions") or [])]:
            if suffix and output_name.lower().endswith(suffix.lower()) and len(output_name) > len(suffix):
                output_name = output_name[: -len(suffix)]
                break
        self._output_name("refine", req.modality, output_name)
        known = desc.get("refine_operations") or {}
        for op in req.operations:
            if op.get("op") not in known:
                raise LoRAFactoryError("REFINE_INVALID_OPERATION", f"不明な錬成操作です: {op.get('op')}",
                                       f"Unknown refine operation: {op.get('op')}",
                                       detail={"op": op.get("op"), "known": list(known)})
        spec: dict[str, Any] = {
            "dataset": str(dataset),
            "dataset_ref": self.workspace.relative(dataset),
            "dataset_options": self.datasets.dataset_options(dataset),
            "operations": [{"op": op["op"], "params": dict(op.get("params") or {})} for op in req.operations],
            "output_name": output_name,
        }
        resolved = self.plugins.call("resolve_refine_spec", req.modality, spec=spec, workspace=self.workspace)
        if resolved is not None:
            spec = resolved
        gpu = bool(spec.pop("gpu", False))  # e.g. Evol-Instruct with a local model: queues with training
        return self.jobs.submit("refine", req.modality, spec, output_name=output_name, gpu=gpu)

    def start_download(self, req: DownloadRequest) -> str:
        self.plugins.require_modality(req.modality)
        name = self._output_name("download", req.modality, req.name or req.repo_id.replace("/", "__"), req.kind)
        spec = {"source": "hub", "repo_id": req.repo_id, "revision": req.revision, "name": name.rsplit("/", 1)[-1],
                "model_kind": req.kind or "base", "variant": req.variant}
        return self.jobs.submit("download", req.modality, spec, output_name=name)

    def start_import(self, req: ImportRequest) -> str:
        """A local model folder, or a single ``.safetensors`` checkpoint where the modality supports it."""
        desc = self.plugins.require_modality(req.modality)
        source = Path(req.source_path).expanduser()
        single_file = source.is_absolute() and source.is_file()
        if single_file and "single_file" not in (desc.get("supports") or []):
            raise LoRAFactoryError("SINGLE_FILE_UNSUPPORTED",
                                   f"「{req.modality}」は単一ファイルのチェックポイントを取り込めません。モデルのフォルダを指定してください。",
                                   f"Modality '{req.modality}' cannot import a single-file checkpoint; give a model folder.",
                                   detail={"source_path": req.source_path})
        if not source.is_absolute() or not (source.is_dir() or single_file):
            raise LoRAFactoryError("IMPORT_SOURCE_NOT_FOUND", f"フォルダ「{req.source_path}」が見つかりません(絶対パスで指定してください)。",
                                   f"Folder '{req.source_path}' was not found (give an absolute path).",
                                   http_status=404, detail={"source_path": req.source_path})
        default = source.stem if single_file else source.name
        name = self._output_name("download", req.modality, req.name or name_from_folder(default), req.kind)
        spec = {"source": "single_file" if single_file else "local", "local_path": str(source.resolve()),
                "name": name.rsplit("/", 1)[-1], "model_kind": req.kind or "base"}
        return self.jobs.submit("download", req.modality, spec, output_name=name)

    def start_tiny_model(self, req: TinyModelRequest) -> str:
        desc = self.plugins.require_modality(req.modality)
        if "tiny_model" not in (desc.get("supports") or []):
            raise LoRAFactoryError("TINY_MODEL_UNSUPPORTED", f"「{req.modality}」はデモ用の小さなモデルを作成できません。",
                                   f"Modality '{req.modality}' cannot build an offline demo model.")
        name = self._output_name("download", req.modality, req.name)
        reserved = {"source", "name", "model_kind", "local_path", "repo_id"}
        options = {k: v for k, v in req.options.items() if k not in reserved}
        return self.jobs.submit("download", req.modality, {**options, "source": "tiny", "name": name}, output_name=name)

    def start_merge(self, req: MergeRequest) -> str:
        self.plugins.require_modality(req.modality)
        adapter = self.catalog.adapter_path(req.modality, req.adapter)
        base = self._adapter_base(req.modality, adapter, req.base_model)
        name = self._output_name("merge", req.modality, req.output_name)
        spec = {"adapter": str(adapter), "base_model": str(base), "output_name": name,
                "adapter_ref": self.workspace.relative(adapter), "base_model_ref": self.workspace.relative(base)}
        return self.jobs.submit("merge", req.modality, spec, output_name=name)

    def start_export(self, req: ExportRequest) -> dict[str, Any]:
        from lora_factory.core.jobs.exports import submit_export

        return submit_export(req, plugins=self.plugins, catalog=self.catalog, jobs=self.jobs, workspace=self.workspace,
                             adapter_base=self._adapter_base)

    def _adapter_base(self, modality: str, adapter: Path, base_ref: str | None) -> Path:
        if base_ref:
            return self.catalog.model_path(modality, base_ref)
        info = self.catalog.adapter_info(modality, adapter)
        if not info.get("base_model"):
            raise LoRAFactoryError("BASE_MODEL_REQUIRED", "このアダプターのベースモデルが不明です。base_model を指定してください。",
                                   "The adapter's base model is unknown; give base_model.")
        return self.catalog.model_path(modality, info["base_model"])

    def start_eval(self, req: EvalRequest) -> str:
        desc = self.plugins.require_modality(req.modality)
        adapter = self.catalog.adapter_path(req.modality, req.adapter)
        base = self._adapter_base(req.modality, adapter, req.base_model)
        kinds = set(desc.get("regression_checks") or {})
        raw = self.workspace.resolve_inside(req.suite_file) if req.suite_file else req.suite
        # stored expanded (shorthands turned into checks), so the job reads exactly what was validated
        suite = [c.model_dump(exclude_none=True, exclude={"contains", "not_contains", "regex", "max_length"})
                 for c in parse_suite(raw, kinds)] if raw else []
        dataset = self.datasets.dataset_path(req.modality, req.dataset) if req.dataset else None
        if not suite and dataset is None:
            raise LoRAFactoryError("EVAL_NOTHING_TO_DO", "回帰テストかデータセットのどちらかを指定してください。",
                                   "Give a regression suite or a dataset.")
        previous = self.catalog.previous_adapter(req.modality, adapter.name) if req.compare_previous else None
        spec = {
            "adapter": str(adapter), "base_model": str(base), "suite": suite,
            "suite_name": Path(req.suite_file).name if req.suite_file else None,
            "dataset": str(dataset) if dataset else None,
            "dataset_options": self.datasets.dataset_options(dataset) if dataset else {},
            "previous_adapter": str(previous) if previous else None,
            "params": req.params, "adapter_ref": self.workspace.relative(adapter),
        }
        return self.jobs.submit("eval", req.modality, spec, output_name=None)

    def import_dataset_info(self, req: Any) -> dict[str, list[dict[str, Any]]]:
        """Import the datasets an index file lists (LLaMA-Factory's ``dataset_info.json`` for text).

        :return: ``{"datasets": [{"name", "format", "rows", "note"?}], "skipped": [{"name", "reason"}]}``.
        :raises LoRAFactoryError: ``DATASET_INDEX_NOTHING_IMPORTED`` (422) with each entry's reason when
            nothing could be imported: an empty answer would leave the user guessing.
        """
        self.plugins.require_modality(req.modality)
        index = self.workspace.resolve_inside(req.dataset_info_path)
        if not index.is_file():
            raise LoRAFactoryError("DATASET_NOT_FOUND", f"「{req.dataset_info_path}」が見つかりません。",
                                   f"'{req.dataset_info_path}' was not found.", http_status=404)
        options = {"txt_split": req.txt_split} if getattr(req, "txt_split", None) else {}
        imported = self.plugins.call("import_dataset_index", req.modality, path=str(index),
                                     datasets_dir=str(self.workspace.datasets_dir(req.modality)), options=options)
        if imported is None:
            raise LoRAFactoryError("HOOK_NOT_IMPLEMENTED", f"「{req.modality}」はデータセット一覧の取り込みに対応していません。",
                                   f"Modality '{req.modality}' cannot import a dataset index.")
        out, skipped = [], []
        for item in imported:
            if item.get("skipped"):
                skipped.append({"name": item.get("name"), "reason": item["skipped"]})
                continue
            path = Path(item["file"])
            read_options = item.get("read_options") or {}
            self.datasets.record_dataset_meta(path, {"format": item.get("format"), "mapping": item.get("mapping"),
                                                     "read_options": read_options, "original_name": item.get("name")})
            info = self.datasets.inspect_dataset(req.modality, path)
            self.datasets.record_dataset_meta(path, {"format": info.get("format"), "mapping": item.get("mapping"),
                                                     "encoding": info.get("encoding"), "rows": info.get("rows"),
                                                     "read_options": info.get("read_options") or read_options,
                                                     "original_name": item.get("name")})
            self.artifacts.register("dataset", req.modality, path, meta={"source": "dataset_info.json",
                                                                          "format": info.get("format")})
            entry = {"name": path.name, "format": info.get("format"), "rows": info.get("rows")}
            if item.get("note"):
                entry["note"] = item["note"]
            out.append(entry)
        if not out:
            reasons = "; ".join(f"{s['name']}: {s['reason']}" for s in skipped[:10]) or "the file lists no dataset"
            raise LoRAFactoryError(
                "DATASET_INDEX_NOTHING_IMPORTED",
                f"「{req.dataset_info_path}」から取り込めるデータセットがありませんでした: {reasons}",
                f"Nothing in '{req.dataset_info_path}' could be imported: {reasons}",
                http_status=422, detail={"file": req.dataset_info_path, "skipped": skipped})
        return {"datasets": out, "skipped": skipped}

    # -- inference -----------------------------------------------------------------------------
    def chat_request(self, req: ChatRequest, with_adapter: bool = True) -> dict[str, Any]:
        desc = self.plugins.require_modality(req.modality)
        if "chat" not in (desc.get("supports") or []) and "chat" not in (desc.get("inference_kinds") or []):
            raise LoRAFactoryError("CHAT_UNSUPPORTED", f"「{req.modality}」はチャットに対応していません。/api/infer/generate を使ってください。",
                                   f"Modality '{req.modality}' has no chat; use /api/infer/generate.",
                                   http_status=400, detail={"field": "modality"})
        base = self.catalog.model_path(req.modality, req.base_model)
        adapter = self.catalog.adapter_path(req.modality, req.adapter) if (req.adapter and with_adapter) else None
        adapters = [{"path": str(adapter), "name": adapter.name, "weight": 1.0}] if adapter else []
        return resolve_infer(self.plugins, req.modality, {
            "base_model": str(base), "adapters": adapters, "messages": [m.model_dump() for m in req.messages],
            "params": req.params, "stream": req.stream}, self.workspace)

    # -- desktop -------------------------------------------------------------------------------
    def open_path(self, key: str) -> dict[str, Any]:
        keys = self.workspace.open_path_keys()
        if key not in keys:
            raise LoRAFactoryError("UNKNOWN_PATH_KEY", f"不明なキーです: {key}", f"Unknown path key: {key}",
                                   detail={"key": key, "known": sorted(keys)})
        path = keys[key]
        path.mkdir(parents=True, exist_ok=True)
        opened = False
        if os.environ.get("LORA_FACTORY_NO_OPEN") != "1":
            opened = open_in_file_manager(path)
        return {"ok": True, "key": key, "path": str(path), "opened": opened}


def open_in_file_manager(path: Path) -> bool:
    """Open a folder on the desktop of the machine the server runs on; False when there is none."""
    try:
        if sys.platform.startswith("win"):
            os.startfile(str(path))  # type: ignore[attr-defined]
            return True
        opener = "open" if platform.system() == "Darwin" else "xdg-open"
        if platform.system() != "Darwin" and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            return False
        subprocess.Popen([opener, str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
        return True
    except (OSError, FileNotFoundError):
        return False
