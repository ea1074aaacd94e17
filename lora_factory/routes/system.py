"""``/api/plugins``, ``/api/modalities``, ``/api/system``, ``/api/health``, ``/api/settings``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from lora_factory.core.schemas import SettingsUpdate
from lora_factory.core.services import Services
from lora_factory.core.storage.settings import load_settings, public_view
from lora_factory.core.system_info import system_info
from lora_factory.routes import services

router = APIRouter(prefix="/api", tags=["system"])


@router.get("/plugins")
def plugins(svc: Services = Depends(services)) -> dict[str, Any]:
    return {"plugins": svc.plugins.plugin_list(), "conflicts": svc.plugins.conflicts}


@router.get("/modalities")
def modalities(svc: Services = Depends(services)) -> dict[str, Any]:
    return {"modalities": list(svc.plugins.modalities().values())}


@router.get("/system")
def system(svc: Services = Depends(services)) -> dict[str, Any]:
    return system_info(svc.workspace.home) | {"health": svc.health.report(), "devices": svc.jobs.devices.view(),
                                                 "cluster": svc.jobs.cluster.view()}


@router.get("/devices")
def devices(svc: Services = Depends(services)) -> dict[str, Any]:
    """The devices jobs share and what holds each (the training form's picker; cheaper than /system)."""
    return {"devices": svc.jobs.devices.view()}


@router.get("/health")
def health(svc: Services = Depends(services)) -> dict[str, Any]:
    """Cheap (no GPU query): whether jobs can start, and what the user must be told (the UI's banner)."""
    return svc.health.report()


@router.get("/settings")
def get_settings(svc: Services = Depends(services)) -> dict[str, Any]:
    return public_view(load_settings(svc.workspace.home))


@router.put("/settings")
def put_settings(body: SettingsUpdate, svc: Services = Depends(services)) -> dict[str, Any]:
    return public_view(svc.update_settings(body.model_dump(exclude_unset=True)))
