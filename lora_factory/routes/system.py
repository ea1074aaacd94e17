"""``/api/plugins``, ``/api/modalities``, ``/api/system``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from lora_factory.core.services import Services
from lora_factory.core.system_info import system_info
from lora_factory.routes import services

router = APIRouter(prefix="/api", tags=["system"])


@router.get("/plugins")
def plugins(svc: Services = Depends(services)) -> dict[str, Any]:
    return {"plugins": svc.plugins.plugin_list()}


@router.get("/modalities")
def modalities(svc: Services = Depends(services)) -> dict[str, Any]:
    return {"modalities": list(svc.plugins.modalities().values())}


@router.get("/system")
def system(svc: Services = Depends(services)) -> dict[str, Any]:
    return system_info(svc.workspace.home)
