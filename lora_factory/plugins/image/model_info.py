"""What an image model is, read cheaply from its files (server process: no torch, no diffusers).

A diffusers folder names its pipeline in ``model_index.json``; a single-file checkpoint (Civitai's
``.safetensors``) is recognised by the key names in its header: SD1 has ``cond_stage_model.transformer``,
SD2 ``cond_stage_model.model`` (OpenCLIP), SDXL ``conditioner.embedders.1``, Flux ``double_blocks``.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from lora_factory.kit import LoRAFactoryError
from lora_factory.kit.hub import read_safetensors_header

PIPELINE_ARCH = {
    "StableDiffusionPipeline": "sd15", "StableDiffusionImg2ImgPipeline": "sd15",
    "StableDiffusionInpaintPipeline": "sd15", "StableDiffusionXLPipeline": "sdxl",
    "StableDiffusionXLImg2ImgPipeline": "sdxl_refiner", "StableDiffusionXLInpaintPipeline": "sdxl",
    "FluxPipeline": "flux", "FluxImg2ImgPipeline": "flux",
}
ARCH_LABELS = {"sd15": "Stable Diffusion 1.x", "sd2": "Stable Diffusion 2.x", "sdxl": "SDXL",
               "sdxl_refiner": "SDXL refiner", "flux": "Flux.1"}
NATIVE_RESOLUTION = {"sd15": 512, "sd2": 768, "sdxl": 1024, "sdxl_refiner": 1024, "flux": 1024}
_DTYPE_NAMES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F8_E4M3": "float8_e4m3fn",
                "F8_E5M2": "float8_e5m2", "U8": "uint8", "I8": "int8", "F64": "float64"}


def arch_from_keys(keys: list[str]) -> str | None:
    """sd15 / sd2 / sdxl / sdxl_refiner / flux from a single-file checkpoint's tensor names."""
    joined = "\n".join(keys[:100000])
    if "double_blocks." in joined and "single_blocks." in joined:
        return "flux"
    if "conditioner.embedders.1" in joined:
        return "sdxl"
    if "conditioner.embedders.0.model." in joined:
        return "sdxl_refiner"
    if "cond_stage_model.model." in joined:
        return "sd2"
    if "cond_stage_model.transformer" in joined or "model.diffusion_model.input_blocks" in joined:
        return "sd15"
    return None


def detect_folder_arch(folder: Path) -> str | None:
    """The architecture of a diffusers pipeline folder, from ``model_index.json`` (None if not one)."""
    index = Path(folder) / "model_index.json"
    if not index.is_file():
        return None
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    arch = PIPELINE_ARCH.get(str(data.get("_class_name", "")))
    if arch == "sd15":
        te = Path(folder) / "text_encoder" / "config.json"
        try:
            if json.loads(te.read_text(encoding="utf-8")).get("hidden_size") == 1024:
                return "sd2"
        except (OSError, json.JSONDecodeError):
            pass
    if arch is None and "text_encoder_2" in data and "unet" in data:
        return "sdxl"
    return arch


def _weights(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).rglob("*.safetensors") if not any(s.startswith(".") for s in p.parts[-3:]))


def describe_weights(files: list[Path]) -> dict[str, Any]:
    """Parameter count and dominant dtype from the headers of ``files`` (no tensor is read)."""
    params, dtypes = 0, Counter()
    for path in files:
        try:
            header = read_safetensors_header(path)
        except LoRAFactoryError:
            continue
        for name, info in header.items():
            if name == "__metadata__" or not isinstance(info, dict):
                continue
            count = 1
            for dim in info.get("shape", []):
                count *= int(dim)
            params += count
            dtypes[_DTYPE_NAMES.get(info.get("dtype", ""), info.get("dtype", "?"))] += count
    return {"parameters": params, "dtype": dtypes.most_common(1)[0][0] if dtypes else None}


def inspect_image_model(path: Path) -> dict[str, Any]:
    """``inspect_model`` for image models: architecture, pipeline, size, dtype, parameters."""
    path = Path(path)
    info: dict[str, Any] = {"format": None, "architecture": None}
    if path.is_file() and path.suffix == ".safetensors":
        header = read_safetensors_header(path)
        info.update(format="single_file", architecture=arch_from_keys([k for k in header if k != "__metadata__"]))
        files = [path]
    else:
        singles = [p for p in path.glob("*.safetensors")] if path.is_dir() else []
        arch = detect_folder_arch(path)
        if arch is None and len(singles) == 1 and not (path / "config.json").exists():
            header = read_safetensors_header(singles[0])
            arch = arch_from_keys([k for k in header if k != "__metadata__"])
            info["format"] = "single_file"
        else:
            info["format"] = "diffusers" if arch else ("component" if (path / "config.json").exists() else None)
        info["architecture"] = arch
        files = _weights(path) if path.is_dir() else []
        if (path / "model_index.json").is_file():
            try:
                info["pipeline"] = json.loads((path / "model_index.json").read_text(encoding="utf-8")).get("_class_name")
            except (OSError, json.JSONDecodeError):
                pass
        elif (path / "config.json").is_file():
            try:
                config = json.loads((path / "config.json").read_text(encoding="utf-8"))
                info["component"] = config.get("_class_name") or (config.get("architectures") or [None])[0]
                info["model_type"] = config.get("model_type")
            except (OSError, json.JSONDecodeError):
                pass
    info.update(describe_weights(files))
    info["size_bytes"] = sum(p.stat().st_size for p in files)
    info["label"] = ARCH_LABELS.get(info["architecture"] or "", info["architecture"])
    info["native_resolution"] = NATIVE_RESOLUTION.get(info["architecture"] or "")
    if info["architecture"] == "flux":
        info["license_note"] = "FLUX.1 [dev] の重みは非商用ライセンスです / FLUX.1 [dev] weights are non-commercial"
    return info
