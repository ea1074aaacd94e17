"""Regression checks for synthesised speech: intelligibility (CER of a Whisper transcript against
the text), pace (seconds per character) and loudness, each kept with its score for the comparison
with the previous voice version.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from lora_factory.plugins.audio.metrics import cer

ASR_CACHE_KEY = "audio-regression-asr"
_SPOKEN = re.compile(r"[\s、。，．,.!?！？「」『』（）()・…~〜:;：；\"'`-]")

CHECKS: dict[str, dict[str, Any]] = {
    "cer": {
        "label_ja": "文字誤り率 (Whisper で聞き取り)", "label_en": "Character error rate (Whisper transcript)",
        "params_schema": {"type": "object", "required": ["asr_model"], "properties": {
            "asr_model": {"type": "string", "title": "Whisper model (models/audio/<name>)"},
            "max": {"type": "number", "default": 0.3}, "language": {"type": "string", "default": "ja"},
            "max_new_tokens": {"type": "integer", "description": "default: from the audio length"}}},
    },
    "duration_per_char": {
        "label_ja": "1文字あたりの秒数", "label_en": "Seconds per character",
        "params_schema": {"type": "object", "properties": {"min": {"type": "number", "default": 0.05},
                                                           "max": {"type": "number", "default": 0.4}}},
    },
    "loudness": {
        "label_ja": "ラウドネス (LUFS)", "label_en": "Loudness (LUFS)",
        "params_schema": {"type": "object", "properties": {"min": {"type": "number", "default": -20.0},
                                                           "max": {"type": "number", "default": -12.0}}},
    },
}


def _workspace_home(path: Path) -> Path | None:
    for parent in path.resolve().parents:
        if (parent / "models").is_dir() and (parent / "datasets").is_dir():
            return parent
    return None


def resolve_asr_model(value: str, near: Path) -> Path:
    """``models/audio/<name>`` or ``<name>``, inside the workspace of ``near`` (never outside it)."""
    home = _workspace_home(near)
    candidate = Path(value)
    if candidate.is_absolute():
        path = candidate.resolve()
    else:
        if home is None:
            raise ValueError("no workspace around the output to find the ASR model in")
        rel = value if value.startswith("models/") else f"models/audio/{value}"
        path = (home / rel).resolve()
    if home is not None and home.resolve() not in path.parents:
        raise ValueError(f"ASR model '{value}' is outside the workspace")
    if not (path / "config.json").is_file():
        raise ValueError(f"ASR model '{value}' not found")
    return path


def _spoken_chars(text: str) -> int:
    return len(_SPOKEN.sub("", text))


def _audio_of(output: dict[str, Any]) -> Path | None:
    for item in output.get("media") or []:
        if item.get("kind") == "audio" and item.get("path"):
            return Path(item["path"])
    return None


def _case_text(output: dict[str, Any]) -> str:
    case = output.get("case") or {}
    return str((case.get("input") or {}).get("text") or case.get("prompt") or "")


def evaluate_check(check: dict[str, Any], output: dict[str, Any], reference: dict[str, Any] | None,
                   session: Any) -> dict[str, Any]:
    # here, not at the top: the server imports this module for ``CHECKS`` and stays without numpy
    from lora_factory.plugins.audio.audio_io import read_audio
    from lora_factory.plugins.audio.loudness import integrated_loudness

    kind = check.get("type")
    audio = _audio_of(output)
    if audio is None or not audio.is_file():
        return {"passed": False, "score": None, "detail": "no audio in the output"}
    wave, sr = read_audio(audio)
    seconds = wave.size / sr if sr else 0.0
    text = _case_text(output)
    if kind == "loudness":
        lufs = integrated_loudness(wave, sr)
        low, high = float(check.get("min", -20.0)), float(check.get("max", -12.0))
        return {"passed": low <= lufs <= high, "score": round(lufs, 2), "detail": f"{lufs:.1f} LUFS in [{low}, {high}]"}
    if kind == "duration_per_char":
        normalized = ((output.get("media") or [{}])[0].get("meta") or {}).get("normalized") or text
        chars = max(1, _spoken_chars(normalized))
        value = seconds / chars
        low, high = float(check.get("min", 0.05)), float(check.get("max", 0.4))
        return {"passed": low <= value <= high, "score": round(value, 4),
                "detail": f"{seconds:.2f} s / {chars} chars = {value:.3f} s per char in [{low}, {high}]"}
    if kind == "cer":
        from lora_factory.plugins.audio.asr import WhisperModel

        model_path = resolve_asr_model(str(check.get("asr_model") or ""), audio)
        cache = session.cache.setdefault(ASR_CACHE_KEY, {})
        if cache.get("path") != str(model_path):
            cache.clear()
            cache["model"] = WhisperModel.load(model_path)
            cache["path"] = str(model_path)
        heard = cache["model"].transcribe(wave, sr, language=check.get("language", "ja"), timestamps=False,
                                          max_new_tokens=check.get("max_new_tokens")).text
        value = cer(heard, text)
        limit = float(check.get("max", 0.3))
        detail = {"transcript": heard, "reference": text, "max": limit}
        if reference is not None and reference.get("score") is not None:
            detail["previous"] = reference.get("score")
        return {"passed": value <= limit, "score": round(value, 4), "detail": detail}
    return {"passed": False, "score": None, "detail": f"unknown check type {kind!r}"}
