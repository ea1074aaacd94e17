"""Server-side checks of a generation request (no torch): parameters validated, auxiliary models
resolved inside ``models/image/<kind>/``, so a typo or a missing VAE is a 4xx before any model loads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lora_factory.kit import LoRAFactoryError
from lora_factory.plugins.image.generate_params import validate_generate_params

INPUT_FIELDS = ("prompt", "image", "mask", "control_image", "reference_image")


def _aux(workspace: Any, value: Any, kind: str, field: str) -> str:
    """``name``, ``models/image/<kind>/<name>`` or ``{"kind", "name"}`` -> an existing folder's path."""
    if isinstance(value, dict):
        value = f"models/image/{value.get('kind') or kind}/{value.get('name')}"
    ref = str(value or "")
    if "/" not in ref and "\\" not in ref:
        ref = f"models/image/{kind}/{ref}"
    path = Path(workspace.resolve_ref(ref, "models", "image"))
    if not path.exists():
        raise LoRAFactoryError("MODEL_NOT_FOUND", f"{field} のモデル「{value}」が見つかりません(models/image/{kind}/)。",
                               f"The {field} model '{value}' was not found (models/image/{kind}/).", 404,
                               detail={"field": field, "value": str(value), "kind": kind})
    return str(path)


def resolve_generate_request(request: dict[str, Any], workspace: Any) -> dict[str, Any]:
    inputs = dict(request.get("input") or {})
    text = inputs.pop("text", None)  # the generic name (the CLI sends its prompt as both)
    if text is not None and not inputs.get("prompt"):
        inputs["prompt"] = text
    unknown = [k for k in inputs if k not in INPUT_FIELDS]
    if unknown:
        raise LoRAFactoryError("INVALID_INFER_PARAMS", f"入力「{unknown[0]}」は使えません({', '.join(INPUT_FIELDS)})。",
                               f"Input '{unknown[0]}' is not known ({', '.join(INPUT_FIELDS)}).", 422,
                               detail={"field": f"input.{unknown[0]}", "choices": list(INPUT_FIELDS)})
    if not isinstance(inputs.get("prompt", ""), str):
        raise LoRAFactoryError("INVALID_INFER_PARAMS", "プロンプトは文字列で指定してください。", "The prompt must be a string.", 422,
                               detail={"field": "input.prompt"})
    for name in INPUT_FIELDS[1:]:
        if inputs.get(name) and not Path(str(inputs[name])).is_file():
            raise LoRAFactoryError("INVALID_INFER_PARAMS", f"入力画像「{name}」は /api/infer/uploads でアップロードしてください。",
                                   f"Upload the input image '{name}' with /api/infer/uploads first.", 422,
                                   detail={"field": f"input.{name}"})
    raw = dict(request.get("params") or {})
    params = validate_generate_params(raw)
    if params.vae:
        raw["vae"] = _aux(workspace, params.vae, "vae", "vae")
    if params.refiner:
        raw["refiner"] = dict(raw["refiner"], model=_aux(workspace, params.refiner.model, "refiner", "refiner"))
    if params.controlnet:
        cn = dict(raw["controlnet"], model=_aux(workspace, params.controlnet.model, "controlnet", "controlnet"))
        if params.controlnet.depth_model:
            cn["depth_model"] = _aux(workspace, params.controlnet.depth_model, "depth", "controlnet.depth_model")
        raw["controlnet"] = cn
    if params.ip_adapter:
        raw["ip_adapter"] = dict(raw["ip_adapter"], model=_aux(workspace, params.ip_adapter.model, "ip_adapter", "ip_adapter"))
    validate_generate_params(raw)
    return dict(request, input=inputs, params=raw)
