"""Describe a text model folder without importing torch (it runs in the server process).

Why read safetensors headers (``kit.hub.read_safetensors_header``): the format is an 8-byte
little-endian header length then a JSON header listing every tensor's dtype and shape, so counting
parameters costs a few kilobytes of I/O instead of loading gigabytes of weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lora_factory.kit import LoRAFactoryError
from lora_factory.kit.hub import read_safetensors_header

_DTYPE_NAMES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64", "I8": "int8",
                "U8": "uint8", "I32": "int32", "I64": "int64", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
                "BOOL": "bool", "I16": "int16"}


def count_safetensors(files: list[Path]) -> tuple[int, dict[str, int]]:
    """Total parameters and parameters per dtype over the given files."""
    total = 0
    per_dtype: dict[str, int] = {}
    for file in files:
        for name, meta in read_safetensors_header(file).items():
            if name == "__metadata__":
                continue
            n = 1
            for dim in meta.get("shape", []):
                n *= int(dim)
            total += n
            dtype = _DTYPE_NAMES.get(meta.get("dtype", ""), str(meta.get("dtype", "")).lower())
            per_dtype[dtype] = per_dtype.get(dtype, 0) + n
    return total, per_dtype


def inspect_text_model(path: Path) -> dict[str, Any]:
    """``{"architecture","model_type","parameters","dtype","size_bytes","chat_template","files",...}``."""
    path = Path(path)
    config_file = path / "config.json"
    if not config_file.is_file():
        raise LoRAFactoryError("MODEL_INVALID", f"「{path.name}」に config.json がありません。",
                               f"'{path.name}' has no config.json.", 422, detail={"path": str(path)})
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LoRAFactoryError("MODEL_INVALID", f"config.json を読めません: {exc}", f"Cannot read config.json: {exc}",
                               422, detail={"path": str(config_file)}) from exc
    files = [p for p in path.rglob("*") if p.is_file() and ".cache" not in p.relative_to(path).parts]
    weights = sorted(p for p in files if p.suffix == ".safetensors")
    try:
        parameters, per_dtype = count_safetensors(weights)
    except (OSError, ValueError, LoRAFactoryError) as exc:
        raise LoRAFactoryError("MODEL_INVALID", f"safetensors ヘッダを読めません: {exc}",
                               f"Cannot read a safetensors header: {exc}", 422, detail={"path": str(path)}) from exc
    stored_dtype = max(per_dtype, key=per_dtype.get) if per_dtype else None
    text_config = config.get("text_config") if isinstance(config.get("text_config"), dict) else {}
    chat_template = (path / "chat_template.jinja").is_file() or (path / "chat_template.json").is_file()
    tok_config = path / "tokenizer_config.json"
    if not chat_template and tok_config.is_file():
        try:
            chat_template = bool(json.loads(tok_config.read_text(encoding="utf-8")).get("chat_template"))
        except (OSError, ValueError):
            chat_template = False
    architectures = config.get("architectures") or []
    quant = config.get("quantization_config") or {}
    return {
        "architecture": architectures[0] if architectures else None,
        "architectures": architectures,
        "model_type": config.get("model_type"),
        "parameters": parameters,
        "dtype": config.get("dtype") or config.get("torch_dtype") or stored_dtype,
        "stored_dtype": stored_dtype,
        "hidden_size": config.get("hidden_size", text_config.get("hidden_size")),
        "num_layers": config.get("num_hidden_layers", text_config.get("num_hidden_layers")),
        "vocab_size": config.get("vocab_size", text_config.get("vocab_size")),
        "size_bytes": sum(p.stat().st_size for p in files),
        "chat_template": chat_template,
        "files": len(files),
        "safetensors": bool(weights),
        "quantization": quant.get("quant_method") if isinstance(quant, dict) else None,
        "merged": (path / "merge_info.json").is_file(),
    }
