"""The seed's endpoints, with the exact shapes the first clients were written against."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from lora_factory.core.schemas import OpenPathRequest, TrainStartRequest
from lora_factory.core.services import Services
from lora_factory.core.storage.desktop import open_path
from lora_factory.routes import services

router = APIRouter(tags=["seed"])


@router.post("/train/start")
def train_start(body: TrainStartRequest, svc: Services = Depends(services)) -> dict[str, Any]:
    return {"job_id": svc.submitter.start_train(body)}


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
