"""Held-out metrics for an audio model or adapter: CER / WER of Whisper on a dataset's clips."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lora_factory.plugins.audio.asr import WHISPER_RATE, WhisperModel
from lora_factory.plugins.audio.audio_io import read_audio
from lora_factory.plugins.audio.dataset_formats import read_clip_list
from lora_factory.plugins.audio.metrics import corpus_rates
from lora_factory.plugins.audio.model_info import model_kind

MAX_EVAL_CLIPS = 200


def evaluate_audio(spec: dict[str, Any], ctx: Any) -> dict[str, Any]:
    base = Path(spec["base_model"])
    if model_kind(base) != "asr" or not spec.get("dataset"):
        return {"note": "held-out metrics are computed for Whisper (CER / WER on a dataset); "
                        "voices are checked with the regression suite (cer, duration_per_char, loudness)"}
    params = spec.get("params") or {}
    adapter = Path(spec["adapter"]) if spec.get("adapter") else None
    whisper = WhisperModel.load(base, adapter)
    root = Path(spec["dataset"])
    clips = [c for c in read_clip_list(root).clips if c.text.strip()][:MAX_EVAL_CLIPS]
    pairs = []
    for i, clip in enumerate(clips):
        wave, _ = read_audio(clip.path_in(root), WHISPER_RATE)
        pairs.append((whisper.transcribe(wave, WHISPER_RATE, language=params.get("language", "ja"),
                                         timestamps=False).text, clip.text))
        ctx.progress(i + 1, len(clips))
    return {**corpus_rates(pairs), "clips": len(pairs)}
