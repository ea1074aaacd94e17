"""``/api/models``, ``/api/datasets``, ``/api/adapters``, ``/api/artifacts``."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Body, Depends, File, Form, Query, UploadFile
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from lora_factory.core.catalog.preference_log import append_choice
from lora_factory.core.errors import LoRAFactoryError
from lora_factory.core.schemas import (
    ConfirmBody,
    DownloadRequest,
    ImportFolderRequest,
    ImportInfoRequest,
    ImportRequest,
    MergeRequest,
    PreferenceChoiceRequest,
    RefineRequest,
    SampleDatasetRequest,
    TinyModelRequest,
)
from lora_factory.core.services import Services
from lora_factory.routes import services

router = APIRouter(tags=["catalog"])


# -- models ----------------------------------------------------------------------------------
@router.get("/api/models")
def list_models(modality: str = "text", kind: str | None = None, svc: Services = Depends(services)) -> dict[str, Any]:
    """Base models, or with ``kind`` the auxiliary models of that kind (``vae``, ``controlnet`` ...)."""
    return {"models": svc.catalog.list_models(modality, kind)}


@router.post("/api/models/download")
def download_model(body: DownloadRequest, svc: Services = Depends(services)) -> dict[str, Any]:
    return {"job_id": svc.submitter.start_download(body)}


@router.post("/api/models/import")
def import_model(body: ImportRequest, svc: Services = Depends(services)) -> dict[str, Any]:
    return {"job_id": svc.submitter.start_import(body)}


@router.post("/api/models/tiny")
def tiny_model(body: TinyModelRequest, svc: Services = Depends(services)) -> dict[str, Any]:
    return {"job_id": svc.submitter.start_tiny_model(body)}


@router.post("/api/models/merge")
def merge_model(body: MergeRequest, svc: Services = Depends(services)) -> dict[str, Any]:
    return {"job_id": svc.submitter.start_merge(body)}


@router.delete("/api/models/{modality}/{name}")
def delete_model(modality: str, name: str, kind: str | None = None,
                 body: ConfirmBody = Body(default_factory=ConfirmBody), svc: Services = Depends(services)) -> dict[str, Any]:
    svc.catalog.delete_model(modality, name, body.confirm, kind)
    return {"ok": True}


# -- datasets --------------------------------------------------------------------------------
@router.get("/api/datasets")
def list_datasets(modality: str = "text", svc: Services = Depends(services)) -> dict[str, Any]:
    return {"datasets": svc.datasets.list_datasets(modality)}


def _upload_options(format: str | None, mapping: str | None, encoding: str | None,
                    txt_split: str | None = None) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if format and format != "auto":
        options["format"] = format
    if encoding and encoding != "auto":
        options["encoding"] = encoding
    if txt_split and txt_split != "auto":
        options["txt_split"] = txt_split
    if txt_split and txt_split != "auto":
        options["txt_split"] = txt_split
    if mapping:
        try:
            options["mapping"] = json.loads(mapping)
        except json.JSONDecodeError as exc:
            raise LoRAFactoryError("INVALID_MAPPING", f"列の対応付け (mapping) が JSON ではありません: {exc.msg}",
                                   f"The column mapping is not valid JSON: {exc.msg}", detail={"field": "mapping"}) from exc
        if not isinstance(options["mapping"], dict):
            raise LoRAFactoryError("INVALID_MAPPING", "mapping は JSON オブジェクトで指定してください。",
                                   "mapping must be a JSON object.", detail={"field": "mapping"})
    return options


@router.post("/api/datasets/upload")
def upload_dataset(
    file: UploadFile | None = File(None, description="one dataset file, or a .zip of a folder dataset"),
    files: list[UploadFile] | None = File(None, description="several files of one folder dataset"),
    modality: str = Form("text"),
    name: str | None = Form(None),
    format: str | None = Form(None),
    mapping: str | None = Form(None),
    encoding: str | None = Form(None),
    txt_split: str | None = Form(None, description="how a .txt splits into rows: auto, line, paragraph, whole"),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    options = _upload_options(format, mapping, encoding, txt_split)
    if files:
        if not name:
            raise LoRAFactoryError("INVALID_NAME", "複数のファイルをアップロードするときは name (データセット名) を指定してください。",
                                   "Give a name for the dataset when uploading several files.", detail={"field": "name"})
        return svc.datasets.upload_files(modality, [(f.filename or "", f.file) for f in files], name, options)
    if file is None:
        raise LoRAFactoryError("FILE_REQUIRED", "ファイルを選んでください (file または files)。",
                               "Choose a file to upload (file or files).", detail={"field": "file"})
    return svc.datasets.upload_dataset(modality, file.filename or "", file.file, name=name or None, options=options)


@router.post("/api/datasets/import_folder")
def import_dataset_folder(body: ImportFolderRequest, svc: Services = Depends(services)) -> dict[str, Any]:
    """A folder dataset copied in from a local folder (absolute path on the server's machine)."""
    return svc.datasets.import_folder(body.modality, body.source_path, body.name)


@router.post("/api/datasets/sample")
def sample_dataset(body: SampleDatasetRequest, svc: Services = Depends(services)) -> dict[str, Any]:
    return svc.datasets.add_sample_dataset(body.modality, body.name)


@router.post("/api/datasets/import_info")
def import_dataset_info(body: ImportInfoRequest, svc: Services = Depends(services)) -> dict[str, Any]:
    return svc.dataset_index.import_dataset_info(body)


@router.post("/api/datasets/preference_choice")
def preference_choice(body: PreferenceChoiceRequest, svc: Services = Depends(services)) -> dict[str, Any]:
    """Append the compare view's choice to a preference dataset (a new version, with lineage)."""
    svc.plugins.require_modality(body.modality)
    return append_choice(svc.datasets, body.modality, body.dataset, body.messages, body.chosen, body.rejected,
                         body.chosen_model, body.rejected_model)


@router.post("/api/datasets/refine")
def refine_dataset(body: RefineRequest, svc: Services = Depends(services)) -> dict[str, Any]:
    return {"job_id": svc.submitter.start_refine(body)}


@router.get("/api/datasets/{modality}/{name}")
def get_dataset(modality: str, name: str, rows: int = Query(5, ge=1, le=200), offset: int = Query(0, ge=0),
                svc: Services = Depends(services)) -> dict[str, Any]:
    svc.plugins.require_modality(modality)
    return svc.datasets.inspect_dataset(modality, svc.datasets.dataset_path(modality, name),
                                        {"preview_rows": rows, "offset": offset})


@router.get("/api/datasets/{modality}/{name}/files/{rel:path}", response_class=FileResponse)
def dataset_file(modality: str, name: str, rel: str, svc: Services = Depends(services)) -> FileResponse:
    """A file inside a folder dataset (an image, a clip) for the preview; nothing outside that folder."""
    svc.plugins.require_modality(modality)
    path = svc.datasets.dataset_file(modality, name, rel)
    return FileResponse(path, media_type=svc.datasets.media_type(path), headers={"Cache-Control": "no-cache"})


@router.get("/api/datasets/{modality}/{name}/archive", response_class=FileResponse)
def dataset_archive(modality: str, name: str, target: str | None = None,
                    svc: Services = Depends(services)) -> FileResponse:
    """The dataset to take elsewhere: a folder dataset as a zip, or with ``?target=`` in the layout of a
    tool the plugin declared in ``dataset_exports`` (audio: ``sbv2``, ``gpt_sovits``)."""
    svc.plugins.require_modality(modality)
    tmp = Path(tempfile.mkdtemp(prefix="lf-archive-"))
    try:
        path = svc.datasets.archive(modality, name, tmp, target=target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return FileResponse(path, filename=path.name, media_type="application/zip" if path.suffix == ".zip" else None,
                        background=BackgroundTask(shutil.rmtree, tmp, ignore_errors=True))


@router.get("/api/datasets/{modality}/{name}/lineage")
def dataset_lineage(modality: str, name: str, svc: Services = Depends(services)) -> dict[str, Any]:
    return svc.datasets.dataset_lineage(modality, name)


@router.delete("/api/datasets/{modality}/{name}")
def delete_dataset(modality: str, name: str, body: ConfirmBody = Body(default_factory=ConfirmBody),
                   svc: Services = Depends(services)) -> dict[str, Any]:
    svc.datasets.delete_dataset(modality, name, body.confirm)
    return {"ok": True}


# -- adapters & artifacts --------------------------------------------------------------------
@router.get("/api/adapters")
def list_adapters(modality: str = "text", architecture: str | None = None,
                  svc: Services = Depends(services)) -> dict[str, Any]:
    """``architecture``: only the adapters a base of that architecture can load (``sd15``, ``sdxl`` ...)."""
    return {"adapters": svc.catalog.list_adapters(modality, architecture)}


@router.get("/api/adapters/{modality}/{name}")
def get_adapter(modality: str, name: str, svc: Services = Depends(services)) -> dict[str, Any]:
    svc.plugins.require_modality(modality)
    return svc.catalog.adapter_info(modality, svc.catalog.adapter_path(modality, name), with_lineage=True)


@router.delete("/api/adapters/{modality}/{name}")
def delete_adapter(modality: str, name: str, body: ConfirmBody = Body(default_factory=ConfirmBody),
                   svc: Services = Depends(services)) -> dict[str, Any]:
    svc.catalog.delete_adapter(modality, name, body.confirm)
    return {"ok": True}


@router.get("/api/artifacts")
def list_artifacts(kind: str | None = None, modality: str | None = None,
                   svc: Services = Depends(services)) -> dict[str, Any]:
    return {"artifacts": svc.artifacts.list(kind, modality)}


@router.get("/api/artifacts/{artifact_id}")
def get_artifact(artifact_id: str, svc: Services = Depends(services)) -> dict[str, Any]:
    return svc.artifacts.get(artifact_id)


@router.get("/api/artifacts/{artifact_id}/lineage")
def artifact_lineage(artifact_id: str, svc: Services = Depends(services)) -> dict[str, Any]:
    return svc.artifacts.lineage(artifact_id)
