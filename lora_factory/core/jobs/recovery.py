"""Rebuild the job history and the adapter registry from the files, after the database was lost.

Why this is possible: every job leaves ``runs/<id>/config.json`` (its fully resolved spec) and its
``metrics.jsonl``; every adapter is a folder in ``lora_adapters/<modality>/``. What cannot be rebuilt
(exact timings, content hashes of deleted files, eval links) is simply absent, and each rebuilt job
says so in its error field.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lora_factory.core.catalog.artifacts import ArtifactStore
from lora_factory.core.jobs.store import GPU_KINDS, JobStore
from lora_factory.core.storage.workspace import Workspace

REBUILT_NOTE = {
    "code": "JOB_REBUILT",
    "message": "This record was rebuilt from runs/<id>/ after the job database was found damaged; "
               "timings and the final state may be approximate.",
    "message_ja": "ジョブのデータベースが壊れていたため、runs/<id>/ からこの記録を復元しました(時刻や最終状態は推定です)。",
    "detail": None,
}


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _last_metrics(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "metrics.jsonl"
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return {}
    for line in reversed(lines):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            return record
    return {}


def _created_at(job_id: str, run_dir: Path) -> str:
    try:
        local = datetime.strptime(job_id[:15], "%Y%m%d_%H%M%S")
        return local.astimezone(timezone.utc).isoformat(timespec="seconds")
    except ValueError:
        return datetime.fromtimestamp(run_dir.stat().st_mtime, timezone.utc).isoformat(timespec="seconds")


def _destination(workspace: Workspace, kind: str, modality: str, name: str | None) -> Path | None:
    if not name:
        return None
    folders = {"train": workspace.adapters_dir, "download": workspace.models_dir, "merge": workspace.models_dir}
    if kind in folders:
        return folders[kind](modality) / name
    if kind == "refine":
        return workspace.datasets_dir(modality) / f"{name}.jsonl"
    return None


def rebuild_history(workspace: Workspace, store: JobStore, artifacts: ArtifactStore) -> dict[str, Any]:
    """Insert one row per readable ``runs/*/config.json`` and register the adapters on disk."""
    jobs, damaged = [], []
    producer: dict[tuple[str, str], str] = {}
    for run_dir in sorted(p for p in (workspace.home / "runs").glob("*") if p.is_dir()):
        config = _read_json(run_dir / "config.json")
        if not isinstance(config, dict) or not isinstance(config.get("spec"), dict) or not config.get("kind"):
            damaged.append(run_dir.name)
            continue
        job_id, kind, modality = run_dir.name, str(config["kind"]), str(config.get("modality") or "text")
        name = config.get("output_name")
        dest = _destination(workspace, kind, modality, name)
        published = dest is not None and dest.exists()
        metrics = _last_metrics(run_dir)
        created = _created_at(job_id, run_dir)
        store.insert_rebuilt({
            "id": job_id, "kind": kind, "modality": modality,
            "status": "completed" if published else "interrupted",
            "created_at": created, "started_at": created, "finished_at": created,
            "output_name": name, "spec": config["spec"], "gpu": int(kind in GPU_KINDS),
            "step": metrics.get("step"), "max_steps": metrics.get("max_steps"), "loss": metrics.get("loss"),
            "metrics": metrics or None, "error": None if published else REBUILT_NOTE,
            "device_request": config.get("devices"),  # what it asked for, so a re-run asks the same
        })
        jobs.append(job_id)
        if kind == "train" and name:
            producer[(modality, name)] = job_id
    adapters = []
    for modality in workspace.modalities:
        folder = workspace.adapters_dir(modality)
        for path in sorted(folder.iterdir()) if folder.is_dir() else []:
            if path.name.startswith(".") or not path.is_dir() or path.is_symlink():
                continue
            config = _read_json(path / "training_config.json")
            config = config if isinstance(config, dict) else {}
            meta = {"base_model": config.get("base_model_ref") or config.get("base_model"),
                    "dataset": config.get("dataset_ref") or config.get("dataset"),
                    "preset": config.get("preset"), "rebuilt": True}
            artifacts.register("adapter", modality, path, producer.get((modality, path.name)), meta=meta)
            adapters.append(f"{modality}/{path.name}")
    return {"jobs": jobs, "damaged_runs": damaged, "adapters": adapters}


def recover_database(workspace: Workspace, store: JobStore, artifacts: ArtifactStore, damage: str,
                     moved: Path) -> dict[str, Any]:
    """A fresh database after a damaged one: history rebuilt from the files; the notice the user is
    told (``/api/health``, the UI's banner, stderr and ``logs/recovery.log``) is returned."""
    import sys
    import time

    rebuilt = rebuild_history(workspace, store, artifacts)
    moved_rel = workspace.relative(moved)
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
    line = f"[lora-factory] {notice['message_ja']}\n[lora-factory] {notice['message']}\n"
    try:
        print(line, end="", file=sys.stderr)
        with open(workspace.home / "logs" / "recovery.log", "a", encoding="utf-8") as fh:
            fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {notice['message']}\n")
    except OSError:
        pass
    return notice


def clean_interrupted_writes(workspace: Workspace, store: JobStore) -> list[str]:
    """At server start: remove the temporaries an interrupted publish or delete left behind (all of
    them when no job runs; with live workers only those a day old, as one may be publishing)."""
    import sys

    running = store.by_status("running")
    try:
        removed = workspace.clean_stale_temporaries(0.0 if not running else 24 * 3600.0)
    except OSError:
        removed = []
    if removed:
        print(f"[lora-factory] removed leftovers of interrupted writes: {', '.join(removed)}", file=sys.stderr)
    return removed
