"""The image modality's export targets: an A1111 checkpoint (``a1111``), a merge of several LoRAs
(``lora_merge``) and a rank resize (``lora_resize``).

``resolve`` runs in the server (no torch): parameters, architectures and the other adapters of a merge
are checked there, so a request that cannot work is a 4xx before any job starts. The two LoRA targets
write a new *adapter* (``output: "adapter"``): the host publishes it under ``lora_adapters/image/`` with
the adapters it came from as its parents.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from lora_factory.kit import LoRAFactoryError

PRECISIONS = ("fp16", "fp32", "bf16")
EXPORT_TARGETS: dict[str, dict[str, Any]] = {
    "a1111": {
        "label_ja": "A1111 / ComfyUI チェックポイント", "label_en": "A1111 / ComfyUI checkpoint",
        "description_ja": "ベースモデルに LoRA を指定の重みでマージし、単一の .safetensors (元の LDM 形式) に書き出します (SD1.5 / SDXL)。",
        "description_en": "The base with the LoRA merged at a chosen weight, as one original-layout (LDM) "
                          ".safetensors checkpoint (SD1.5 / SDXL).",
        "params_schema": {"type": "object", "properties": {
            "weight": {"type": "number", "default": 1.0, "minimum": -4, "maximum": 4},
            "precision": {"type": "string", "enum": ["fp16", "fp32"], "default": "fp16"}}},
    },
    "lora_merge": {
        "output": "adapter",
        "label_ja": "LoRA のマージ", "label_en": "Merge LoRAs",
        "description_ja": "複数の LoRA を重み付きで 1 つの LoRA にまとめます (rank 指定時は SVD で縮約)。新しいアダプターになります。",
        "description_en": "Several LoRAs merged with weights into one LoRA (with a rank: reduced by SVD). "
                          "The result is a new adapter.",
        "params_schema": {"type": "object", "required": ["adapters"], "properties": {
            "weight": {"type": "number", "default": 1.0, "minimum": -4, "maximum": 4,
                       "description": "this adapter's weight"},
            "adapters": {"type": "array", "maxItems": 8, "items": {"type": "object", "required": ["name"], "properties": {
                "name": {"type": "string"}, "weight": {"type": "number", "default": 1.0, "minimum": -4, "maximum": 4}}}},
            "rank": {"type": "integer", "minimum": 1, "description": "none: exact (ranks stacked)"},
            "precision": {"type": "string", "enum": list(PRECISIONS), "default": "fp16"}}},
    },
    "lora_resize": {
        "output": "adapter",
        "label_ja": "LoRA の rank 変更 (SVD)", "label_en": "Resize a LoRA's rank (SVD)",
        "description_ja": "SVD で LoRA の rank を変えます(kohya の resize_lora と同じ)。保持したエネルギーを報告します。",
        "description_en": "The LoRA's rank changed by SVD (as kohya's resize_lora); the kept energy is reported.",
        "params_schema": {"type": "object", "required": ["rank"], "properties": {
            "rank": {"type": "integer", "minimum": 1},
            "precision": {"type": "string", "enum": list(PRECISIONS), "default": "fp16"}}},
    },
}
_ALLOWED = {"a1111": {"weight", "precision"}, "lora_merge": {"weight", "adapters", "rank", "precision"},
            "lora_resize": {"rank", "precision"}}


def _invalid(field: str, ja: str, en: str) -> LoRAFactoryError:
    return LoRAFactoryError("INVALID_EXPORT_PARAMS", ja, en, 422, detail={"field": field})


def _unsupported(ja: str, en: str, **detail: Any) -> LoRAFactoryError:
    return LoRAFactoryError("EXPORT_UNSUPPORTED", ja, en, 422, detail=detail)


MAX_WEIGHT = 4.0  # a LoRA weight, as the generation form and the a1111 schema bound it
MAX_MERGED = 8  # LoRAs merged into one (as many as a generation mixes)


def _number(params: dict[str, Any], key: str, default: float) -> float:
    """A LoRA weight: finite and within ±4 (NaN, Infinity or 1e308 wrote a merged LoRA of NaN)."""
    value = params.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or abs(value) > MAX_WEIGHT:
        raise _invalid(key, f"{key} は -{MAX_WEIGHT:g} から {MAX_WEIGHT:g} の数値です。",
                       f"{key} must be a number from -{MAX_WEIGHT:g} to {MAX_WEIGHT:g}.")
    return float(value)


def _rank(params: dict[str, Any], required: bool) -> int | None:
    value = params.get("rank")
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _invalid("rank", "rank は 1 以上の整数です。", "rank must be an integer of at least 1.")
    return value


def _architecture(adapter: Path) -> str | None:
    from lora_factory.plugins.image.hashes import adapter_architecture

    return adapter_architecture(adapter)


def _kohya_file(adapter: Path) -> str:
    try:
        name = json.loads((adapter / "training_config.json").read_text(encoding="utf-8")).get("kohya_file")
    except (OSError, ValueError, AttributeError):
        name = None
    if isinstance(name, str) and (adapter / name).is_file():
        return name
    found = [p.name for p in sorted(adapter.glob("*.safetensors")) if p.name != "pytorch_lora_weights.safetensors"]
    if not found:
        raise _unsupported(f"アダプター「{adapter.name}」に kohya 形式の .safetensors がありません。",
                           f"The adapter '{adapter.name}' has no kohya-format .safetensors file.", adapter=adapter.name)
    return found[0]


def resolve(spec: dict[str, Any], workspace: Any) -> dict[str, Any]:
    """Server side (no torch): the parameters complete, the architectures checked."""
    from lora_factory.plugins.image.model_info import detect_folder_arch

    target, given = spec["target"], dict(spec.get("params") or {})
    unknown = sorted(set(given) - _ALLOWED[target])
    if unknown:
        raise _invalid(unknown[0], f"不明なパラメータ: {', '.join(unknown)}", f"Unknown parameter(s): {', '.join(unknown)}")
    precision = given.get("precision", "fp16")
    if precision not in PRECISIONS or (target == "a1111" and precision == "bf16"):
        allowed = ["fp16", "fp32"] if target == "a1111" else list(PRECISIONS)
        raise _invalid("precision", f"precision は {', '.join(allowed)} のどれかです。",
                       f"precision must be one of {', '.join(allowed)}.")
    adapter = Path(spec["adapter"])
    arch = _architecture(adapter)
    if target == "a1111":
        base_arch = detect_folder_arch(Path(spec["base_model"]))
        if base_arch not in ("sd15", "sdxl"):
            raise _unsupported(f"A1111 用チェックポイントに書き出せるのは SD1.5 と SDXL だけです(このベースは {base_arch})。",
                               f"Only SD1.5 and SDXL bases can be written as A1111 checkpoints (this base is {base_arch}).",
                               architecture=base_arch)
        if arch and arch != base_arch:
            raise _unsupported(f"この LoRA は {arch} 用で、ベース ({base_arch}) と合いません。",
                               f"The LoRA is for {arch}; the base is {base_arch}.", architecture=arch)
        params = {"weight": _number(given, "weight", 1.0), "precision": precision}
        return dict(spec, params=params, architecture=base_arch, warnings=[])
    if arch == "flux":
        raise _unsupported("Flux の LoRA はマージ・rank 変更できません(kohya 形式のファイルがありません)。",
                           "Flux LoRAs cannot be merged or resized (they have no kohya-format file).", architecture=arch)
    sources = [{"path": str(adapter), "ref": spec.get("adapter_ref"), "file": _kohya_file(adapter),
                "weight": _number(given, "weight", 1.0) if target == "lora_merge" else 1.0}]
    if target == "lora_merge":
        others = given.get("adapters")
        if not isinstance(others, list) or not others:
            raise _invalid("adapters", "マージする LoRA を adapters に 1 つ以上指定してください。",
                           "Name at least one LoRA to merge in 'adapters'.")
        if len(others) > MAX_MERGED:
            raise _invalid("adapters", f"一度にマージできる LoRA は {MAX_MERGED} 個までです。",
                           f"At most {MAX_MERGED} LoRAs can be merged at once.")
        for item in others:
            item = {"name": item} if isinstance(item, str) else item
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise _invalid("adapters", "adapters の各項目は {name, weight} です。", "Each of 'adapters' is {name, weight}.")
            path = workspace.resolve_ref(item["name"], "lora_adapters", "image")
            if not path.is_dir():
                raise LoRAFactoryError("ADAPTER_NOT_FOUND", f"アダプター「{item['name']}」が見つかりません。",
                                       f"Adapter '{item['name']}' was not found.", 404, detail={"name": item["name"]})
            other_arch = _architecture(path)
            if arch and other_arch and other_arch != arch:
                raise _unsupported(f"「{path.name}」は {other_arch} 用で、{arch} の LoRA とはマージできません。",
                                   f"'{path.name}' is for {other_arch}; it cannot be merged with a {arch} LoRA.",
                                   adapter=path.name, architecture=other_arch)
            sources.append({"path": str(path), "ref": workspace.relative(path), "file": _kohya_file(path),
                            "weight": _number(item, "weight", 1.0)})
        params = {"weight": sources[0]["weight"], "adapters": [{"name": Path(s["path"]).name, "weight": s["weight"]}
                                                               for s in sources[1:]],
                  "rank": _rank(given, required=False), "precision": precision}
    else:
        params = {"rank": _rank(given, required=True), "precision": precision}
    return dict(spec, params=params, architecture=arch, sources=sources, warnings=[])


def run(spec: dict[str, Any], ctx: Any) -> dict[str, Any]:
    if spec["target"] == "a1111":
        from lora_factory.plugins.image.export_a1111 import run_a1111

        return run_a1111(spec, ctx)
    from lora_factory.plugins.image.export_lora import run_lora_op

    return run_lora_op(spec, ctx)
