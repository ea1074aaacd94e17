"""OpenAI-compatible image generation: ``POST /v1/images/generations``, so the ``openai`` client (and
tools built on it) can draw with a base model or ``<base>+<adapter>``.

Only the request shape is translated here: ``prompt``, ``n``, ``size`` (``"512x768"``),
``response_format`` (``b64_json`` or ``url``); our own parameters (``negative_prompt``, ``seed``,
``steps``, ``guidance_scale``, ``scheduler``, ``lora_scale`` ...) may ride along as extra fields
(``extra_body`` in the openai client). The picture is made by the same ``infer`` hook as the UI's.
"""

from __future__ import annotations

import base64
import time
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from lora_factory.core.errors import LoRAFactoryError
from lora_factory.core.schemas import GenerateRequest
from lora_factory.core.services import Services
from lora_factory.core.storage.workspace import existing_name
from lora_factory.routes import client_gone, retry_after, services

router = APIRouter(prefix="/v1", tags=["openai"])
OPENAI_ONLY = ("model", "prompt", "n", "size", "response_format", "quality", "style", "user", "background",
               "moderation", "output_format", "output_compression", "lora_scale")


class OpenAIImageBody(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    prompt: str
    n: int = Field(1, ge=1, le=16)
    size: str | None = None
    response_format: str = "b64_json"
    lora_scale: float = Field(1.0, ge=-4.0, le=4.0, description="weight of the adapter named in model")


def image_modalities(svc: Services) -> list[str]:
    return [m for m, d in svc.plugins.modalities().items()
            if d.get("available") and "image" in (d.get("inference_kinds") or [])]


def resolve_image_model(svc: Services, model_id: str) -> tuple[str, str, str | None]:
    """(modality, base, adapter) for ``<base>``, ``<base>+<adapter>`` or an adapter name alone.

    Names are checked before the disk is looked at, so the answer never tells whether a path exists."""
    for part in model_id.split("+", 1):
        existing_name(part, "model")
    for modality in image_modalities(svc):
        if "+" in model_id:
            base, adapter = model_id.split("+", 1)
            return modality, base, adapter
        if (svc.workspace.models_dir(modality) / model_id).is_dir():
            return modality, model_id, None
        if (svc.workspace.adapters_dir(modality) / model_id).is_dir():
            info = svc.catalog.adapter_info(modality, svc.catalog.adapter_path(modality, model_id))
            if info.get("base_model"):
                return modality, str(info["base_model"]).rstrip("/").split("/")[-1], model_id
    raise LoRAFactoryError("MODEL_NOT_FOUND", f"画像モデル「{model_id}」が見つかりません。",
                           f"Image model '{model_id}' was not found.", http_status=404, detail={"model": model_id})


def _size(size: str | None) -> dict[str, int]:
    if not size or size == "auto":
        return {}
    try:
        width, height = (int(v) for v in size.lower().split("x", 1))
    except ValueError as exc:
        raise LoRAFactoryError("INVALID_INFER_PARAMS", f"size は 幅x高さ で指定してください: {size}",
                               f"size must be WIDTHxHEIGHT: {size}", 422, detail={"field": "size"}) from exc
    return {"width": width, "height": height}


def _error(exc: LoRAFactoryError) -> JSONResponse:
    body = exc.to_dict()
    body["error"]["type"] = "invalid_request_error" if exc.http_status < 500 else "server_error"
    return JSONResponse(body, status_code=exc.http_status, headers=retry_after(exc))


@router.post("/images/generations", response_model=None)
def images_generations(body: OpenAIImageBody, request: Request, svc: Services = Depends(services)) -> Any:
    try:
        if body.response_format not in ("b64_json", "url"):
            raise LoRAFactoryError("INVALID_INFER_PARAMS", "response_format は b64_json か url です。",
                                   "response_format must be b64_json or url.", 422, detail={"field": "response_format"})
        modality, base, adapter = resolve_image_model(svc, body.model)
        extra = {k: v for k, v in (body.model_extra or {}).items() if k not in OPENAI_ONLY}
        params = {**extra, **_size(body.size), "num_images": body.n}
        adapters = [{"name": adapter, "weight": body.lora_scale}] if adapter else []
        req = GenerateRequest(modality=modality, base_model=base, adapters=adapters, task="image",
                              input={"prompt": body.prompt}, params=params)
        done = svc.generation.complete(req, cancelled=client_gone(request))
    except LoRAFactoryError as exc:
        return _error(exc)
    data = []
    for item in done.get("media") or []:
        if item.get("kind") != "image" or not item.get("file"):
            continue
        entry: dict[str, Any] = {"revised_prompt": body.prompt}
        if body.response_format == "url":
            entry["url"] = str(request.base_url).rstrip("/") + item["url"]
        else:
            entry["b64_json"] = base64.b64encode(svc.media.output_file(modality, item["file"]).read_bytes()).decode("ascii")
        data.append(entry)
    return {"created": int(time.time()), "data": data, "output_format": "png",
            "size": f"{done.get('width')}x{done.get('height')}" if done.get("width") else None}
