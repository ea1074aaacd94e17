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


def _need(field: str, ja: str, en: str) -> LoRAFactoryError:
    return LoRAFactoryError("INVALID_REQUEST", ja, en, 422, detail={"field": field})


def resolve_generate_request(request: dict[str, Any], workspace: Any) -> dict[str, Any]:
    """The request validated once: inputs checked, parameters complete (``mode`` decided from the given
    images), auxiliary models as paths. ``generate_images`` trusts what this returns."""
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
    if not inputs.get("prompt") and isinstance(raw.get("prompt") or request.get("prompt"), str):
        inputs["prompt"] = raw.get("prompt") or request.get("prompt")
    params = validate_generate_params(raw)
    image, mask = bool(inputs.get("image")), bool(inputs.get("mask"))
    if params.mode == "auto":
        params.mode = "inpaint" if (image and mask) else "img2img" if image else "txt2img"
    if params.mode in ("img2img", "inpaint") and not image:
        raise _need("input.image", f"{params.mode} には元画像 (input.image) が必要です。",
                    f"{params.mode} needs an init image (input.image).")
    if params.mode == "inpaint" and not mask:
        raise _need("input.mask", "inpaint にはマスク (input.mask) が必要です。", "inpaint needs a mask (input.mask).")
    if params.controlnet and not (inputs.get("control_image") or image):
        raise _need("input.control_image", "ControlNet には画像 (input.control_image) が必要です。",
                    "ControlNet needs an image (input.control_image).")
    if params.ip_adapter and not inputs.get("reference_image"):
        raise _need("input.reference_image", "IP-Adapter には参照画像 (input.reference_image) が必要です。",
                    "IP-Adapter needs a reference image (input.reference_image).")
    if params.vae:
        params.vae = _aux(workspace, params.vae, "vae", "vae")
    if params.refiner:
        params.refiner.model = _aux(workspace, params.refiner.model, "refiner", "refiner")
    if params.controlnet:
        params.controlnet.model = _aux(workspace, params.controlnet.model, "controlnet", "controlnet")
        if params.controlnet.depth_model:
            params.controlnet.depth_model = _aux(workspace, params.controlnet.depth_model, "depth",
                                                 "controlnet.depth_model")
    if params.ip_adapter:
        params.ip_adapter.model = _aux(workspace, params.ip_adapter.model, "ip_adapter", "ip_adapter")
    return dict(request, input=inputs, params=params.model_dump(), adapters=list(request.get("adapters") or []))
