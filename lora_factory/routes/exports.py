"""``/api/exports`` (export jobs and their outputs) and the downloads of adapters and exports."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Body, Depends
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from lora_factory.core.schemas import ConfirmBody, ExportRequest
from lora_factory.core.services import Services
from lora_factory.routes import services

router = APIRouter(tags=["exports"])


def _send(path: Path, tmp: Path) -> FileResponse:
    """The file, removing the temporary folder (a zip made for this request) once it is sent."""
    media = "application/zip" if path.suffix == ".zip" and tmp in path.parents else "application/octet-stream"
    return FileResponse(path, filename=path.name, media_type=media,
                        background=BackgroundTask(shutil.rmtree, tmp, ignore_errors=True))


@router.post("/api/exports")
def start_export(body: ExportRequest, svc: Services = Depends(services)) -> dict[str, Any]:
    """Queue an ``export`` job: ``{"job_id", "output_name", "warnings"}`` (warnings: what a runtime may refuse)."""
    return svc.submitter.start_export(body)


@router.get("/api/exports")
def list_exports(modality: str = "text", adapter: str | None = None, svc: Services = Depends(services)) -> dict[str, Any]:
    svc.plugins.require_modality(modality)
    return {"exports": svc.exports.list_exports(modality, adapter)}


@router.get("/api/exports/{modality}/{name}")
def get_export(modality: str, name: str, svc: Services = Depends(services)) -> dict[str, Any]:
    svc.plugins.require_modality(modality)
    return svc.exports.export_info(modality, svc.exports.export_path(modality, name), with_lineage=True)


@router.get("/api/exports/{modality}/{name}/download", response_class=FileResponse)
def download_export(modality: str, name: str, file: str | None = None, zip: bool = False,
                    svc: Services = Depends(services)) -> FileResponse:
    """The export's single file where it is one, else the folder as a zip (``zip=true``: always the zip,
    model card included; ``file=``: one file of the folder)."""
    svc.plugins.require_modality(modality)
    tmp = Path(tempfile.mkdtemp(prefix="lf-download-"))
    return _send(svc.exports.download(modality, name, tmp, file=file, as_zip=zip), tmp)


@router.delete("/api/exports/{modality}/{name}")
def delete_export(modality: str, name: str, body: ConfirmBody = Body(default_factory=ConfirmBody),
                  svc: Services = Depends(services)) -> dict[str, Any]:
    svc.plugins.require_modality(modality)
    svc.exports.delete_export(modality, name, body.confirm)
    return {"ok": True}


@router.get("/api/adapters/{modality}/{name}/download", response_class=FileResponse)
def download_adapter(modality: str, name: str, file: str | None = None,
                     svc: Services = Depends(services)) -> FileResponse:
    """The adapter folder as a zip (model card included), or one ``file`` of it (e.g. the kohya file)."""
    tmp = Path(tempfile.mkdtemp(prefix="lf-download-"))
    return _send(svc.catalog.adapter_download(modality, name, tmp, file=file), tmp)
