"""The seed's endpoints, with the exact shapes the first clients were written against."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from lora_factory.core.schemas import OpenPathRequest, TrainStartRequest
from lora_factory.core.services import Services
from lora_factory.core.storage.desktop import open_path
from lora_factory.routes import services

router = APIRouter(tags=["seed"])


@router.post("/train/start")
def train_start(body: TrainStartRequest, svc: Services = Depends(services)) -> dict[str, Any]:
    return {"job_id": svc.submitter.start_train(body)}


@router.post("/api/train/estimate")
def train_estimate(body: TrainStartRequest, svc: Services = Depends(services)) -> dict[str, Any]:
    """Total steps, time and memory of the run this body would start (nothing is queued)."""
    from lora_factory.core.jobs.train_plan import estimate_train
    from lora_factory.core.system_info import system_info

    return estimate_train(svc.submitter, svc.store, body, system_info(svc.workspace.home))


@router.post("/api/train/command")
def train_command(body: TrainStartRequest, request: Request, svc: Services = Depends(services)) -> dict[str, Any]:
    """The ``lora-factory train`` and ``curl`` commands that start the run this body would start."""
    from lora_factory.core.jobs.train_command import train_commands

    guard = getattr(request.app.state, "guard", None)
    return train_commands(body.model_dump(exclude_none=True), str(request.base_url), str(svc.workspace.home),
                          bool(guard and guard.token))


@router.get("/train/status/{job_id}")
def train_status(job_id: str, svc: Services = Depends(services)) -> dict[str, Any]:
    return svc.job_views.job_view(job_id)


@router.post("/train/cancel/{job_id}")
def train_cancel(job_id: str, svc: Services = Depends(services)) -> dict[str, Any]:
    job = svc.jobs.cancel(job_id)
    return {"ok": True, "status": job["status"]}


@router.get("/utils/paths")
def utils_paths(svc: Services = Depends(services)) -> dict[str, Any]:
    return svc.workspace.paths()


@router.post("/utils/open_path")
def utils_open_path(body: OpenPathRequest, svc: Services = Depends(services)) -> dict[str, Any]:
    return open_path(svc.workspace, body.key)
