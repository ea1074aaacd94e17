"""An OpenAI-compatible surface (``/v1/models``, ``/v1/chat/completions``) so any OpenAI client can try
an adapter. A model id is ``<base>`` or ``<base>+<adapter>`` (an adapter name alone also works: its
recorded base model is used)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette.event import ServerSentEvent

from lora_factory.core.errors import LoRAFactoryError
from lora_factory.core.schemas import ChatRequest
from lora_factory.core.services import Services
from lora_factory.core.storage.workspace import existing_name
from lora_factory.routes import client_gone, retry_after, services, sse

router = APIRouter(prefix="/v1", tags=["openai"])


class OpenAIChatBody(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[dict[str, Any]] = Field(min_length=1)
    stream: bool = False
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    seed: int | None = None


def chat_modalities(svc: Services) -> list[str]:
    return [m for m, d in svc.plugins.modalities().items() if d.get("available") and "chat" in (d.get("supports") or [])]


# the inference kinds an OpenAI route serves (/v1/chat/completions, /v1/audio/*, /v1/images/*)
OPENAI_KINDS = {"chat", "speech", "transcribe", "image"}


def openai_modalities(svc: Services) -> list[str]:
    """Modalities with a model an OpenAI route can use: chat ones, and those declaring speech,
    transcription or image generation among their ``inference_kinds``."""
    return [m for m, d in svc.plugins.modalities().items() if d.get("available") and (
        "chat" in (d.get("supports") or []) or OPENAI_KINDS & set(d.get("inference_kinds") or []))]


@router.get("/models")
def models(svc: Services = Depends(services)) -> dict[str, Any]:
    """Every base and ``base+adapter`` an OpenAI route answers for (chat, speech, transcription, images)."""
    data = []
    for modality in openai_modalities(svc):
        bases = [b for b in svc.catalog.list_models(modality) if not b.get("refused") and not b.get("error")]
        for base in bases:
            data.append({"id": base["name"], "object": "model", "created": 0, "owned_by": "lora-factory",
                         "modality": modality})
        for adapter in svc.catalog.list_adapters(modality):
            if adapter.get("refused"):
                continue
            base_name = (adapter.get("base_model") or "").rstrip("/").split("/")[-1]
            if base_name:
                data.append({"id": f"{base_name}+{adapter['name']}", "object": "model", "created": 0,
                             "owned_by": "lora-factory", "modality": modality})
    return {"object": "list", "data": data}


def _resolve_model(svc: Services, model_id: str) -> tuple[str, str, str | None]:
    # names are checked before the disk is looked at, so the answer never tells whether a path exists
    for part in model_id.split("+", 1):
        existing_name(part, "model")
    for modality in chat_modalities(svc):
        if "+" in model_id:
            base, adapter = model_id.split("+", 1)
            return modality, base, adapter
        models_dir = svc.workspace.models_dir(modality)
        if (models_dir / model_id).is_dir():
            return modality, model_id, None
        if (svc.workspace.adapters_dir(modality) / model_id).is_dir():
            info = svc.catalog.adapter_info(modality, svc.catalog.adapter_path(modality, model_id))
            if info.get("base_model"):
                return modality, info["base_model"], model_id
    raise LoRAFactoryError("MODEL_NOT_FOUND", f"モデル「{model_id}」が見つかりません。/v1/models で一覧を確認してください。",
                           f"Model '{model_id}' was not found; see /v1/models.", http_status=404,
                           detail={"model": model_id})


def _openai_error(exc: LoRAFactoryError) -> JSONResponse:
    body = exc.to_dict()
    body["error"]["type"] = "invalid_request_error" if exc.http_status < 500 else "server_error"
    return JSONResponse(body, status_code=exc.http_status, headers=retry_after(exc))


@router.post("/chat/completions", response_model=None)
def chat_completions(body: OpenAIChatBody, http: Request, svc: Services = Depends(services)) -> Any:
    try:
        modality, base, adapter = _resolve_model(svc, body.model)
        params: dict[str, Any] = {}
        if body.temperature is not None:
            params["temperature"] = body.temperature
        if body.top_p is not None:
            params["top_p"] = body.top_p
        if body.max_tokens or body.max_completion_tokens:
            params["max_new_tokens"] = body.max_completion_tokens or body.max_tokens
        if body.seed is not None:
            params["seed"] = body.seed
        messages = [{"role": m.get("role", "user"), "content": _content_text(m.get("content"))} for m in body.messages]
        req = ChatRequest(modality=modality, base_model=base, adapter=adapter, messages=messages, params=params,
                          stream=body.stream)
        request = svc.generation.chat_request(req)
    except LoRAFactoryError as exc:
        return _openai_error(exc)
    completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    created = int(time.time())
    if not body.stream:
        try:
            done = svc.inference.complete(modality, request, client_gone(http))
        except LoRAFactoryError as exc:
            return _openai_error(exc)
        usage = done.get("usage") or {}
        return {
            "id": completion_id, "object": "chat.completion", "created": created, "model": body.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": done.get("text", "")},
                         "finish_reason": done.get("finish_reason", "stop")}],
            "usage": {"prompt_tokens": usage.get("prompt_tokens", 0),
                      "completion_tokens": usage.get("completion_tokens", 0),
                      "total_tokens": usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0)},
        }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> ServerSentEvent:
        payload = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": body.model,
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return sse.event(None, payload)

    def stream() -> Iterator[ServerSentEvent]:
        yield chunk({"role": "assistant", "content": ""})
        try:
            for event in svc.inference.stream(modality, request, client_gone(http)):
                if event.get("type") == "token" and event.get("text"):
                    yield chunk({"content": event["text"]})
        except LoRAFactoryError as exc:
            yield sse.event(None, exc.to_dict())
        yield chunk({}, "stop")
        yield sse.event(None, "[DONE]")

    return sse.response(stream())


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # [{"type": "text", "text": ...}]
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return "" if content is None else str(content)
