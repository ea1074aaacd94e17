"""Jobs as clients see them: the JSON of a job (progress, queue position, duration, paths), its log
tail, its metrics and its samples with URLs. Routes and the CLI show the same fields.

Read-only: nothing here changes a job; ``JobManager`` (scheduler.py) does.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from lora_factory.core.inference.media import MediaStore
from lora_factory.core.jobs.scheduler import JobManager
from lora_factory.core.jobs.store import JobStore
from lora_factory.core.storage.workspace import Workspace


class JobViews:
    def __init__(self, workspace: Workspace, store: JobStore, jobs: JobManager, media: MediaStore) -> None:
        self.workspace = workspace
        self.store = store
        self.jobs = jobs
        self.media = media

    def job_view(self, job_id: str) -> dict[str, Any]:
        return self.present_job(self.store.get(job_id))

    def present_job(self, job: dict[str, Any]) -> dict[str, Any]:
        metrics = job.get("metrics") or {}
        duration = None
        if job.get("started_at"):
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
            "devices": job.get("devices") or [],  # the devices it runs (ran) on; [] on the CPU
            "device_request": job.get("device_request"),
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

    def log_tail(self, job_id: str, tail: int = 200, rank: int = 0) -> dict[str, Any]:
        """The job log's last lines; ``rank`` N > 0: that rank's own log of a multi-device job.
        ``ranks`` lists the ranks whose logs exist (``[0]`` for a one-process job)."""
        from lora_factory.core.jobs.ranks import rank_log_path

        job = self.store.get(job_id)
        job_log = self.jobs.log_path(job)
        path = rank_log_path(job_log, rank)
        lines: list[str] = []
        if path.exists():
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()[-max(1, min(tail, 5000)):]
        ranks = [0] + sorted(int(p.name.rsplit(".rank", 1)[1][:-4]) for p in job_log.parent.glob(f"{job_log.stem}.rank*.log")
                             if p.name.rsplit(".rank", 1)[1][:-4].isdigit())
        return {"job_id": job_id, "log_file": str(path), "lines": lines, "rank": rank, "ranks": ranks}

    def _run_records(self, job_id: str, name: str) -> list[dict[str, Any]]:
        """The records of a JSON-lines file of the job's run folder (a line being written is skipped)."""
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
