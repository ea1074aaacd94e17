"""One resolve per inference request (server side, no torch): the task, the input, the parameters and the
kind of base model are checked here, before any model loads, and the parameters come back complete.
``inference.py`` (the worker side) trusts what this returns."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from lora_factory.kit import LoRAFactoryError, presets
from lora_factory.plugins.audio.infer_params import TranscribeParams, check_speakable
from lora_factory.plugins.audio.model_info import model_kind
from lora_factory.plugins.audio.speech_params import SpeechParams

TASKS = ("speech", "transcribe", "read")
MAX_TEXT_CHARS = 5000


def _invalid_input(field: str, ja: str, en: str) -> LoRAFactoryError:
    return LoRAFactoryError("INFER_INVALID_INPUT", ja, en, 422, detail={"field": field})


def _wrong_kind(ja: str, en: str) -> LoRAFactoryError:
    return LoRAFactoryError("MODEL_KIND_MISMATCH", ja, en, 422, detail={"field": "base_model"})


def _validated(model: type[BaseModel], params: dict[str, Any]) -> dict[str, Any]:
    try:
        return model.model_validate(params).model_dump()
    except ValidationError as exc:
        raise presets.invalid_params(exc, "INVALID_INFER_PARAMS", "パラメータ", "Parameter") from None


def speaker_for(params: dict[str, Any], adapter: Path | None) -> str | None:
    """OpenAI's ``voice`` (or ``params.speaker``) names a speaker only for a voice trained with names."""
    wanted = params.get("speaker") or params.get("voice")
    if not wanted or adapter is None:
        return params.get("speaker")
    try:
        config = json.loads((adapter / "training_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return params.get("speaker")
    return str(wanted) if (config.get("params") or {}).get("speaker_prompt") else None


def resolve_audio_request(request: dict[str, Any]) -> dict[str, Any]:
    """The request validated once; every adapter kept with its weight (several voices are mixed)."""
    task = request.get("task") or "speech"
    if task not in TASKS:
        raise LoRAFactoryError("INFER_INVALID_TASK", f"不明な推論の種類です: {task}",
                               f"Unknown inference task '{task}' (speech, transcribe, read).", 422,
                               detail={"field": "task"})
    adapters = list(request.get("adapters") or [])
    adapter = Path(adapters[0]["path"]) if adapters else None
    raw = dict(request.get("params") or {})
    inputs = dict(request.get("input") or {})
    base = Path(str(request.get("base_model") or ""))
    if task == "speech":
        text = str(inputs.get("text") or request.get("prompt") or "").strip()
        if not text:
            raise _invalid_input("input.text", "読み上げる文を入力してください。", "Enter the text to speak.")
        if len(text) > MAX_TEXT_CHARS:
            raise _invalid_input("input.text", f"文が長すぎます（最大 {MAX_TEXT_CHARS} 文字）。",
                                 f"The text is too long (at most {MAX_TEXT_CHARS} characters).")
        check_speakable(text)  # "♪", "😀", "|" or "()" alone: nothing to say
        params = _validated(SpeechParams, {**raw, "speaker": speaker_for(raw, adapter)})
        if model_kind(base) != "tts":
            raise _wrong_kind("音声合成には TTS モデル（コーデック付き）を選んでください。",
                              "Speech needs a TTS model (an LM with its codec).")
        inputs["text"] = text
        reference, transcript = inputs.get("reference_audio"), str(inputs.get("reference_text") or "").strip()
        if reference or transcript:  # a voice to clone: the recording and what it says, both or neither
            if not reference or not Path(str(reference)).is_file():
                raise _invalid_input("input.reference_audio", "クローンする声の音声ファイル（reference_audio）を指定してください。",
                                     "Give the reference recording to clone (reference_audio).")
            if not transcript:
                raise _invalid_input("input.reference_text", "参照音声の書き起こし（reference_text）を指定してください。",
                                     "Give the transcript of the reference recording (reference_text).")
    elif task == "transcribe":
        source = inputs.get("audio") or inputs.get("file")
        if not source or not Path(str(source)).is_file():
            raise _invalid_input("input.audio", "文字起こしする音声ファイルを指定してください。",
                                 "Give the audio file to transcribe.")
        params = _validated(TranscribeParams, raw)
        if model_kind(base) != "asr":
            raise _wrong_kind("文字起こしには Whisper モデルを選んでください。", "Transcription needs a Whisper model.")
        inputs["audio"] = str(source)
    else:
        params = raw
    return dict(request, task=task, input=inputs, params=params, adapters=adapters)
