"""OpenAI-compatible speech routes: ``POST /v1/audio/speech`` and ``POST /v1/audio/transcriptions``,
so the ``openai`` client (``client.audio.speech.create``, ``client.audio.transcriptions.create``)
works against a local voice. The model id is ``<base>`` or ``<base>+<adapter>``.

Thin: the request becomes a host generate request of the modality whose plugin declares the task
(``speech`` / ``transcribe`` in its ``inference_kinds``; ``svc.generation``), answered by the inference worker; streamed audio chunks are
relayed as they come.
"""

from __future__ import annotations

import base64
import io
import itertools
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from lora_factory.core.errors import LoRAFactoryError
from lora_factory.core.schemas import GenerateRequest
from lora_factory.core.services import Services
from lora_factory.routes import client_gone, services

router = APIRouter(prefix="/v1/audio", tags=["openai"])
PCM_RATE = 24000  # OpenAI's pcm format: 24 kHz, 16-bit little-endian, mono
# synthesis settings a client may add beside OpenAI's fields (extra_body in the openai client)
EXTRA_PARAMS = ("pitch", "volume_db", "pause_ms", "temperature", "top_p", "seed", "max_seconds_per_sentence",
                "target_lufs", "true_peak_db", "sample_rate", "latin", "batch_sentences", "int8")
MEDIA_TYPES = {"wav": "audio/wav", "flac": "audio/flac", "pcm": "audio/pcm", "mp3": "audio/mpeg", "opus": "audio/ogg"}
WHOLE_FILE_FORMATS = ("flac", "mp3", "opus")  # encoded once the whole text is spoken


class SpeechBody(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1)
    input: str = Field(min_length=1, max_length=5000)
    voice: str | None = None
    speed: float = Field(1.0, ge=0.25, le=4.0)
    response_format: Literal["wav", "flac", "pcm", "mp3", "opus", "aac"] = "wav"
    # None: PCM streams (sentence by sentence), a WAV comes whole with its true sizes; a streamed WAV
    # (stream=True) cannot know its length up front and carries the 'unknown' sizes (docs/audio.md)
    stream: bool | None = None
    instructions: str | None = None


def split_model(model_id: str) -> tuple[str, str | None]:
    """``<base>`` or ``<base>+<adapter>``: workspace names, resolved (and confined) by the host."""
    base, _, adapter = model_id.partition("+")
    return base, adapter or None


def wav_header(sample_rate: int, data_bytes: int | None = None) -> bytes:
    """A PCM-16 mono WAV header; with no length (a stream) the sizes are the 'unknown' maximum."""
    size = 0xFFFFFFFF - 36 if data_bytes is None else data_bytes
    return (b"RIFF" + struct.pack("<I", min(0xFFFFFFFF, size + 36)) + b"WAVEfmt "
            + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
            + b"data" + struct.pack("<I", size))


def _resample_pcm(chunk: bytes, rate: int, target: int) -> bytes:
    """Only for a plugin that did not honour the ``sample_rate`` asked for (the built-in one does)."""
    if rate == target:
        return chunk
    import numpy as np
    import soxr

    wave = np.frombuffer(chunk, dtype="<i2").astype(np.float32) / 32767.0
    out = soxr.resample(wave, rate, target)
    return (np.clip(out, -1, 1) * 32767).round().astype("<i2").tobytes()


