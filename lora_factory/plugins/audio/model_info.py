"""Describe an audio model folder cheaply (config files only; server process, no torch)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

LICENSE_NOTES = {
    "llasa": "Llasa (HKUSTAudio) weights: CC-BY-NC-4.0 (non-commercial). XCodec2: CC-BY-NC-4.0.",
    "whisper": "OpenAI Whisper: MIT. kotoba-whisper: Apache-2.0 (check each checkpoint's card).",
}


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*.safetensors") if ".cache" not in p.parts)


def _read_config(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _role(path: Path, config: dict[str, Any]) -> str:
    """``asr`` (Whisper), ``tts`` (a causal LM with a ``codec/`` beside it) or ``unknown``."""
    if config.get("model_type") == "whisper":
        return "asr"
    if (path / "codec" / "config.json").is_file():
        return "tts"
    return "unknown"


def model_kind(path: Path) -> str:
    """``tts``, ``asr`` or ``unknown`` from the config files alone (no weights read, no size summed)."""
    config = _read_config(Path(path))
    return "unknown" if config is None else _role(Path(path), config)


def inspect_audio_model(path: Path) -> dict[str, Any]:
    config = _read_config(path)
    if config is None:
        return {"architecture": None, "model_role": "unknown"}
    arch = (config.get("architectures") or [None])[0]
    out: dict[str, Any] = {"architecture": arch, "model_type": config.get("model_type"),
                           "weights_bytes": _size(path), "dtype": config.get("torch_dtype") or config.get("dtype")}
    role = _role(path, config)
    if role == "asr":
        out.update(model_role="asr", family="whisper", task="transcribe", license_note=LICENSE_NOTES["whisper"])
        return out
    if role == "tts":
        codec_cfg = json.loads((path / "codec" / "config.json").read_text(encoding="utf-8"))
        levels = codec_cfg.get("quantization_levels") or []
        size = 1
        for level in levels:
            size *= int(level)
        out.update(model_role="tts", family="llasa", task="speech", codec=codec_cfg.get("model_type"),
                   codebook_size=size if levels else None, sample_rate=codec_cfg.get("sampling_rate", 16000),
                   license_note=LICENSE_NOTES["llasa"])
        return out
    out.update(model_role="unknown", note="not a Whisper model and no codec/ folder beside the LM")
    return out
