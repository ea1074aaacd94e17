"""``/api/jobs``: list, inspect, follow (server-sent events), cancel, re-run, resume, delete."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Body, Depends, Query
from fastapi.responses import FileResponse
from sse_starlette.event import ServerSentEvent
from sse_starlette.sse import EventSourceResponse

from lora_factory.core.jobs.store import TERMINAL_STATUSES
from lora_factory.core.schemas import ConfirmBody, RerunRequest
from lora_factory.core.services import Services
from lora_factory.routes import services, sse

router = APIRouter(prefix="/api/jobs", tags=["jobs"])


@router.get("")
def list_jobs(kind: str | None = None, status: str | None = None, modality: str | None = None,
              limit: int = Query(200, ge=1, le=1000), svc: Services = Depends(services)) -> dict[str, Any]:
    return {"jobs": svc.job_views.list_jobs(kind, status, modality, limit)}


@router.get("/{job_id}")
def get_job(job_id: str, svc: Services = Depends(services)) -> dict[str, Any]:
    return svc.job_views.job_view(job_id)


@router.get("/{job_id}/log")
def job_log(job_id: str, tail: int = Query(200, ge=1, le=5000), rank: int = Query(0, ge=0, le=4096),
            svc: Services = Depends(services)) -> dict[str, Any]:
    return svc.job_views.log_tail(job_id, tail, rank)


@router.get("/{job_id}/metrics")
def job_metrics(job_id: str, svc: Services = Depends(services)) -> dict[str, Any]:
    return {"metrics": svc.job_views.metrics(job_id)}


@router.post("/{job_id}/cancel")
def cancel_job(job_id: str, svc: Services = Depends(services)) -> dict[str, Any]:
    job = svc.jobs.cancel(job_id)
    return {"ok": True, "status": job["status"]}


@router.post("/{job_id}/rerun")
def rerun_job(job_id: str, body: RerunRequest | None = None, svc: Services = Depends(services)) -> dict[str, Any]:
    new_id = svc.jobs.rerun(job_id, body.output_name if body else None)
    # a taken name became "<name>-v2": the answer names both, so the UI can say so
    return {"job_id": new_id, "output_name": svc.store.get(new_id)["output_name"],
            "previous_output_name": svc.store.get(job_id)["output_name"]}


@router.post("/{job_id}/resume")
def resume_job(job_id: str, svc: Services = Depends(services)) -> dict[str, Any]:
    return {"job_id": svc.jobs.resume(job_id)}


@router.delete("/{job_id}")
def delete_job(job_id: str, body: ConfirmBody = Body(default_factory=ConfirmBody),
               svc: Services = Depends(services)) -> dict[str, Any]:
    svc.jobs.delete(job_id, body.confirm)
    return {"ok": True}


@router.get("/{job_id}/samples")
def job_samples(job_id: str, svc: Services = Depends(services)) -> dict[str, Any]:
    """Samples the training wrote so far (images, utterances), each with its URL."""
    return {"samples": svc.job_views.samples(job_id)}


@router.get("/{job_id}/files/{rel:path}", response_class=FileResponse)
def job_file(job_id: str, rel: str, svc: Services = Depends(services)) -> FileResponse:
    """A sample or an eval output of a job (``samples/`` and ``outputs/`` of its run folder only)."""
    svc.store.get(job_id)
    path = svc.media.run_file(job_id, rel)
    return FileResponse(path, media_type=svc.datasets.media_type(path))


def read_new_lines(path: Path, position: int) -> tuple[list[str], int]:
    """Complete lines appended to ``path`` since byte ``position`` (a half-written last line waits)."""
    if not path.exists():
        return [], position
    with open(path, "rb") as fh:
        fh.seek(position)
        chunk = fh.read()
    complete = chunk[: chunk.rfind(b"\n") + 1]
    return complete.decode("utf-8", errors="replace").splitlines(), position + len(complete)


@router.get("/{job_id}/events")
async def job_events(job_id: str, svc: Services = Depends(services)) -> EventSourceResponse:
    """Progress records, log lines and status changes, as they happen, until the job ends (or the client goes:
    the SSE response then cancels this generator)."""
    svc.store.get(job_id)  # 404 before the stream starts

    async def stream() -> AsyncIterator[ServerSentEvent]:
        job = svc.job_views.job_view(job_id)
        log_path = svc.jobs.log_path(svc.store.get(job_id))
        metrics_path = svc.workspace.run_dir(job_id) / "metrics.jsonl"
        samples_path = svc.workspace.run_dir(job_id) / "samples.jsonl"
        log_pos = metrics_pos = samples_pos = 0
        last_status = None
        yield sse.retry(2000)
        while True:
            job = svc.job_views.job_view(job_id)
            lines, metrics_pos = read_new_lines(metrics_path, metrics_pos)
            for line in lines[-50:]:
                try:
                    yield sse.event("progress", json.loads(line))
                except json.JSONDecodeError:
                    continue
            lines, samples_pos = read_new_lines(samples_path, samples_pos)
            for line in lines:
                try:
                    yield sse.event("sample", svc.job_views.present_sample(job_id, json.loads(line)))
                except json.JSONDecodeError:
                    continue
            lines, log_pos = read_new_lines(log_path, log_pos)
            for line in lines[-200:]:
                yield sse.event("log", {"line": line})
            if job["status"] != last_status:
                last_status = job["status"]
                yield sse.event("status", job)
            if job["status"] in TERMINAL_STATUSES:
                yield sse.event("end", {"status": job["status"]})
                return
            await asyncio.sleep(0.4)

    return sse.response(stream())
