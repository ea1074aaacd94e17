"""``/api/infer`` (chat and generate, streamed or not; compare base and adapter; input uploads; the
generated media) and ``/api/eval``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, File, Request, UploadFile
from fastapi.responses import FileResponse

from lora_factory.core.errors import LoRAFactoryError
from lora_factory.core.schemas import ChatRequest, EvalRequest, GenerateRequest
from lora_factory.core.services import Services
from lora_factory.routes import client_gone, services, sse

router = APIRouter(tags=["inference"])


@router.post("/api/infer/chat", response_model=None)
def chat(body: ChatRequest, http: Request, svc: Services = Depends(services)) -> Any:
    request = svc.generation.chat_request(body)
    if not body.stream:
        return svc.inference.complete(body.modality, request, client_gone(http))
    return sse.event_stream(svc.inference.stream(body.modality, request, client_gone(http)))


@router.post("/api/infer/compare")
def compare(body: ChatRequest, http: Request, svc: Services = Depends(services)) -> dict[str, Any]:
    if not body.adapter:
        raise LoRAFactoryError("ADAPTER_REQUIRED", "比較するアダプターを指定してください。", "Choose an adapter to compare.")
    gone = client_gone(http)
    base = svc.inference.complete(body.modality, svc.generation.chat_request(body, with_adapter=False), gone)
    tuned = svc.inference.complete(body.modality, svc.generation.chat_request(body), gone)
    return {"base": base, "adapter": tuned}


@router.post("/api/infer/generate", response_model=None)
def generate(body: GenerateRequest, http: Request, svc: Services = Depends(services)) -> Any:
    """Images, speech, transcripts ...: ``stream`` gives server-sent events as the plugin makes them
    (audio chunks before the whole utterance is done); ``compare`` runs base and adapter with one seed."""
    gone = client_gone(http)
    if body.compare:
        return svc.generation.compare(body, gone)
    if not body.stream:
        return svc.generation.complete(body, cancelled=gone)
    return sse.event_stream(svc.generation.stream(body, gone))


@router.post("/api/infer/uploads")
def upload_input(file: UploadFile = File(...), svc: Services = Depends(services)) -> dict[str, Any]:
    """An input file for a later request (img2img image, ControlNet image, audio to transcribe):
    put the returned ``value`` (``upload:<id>``) into the request's ``input``."""
    return svc.media.save_upload(file.filename or "file", file.file)


@router.get("/api/outputs/{modality}/{rel:path}", response_class=FileResponse)
def output_file(modality: str, rel: str, svc: Services = Depends(services)) -> FileResponse:
    """A generated image or audio file (from ``artifacts/outputs/<modality>/`` only)."""
    svc.plugins.require_modality(modality)
    path = svc.media.output_file(modality, rel)
    return FileResponse(path, media_type=svc.datasets.media_type(path))


@router.post("/api/eval/start")
def eval_start(body: EvalRequest, svc: Services = Depends(services)) -> dict[str, Any]:
    return {"job_id": svc.submitter.start_eval(body)}
