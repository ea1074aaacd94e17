"""Continue training from a LoRA file (kohya's ``--network_weights``), ours or one trained elsewhere.

The file is a kohya / LyCORIS file (``lora_unet_*`` ... with ``lora_down`` / ``lora_up``, ``hada_*`` or
``lokr_*`` and ``.alpha``). Each module's tensors are copied into the run's peft layer of the same kohya name,
and one factor is rescaled so that the run's scale (``alpha / rank`` of these parameters) times the product
gives exactly the file's ``delta W`` (whose scale is the file's ``alpha / dim``): the run starts where the
file left off, whatever alpha it was trained with. The rank must match (sd-scripts needs that too).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lora_factory.kit import LoRAFactoryError

# the factor that carries the scale correction, per kind
_SCALED = {"lora_up.weight": "lora_B.weight", "hada_w1_a": "hada_w1_a", "lokr_w2": "lokr_w2", "lokr_w2_a": "lokr_w2_a"}
_PEFT = {"lora_down.weight": "lora_A.weight", "lora_up.weight": "lora_B.weight", "dora_scale": "lora_dora_scale"}


def resolve_weights_file(workspace: Any, ref: str) -> Path:
    """``lora_adapters/image/<name>`` (its kohya file), a ``.safetensors`` inside it or under ``models/image/``."""
    folder = "models" if str(ref).replace("\\", "/").startswith("models/") else "lora_adapters"
    path = Path(workspace.resolve_ref(str(ref), folder, "image"))
    if path.is_dir():
        try:
            kohya = json.loads((path / "training_config.json").read_text(encoding="utf-8")).get("kohya_file")
        except (OSError, ValueError, AttributeError):
            kohya = None
        candidates = [path / kohya] if kohya else sorted(p for p in path.glob("*.safetensors")
                                                         if p.name != "pytorch_lora_weights.safetensors")
        path = candidates[0] if candidates else path / "missing.safetensors"
    if not path.is_file() or path.suffix != ".safetensors":
        raise LoRAFactoryError("ADAPTER_INVALID", f"network_weights「{ref}」に kohya 形式の .safetensors がありません。",
                               f"network_weights '{ref}' is not a kohya .safetensors file (or a folder with one).",
                               422, detail={"field": "network_weights", "value": str(ref)})
    return path


def load_network_weights(trainable: dict[str, Any], path: Path, log: Any) -> int:
    """Copy the file's modules into the peft layers of ``trainable`` (component -> module); return how many."""
    import torch

    from lora_factory.plugins.image.dora import PARAM, match_plain
    from lora_factory.plugins.image.lycoris import _dim, kohya_module_name, module_scales, read_modules

    single = "text_encoder_2" not in trainable
    layers: dict[str, tuple[Any, float]] = {}
    for component, module in trainable.items():
        scales = module_scales(module)
        for name, layer in module.named_modules():
            if name in scales:
                layers[kohya_module_name(component, name, single)] = (layer, scales[name])
    modules = read_modules(path)
    loaded = 0
    with torch.no_grad():
        for name, tensors in modules.items():
            if name not in layers:
                continue
            layer, scale = layers[name]
            dim = _dim(tensors)
            file_scale = float(tensors["alpha"]) / dim if ("alpha" in tensors and dim) else 1.0
            params = {n: p for n, p in layer.named_parameters() if ".default" in n or n.endswith("default")}
            for suffix, value in tensors.items():
                if suffix == "alpha":
                    continue
                target = _find(params, _PEFT.get(suffix, suffix))
                if target is None:
                    raise _mismatch(path, name, f"the run's network has no {suffix}: another network_type")
                if tuple(target.shape) != tuple(value.shape):
                    raise _mismatch(path, name, f"{suffix} {tuple(value.shape)} vs the run's {tuple(target.shape)}: "
                                                f"set rank (and conv_dim) to the file's")
                value = value.to(target.dtype)
                if suffix in _SCALED and (suffix != "lokr_w2_a" or "lokr_w2" not in tensors):
                    value = value * (file_scale / scale)
                target.copy_(value)
            if hasattr(layer, PARAM) and "dora_scale" not in tensors:
                match_plain(layer)
            loaded += 1
    log(f"network_weights: {path.name} — {loaded} / {len(layers)} modules continued ({len(modules) - loaded} "
        f"modules of the file not in this network)")
    if not loaded:
        raise _mismatch(path, "-", "no module of the file is in this network (another base model or network_type?)")
    return loaded


def _find(params: dict[str, Any], suffix: str) -> Any:
    """peft names a parameter ``lora_A.default.weight`` or ``hada_w1_a.default``: match either way."""
    base = suffix.replace(".weight", "")
    for name, param in params.items():
        if name in (f"{base}.default.weight", f"{base}.default"):
            return param
    return None


def _mismatch(path: Path, module: str, why: str) -> LoRAFactoryError:
    return LoRAFactoryError(
        "ADAPTER_INCOMPATIBLE", f"network_weights「{path.name}」はこの学習に合いません ({module}): {why}",
        f"network_weights '{path.name}' does not fit this run ({module}): {why}", 422,
        detail={"field": "network_weights", "module": module})
