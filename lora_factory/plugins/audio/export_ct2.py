"""A Whisper LoRA merged and converted to a CTranslate2 model, the form faster-whisper (and
WhisperX, whisper-ctranslate2, Subtitle Edit ...) loads: ``WhisperModel(folder)``.

Steps: the adapter merged into its Whisper base (peft, full precision), saved beside the base's
``tokenizer.json`` and ``preprocessor_config.json`` (transformers 5 writes ``processor_config.json``
only; faster-whisper reads the former), then ctranslate2's own ``TransformersConverter`` with the
chosen quantisation. Only Whisper adapters are exported; a TTS adapter is refused with the reason.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from lora_factory.kit import LoRAFactoryError
from lora_factory.kit.files import write_text_atomic

QUANTIZATIONS = ("float32", "float16", "int8", "int8_float16", "int8_float32", "bfloat16")
EXPORT_TARGETS = {
    "ct2": {
        "label_ja": "faster-whisper (CTranslate2)", "label_en": "faster-whisper (CTranslate2)",
        "description_ja": "Whisper の LoRA をマージして CTranslate2 形式に変換します(faster-whisper / WhisperX 用)。",
        "description_en": "The Whisper LoRA merged and converted to CTranslate2 (faster-whisper / WhisperX).",
        "params_schema": {"type": "object", "properties": {
            "quantization": {"type": "string", "enum": list(QUANTIZATIONS), "default": "int8_float32"}}},
    },
}


def _is_whisper(model_dir: Path) -> bool:
    try:
        config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return config.get("model_type") == "whisper"


def resolve(spec: dict[str, Any]) -> dict[str, Any]:
    """Server side (no torch): the target, the parameters and that the base is a Whisper."""
    given = dict(spec.get("params") or {})
    unknown = sorted(set(given) - {"quantization"})
    if unknown:
        raise LoRAFactoryError("INVALID_EXPORT_PARAMS", f"不明なパラメータ: {', '.join(unknown)}",
                               f"Unknown parameter(s): {', '.join(unknown)}", detail={"field": unknown[0]})
    quantization = given.get("quantization", "int8_float32")
    if quantization not in QUANTIZATIONS:
        raise LoRAFactoryError("INVALID_EXPORT_PARAMS", f"quantization は {', '.join(QUANTIZATIONS)} のどれかです。",
                               f"quantization must be one of {', '.join(QUANTIZATIONS)}.",
                               detail={"field": "quantization"})
    if not _is_whisper(Path(spec["base_model"])):
        raise LoRAFactoryError("EXPORT_UNSUPPORTED",
                               "faster-whisper に書き出せるのは Whisper (音声認識) のアダプターだけです。",
                               "Only Whisper (speech recognition) adapters can be exported for faster-whisper.", 422,
                               detail={"base_model": spec.get("base_model_ref")})
    return dict(spec, params={"quantization": quantization}, warnings=[])


def run(spec: dict[str, Any], ctx: Any) -> dict[str, Any]:
    import torch
    from ctranslate2.converters import TransformersConverter
    from peft import PeftModel
    from transformers import WhisperForConditionalGeneration

    base, adapter, name = Path(spec["base_model"]), Path(spec["adapter"]), spec["output_name"]
    quantization = spec["params"]["quantization"]
    out = Path(ctx.output_dir)
    ctx.log(f"merge {adapter.name} into {base.name}")
    model = WhisperForConditionalGeneration.from_pretrained(str(base), dtype=torch.float32)
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    ctx.progress(1, 3)
    if ctx.should_stop():
        return {"stopped": True}
    with tempfile.TemporaryDirectory(prefix=".tmp-ct2-", dir=str(out.parent)) as tmp:  # the start-up cleaner's name
        merged_dir = Path(tmp) / "merged"
        merged.save_pretrained(str(merged_dir), safe_serialization=True)
        _copy_tokenizer_files(base, merged_dir)
        ctx.progress(2, 3)
        if ctx.should_stop():
            return {"stopped": True}
        ctx.log(f"ctranslate2 TransformersConverter, quantization {quantization}")
        model_dir = out / "model"
        TransformersConverter(str(merged_dir), copy_files=["tokenizer.json", "preprocessor_config.json"]).convert(
            str(model_dir), quantization=quantization)
    ctx.progress(3, 3)
    commands = [f"from faster_whisper import WhisperModel; WhisperModel('{name}/model', device='cpu', "
                f"compute_type='{quantization}').transcribe('clip.wav', language='ja')",
                f"whisper-ctranslate2 clip.wav --model_directory {name}/model --language ja"]
    body = "\n".join(["## Use", "```", *commands, "```"])
    write_text_atomic(out / "README.md", f"# {name}\n\nExported by LoRA Factory: the Whisper adapter "
                      f"`{spec.get('adapter_ref')}` merged into `{spec.get('base_model_ref')}` and converted with "
                      f"CTranslate2 ({quantization}).\n\n{body}\n")
    files = [p.relative_to(out).as_posix() for p in sorted(out.rglob("*")) if p.is_file()]
    return {"files": files, "primary": None, "opens_in": ["faster-whisper", "WhisperX", "whisper-ctranslate2"],
            "commands": commands, "checks": {"quantization": quantization}, "warnings": []}


def _copy_tokenizer_files(base: Path, merged_dir: Path) -> None:
    """``tokenizer.json`` (made from the slow files if the base lacks it) and ``preprocessor_config.json``."""
    if (base / "tokenizer.json").is_file():
        shutil.copy2(base / "tokenizer.json", merged_dir / "tokenizer.json")
    else:
        from transformers import WhisperTokenizerFast

        WhisperTokenizerFast.from_pretrained(str(base)).save_pretrained(str(merged_dir))
    if (base / "preprocessor_config.json").is_file():
        shutil.copy2(base / "preprocessor_config.json", merged_dir / "preprocessor_config.json")
    else:
        from transformers import WhisperFeatureExtractor

        WhisperFeatureExtractor.from_pretrained(str(base)).save_pretrained(str(merged_dir))
    for extra in ("generation_config.json",):
        if (base / extra).is_file():
            shutil.copy2(base / extra, merged_dir / extra)