@router.post("/speech", response_model=None)
def speech(body: SpeechBody, http: Request, svc: Services = Depends(services)) -> Response:
    fmt = body.response_format
    if fmt not in MEDIA_TYPES:
        raise LoRAFactoryError("UNSUPPORTED_FORMAT", f"出力形式「{fmt}」には対応していません（wav / flac / pcm / mp3 / opus）。",
                               f"response_format '{fmt}' is not supported (wav, flac, pcm, mp3, opus).", 422,
                               detail={"field": "response_format"})
    base, adapter = split_model(body.model)
    extras = {k: v for k, v in (body.model_extra or {}).items() if k in EXTRA_PARAMS}
    params: dict[str, Any] = {**extras, "speed": body.speed, "format": fmt if fmt in WHOLE_FILE_FORMATS else "wav"}
    if body.voice:
        params["voice"] = body.voice
    if fmt == "pcm":  # the worker resamples each sentence once, in float (the server, without numpy, passes it on)
        params["sample_rate"] = PCM_RATE
    modality = svc.plugins.modality_for_task("speech")
    # a voice to clone (extra_body): "reference_audio": "upload:<id>" from /api/infer/uploads, with its transcript
    cloning = {k: str(v) for k, v in (body.model_extra or {}).items() if k in ("reference_audio", "reference_text")}
    request = GenerateRequest(modality=modality, task="speech", base_model=base, adapter=adapter,
                              input={"text": body.input, **cloning}, params=params,
                              stream=fmt not in WHOLE_FILE_FORMATS)
    events = svc.generation.stream(request, client_gone(http))
    first = next(events, None)  # a load error is still an HTTP error, not a broken stream

    def chunks() -> Iterator[tuple[bytes, int]]:
        """Each sentence's audio as the worker sends it (a lazy chain: nothing waits for the last one)."""
        for event in itertools.chain([first] if first is not None else [], events):
            if event.get("type") == "audio" and event.get("chunk"):
                yield base64.b64decode(event["chunk"]), int(event["sample_rate"])

    if fmt in WHOLE_FILE_FORMATS:
        done_file = None
        for event in [first, *events] if first else events:
            if event.get("type") == "audio" and event.get("file"):
                done_file = svc.media.output_file(modality, event["file"])
        if done_file is None or not Path(done_file).is_file():
            raise LoRAFactoryError("INFERENCE_FAILED", "音声が生成されませんでした。", "No audio was produced.", 500)
        return Response(Path(done_file).read_bytes(), media_type=MEDIA_TYPES[fmt])

    def stream() -> Iterator[bytes]:
        header_sent = False
        for pcm, rate in chunks():
            if fmt == "pcm":
                yield _resample_pcm(pcm, rate, PCM_RATE)
                continue
            if not header_sent:
                yield wav_header(rate)
                header_sent = True
            yield pcm

    if body.stream if body.stream is not None else fmt == "pcm":
        return StreamingResponse(stream(), media_type=MEDIA_TYPES[fmt])
    data = b"".join(stream())
    if fmt == "wav":  # a complete file: the real sizes in the header
        data = wav_header(int.from_bytes(data[24:28], "little"), len(data) - 44) + data[44:]
    return Response(data, media_type=MEDIA_TYPES[fmt])


def _srt_time(seconds: float, sep: str) -> str:
    ms = int(round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


MIN_CUE_S = 0.3  # a cue must last long enough to be shown; Whisper may give start == end


def subtitles(segments: list[dict[str, Any]], kind: str) -> str:
    """SRT / VTT cues: empty texts skipped, numbered without gaps, never zero-length (a cue with
    start == end is stretched to MIN_CUE_S, but not past the next cue's start)."""
    out = io.StringIO()
    if kind == "vtt":
        out.write("WEBVTT\n\n")
    cues = [dict(seg) for seg in segments if str(seg.get("text", "")).strip()]
    for k, seg in enumerate(cues):
        start = float(seg["start"])
        limit = float(cues[k + 1]["start"]) if k + 1 < len(cues) else start + MIN_CUE_S
        seg["end"] = max(float(seg["end"]), min(start + MIN_CUE_S, max(limit, start + 0.001)))
    for i, seg in enumerate(cues, start=1):
        sep = "," if kind == "srt" else "."
        if kind == "srt":
            out.write(f"{i}\n")
        out.write(f"{_srt_time(seg['start'], sep)} --> {_srt_time(seg['end'], sep)}\n{seg['text']}\n\n")
    return out.getvalue()


@router.post("/transcriptions", response_model=None)
def transcriptions(file: UploadFile = File(...), model: str = Form(...), language: str | None = Form(None),
                   prompt: str | None = Form(None), response_format: str = Form("json"),
                   temperature: float | None = Form(None), *, http: Request,
                   svc: Services = Depends(services)) -> Response:
    if response_format not in ("json", "text", "verbose_json", "srt", "vtt"):
        raise LoRAFactoryError("UNSUPPORTED_FORMAT", f"出力形式「{response_format}」には対応していません。",
                               f"response_format '{response_format}' is not supported.", 422,
                               detail={"field": "response_format"})
    base, adapter = split_model(model)
    upload = svc.media.save_upload(file.filename or "audio.wav", file.file)
    request = GenerateRequest(modality=svc.plugins.modality_for_task("transcribe"), task="transcribe", base_model=base, adapter=adapter,
                              input={"audio": upload["value"]},
                              params={"language": language or "ja", "prompt": prompt or "",
                                      "timestamps": response_format in ("verbose_json", "srt", "vtt")})
    try:
        done = svc.generation.complete(request, cancelled=client_gone(http))
    finally:
        svc.media.discard_upload(upload["upload"])  # the client's audio was needed for this call only
    text = done.get("text", "")
    segments = done.get("segments") or []
    if response_format == "text":
        return PlainTextResponse(text)
    if response_format in ("srt", "vtt"):
        return PlainTextResponse(subtitles(segments, response_format))
    if response_format == "verbose_json":
        return JSONResponse({"task": "transcribe", "language": done.get("language"), "duration": done.get("duration"),
                             "text": text, "segments": [{"id": i, **s} for i, s in enumerate(segments)]})
    return JSONResponse({"text": text})
