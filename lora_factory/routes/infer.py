"""``/api/infer`` (chat, streamed or not; compare base and adapter) and ``/api/eval``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse

from lora_factory.core.errors import LoRAFactoryError
from lora_factory.core.schemas import ChatRequest, EvalRequest
from lora_factory.core.services import Services
from lora_factory.routes import services

router = APIRouter(tags=["inference"])


def sse_event(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def primed(events: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Pull the first event before answering, so a load error is still an HTTP error, not a broken stream."""
    first = next(events, None)

    def rest() -> Iterator[dict[str, Any]]:
        if first is not None:
            yield first
        yield from events

    return rest()


@router.post("/api/infer/chat", response_model=None)
def chat(body: ChatRequest, svc: Services = Depends(services)) -> Any:
    request = svc.chat_request(body)
    if not body.stream:
        return svc.inference.complete(body.modality, request)
    events = primed(svc.inference.stream(body.modality, request))

    def stream() -> Iterator[str]:
        try:
            for event in events:
                yield sse_event(event.get("type", "token"), event)
        except LoRAFactoryError as exc:
            yield sse_event("error", exc.to_dict()["error"])

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


@router.post("/api/infer/compare")
def compare(body: ChatRequest, svc: Services = Depends(services)) -> dict[str, Any]:
    if not body.adapter:
        raise LoRAFactoryError("ADAPTER_REQUIRED", "比較するアダプターを指定してください。", "Choose an adapter to compare.")
    base = svc.inference.complete(body.modality, svc.chat_request(body, with_adapter=False))
    tuned = svc.inference.complete(body.modality, svc.chat_request(body))
    return {"base": base, "adapter": tuned}


@router.post("/api/eval/start")
def eval_start(body: EvalRequest, svc: Services = Depends(services)) -> dict[str, Any]:
    return {"job_id": svc.start_eval(body)}
