"""Get an audio base model: a TTS codec LM (Llasa layout) with its codec in ``codec/``, or a Whisper
checkpoint; from the Hub, a local folder, or built offline (tiny).

A Llasa repository holds only the LM; its codec is another repository (``codec_repo_id``, by default
transformers' XCodec2 checkpoint ``HKUSTAudio/xcodec2-hf``), downloaded into ``codec/`` of the same
model folder so the pair always travels together.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lora_factory.kit import LoRAFactoryError, hub
from lora_factory.plugins.audio.codec import CODEC_SUBFOLDER

DEFAULT_CODEC_REPO = "HKUSTAudio/xcodec2-hf"
ASR_NAME_HINTS = ("whisper", "asr")


def tiny_kind(spec: dict[str, Any]) -> str:
    kind = str(spec.get("kind") or "").lower()
    if kind in ("tts", "asr"):
        return kind
    name = str(spec.get("name") or "").lower()
    return "asr" if any(h in name for h in ASR_NAME_HINTS) else "tts"


def _is_speech_lm(folder: Path) -> bool:
    """A causal LM whose tokenizer knows the Llasa speech tokens (no tokenizer load: a text search)."""
    for name in ("tokenizer.json", "added_tokens.json", "tokenizer_config.json"):
        path = folder / name
        if path.is_file() and "<|s_0|>" in path.read_text(encoding="utf-8", errors="ignore"):
            return True
    return False


def download_audio_model(spec: dict[str, Any], ctx: Any) -> dict[str, Any]:
    source = spec.get("source", "hub")
    out = Path(ctx.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if source == "tiny":
        from lora_factory.plugins.audio.tiny_model import build_tiny_tts_model, build_tiny_whisper

        kind = tiny_kind(spec)
        ctx.log(f"tiny {kind} モデルを生成します / building the tiny random {kind} model")
        build = build_tiny_whisper if kind == "asr" else build_tiny_tts_model
        result = build(out, seed=int(spec.get("seed", 0)))
        ctx.progress(1, 1)
        return {"source": "tiny", "kind": kind, **result}
    if source == "local":
        result = hub.import_local_folder(ctx, spec.get("local_path") or "", out, require=("config.json",))
    elif source == "hub":
        result = hub.download_repo(ctx, spec, out, require=("config.json",))
    else:
        raise LoRAFactoryError("INVALID_SOURCE", f"不明な取得元です: {source}(hub / local / tiny)",
                               f"Unknown source '{source}' (hub, local or tiny).", 422,
                               detail={"field": "source", "value": source})
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    if config.get("model_type") != "whisper" and _is_speech_lm(out) and not (out / CODEC_SUBFOLDER).is_dir():
        codec_repo = spec.get("codec_repo_id") or DEFAULT_CODEC_REPO
        ctx.log(f"codec for the speech LM: {codec_repo} -> {CODEC_SUBFOLDER}/")
        if source == "local" and spec.get("codec_path"):
            hub.import_local_folder(ctx, spec["codec_path"], out / CODEC_SUBFOLDER, require=("config.json",))
        else:
            hub.download_repo(ctx, {**spec, "repo_id": codec_repo, "revision": spec.get("codec_revision") or "main"},
                              out / CODEC_SUBFOLDER, require=("config.json",))
        result = {**result, "codec": codec_repo}
    return result
