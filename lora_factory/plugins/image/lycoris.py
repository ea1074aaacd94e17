"""LyCORIS networks (LoCon, LoHa, LoKr) in the kohya file layout A1111 / Forge / ComfyUI load, both ways.

Training uses peft's LoRA (on conv layers too, for LoCon), LoHa and LoKr layers: their parameters are LyCORIS'
own (``hada_w1_a`` ... ``lokr_w1`` ...) with the same shapes and the same product, so writing the file is a
renaming to ``lora_unet_<module path>`` / ``lora_te*_<module path>`` plus an ``.alpha`` per module.

The scale: ComfyUI (``comfy/weight_adapter``) and A1111 (``extensions-builtin/Lora``) apply ``alpha / dim`` with
``dim`` = the rank they read from the shapes (``lora_down``'s rows, ``hada_w1_b``'s rows, ``lokr_w*_b``'s rows),
and 1.0 for a LoKr module whose factors are both full matrices. peft's scale is ``lora_alpha / r``; the file's
alpha is therefore ``scale * dim``, and a full-matrix LoKr module has peft's scale folded into ``lokr_w2`` (and
no alpha), so every loader computes what training used.

Generation (:func:`merge_kohya_file`) applies such a file as those loaders do: each module's ``delta W``
(LoRA ``up @ down``, LoHa ``(w1a @ w1b) * (w2a @ w2b)``, LoKr ``kron(w1, w2)``) times ``alpha / dim`` times
the user's weight, added to the base weight (a module with ``dora_scale``: ComfyUI's ``weight_decompose``, see
:mod:`dora`); :func:`restore` puts the base weights back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

NETWORK_MODULE = "lycoris.kohya"  # what sd-scripts records for LyCORIS networks (ss_network_module)
SUFFIXES = {  # the tensor names each loader type reads (ComfyUI weight_adapter/*.py)
    "lora": ("lora_up.weight", "lora_down.weight", "lora_mid.weight"),
    "loha": ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "hada_t1", "hada_t2"),
    "lokr": ("lokr_w1", "lokr_w2", "lokr_w1_a", "lokr_w1_b", "lokr_w2_a", "lokr_w2_b", "lokr_t2"),
}
ALL_SUFFIXES = tuple(s for names in SUFFIXES.values() for s in names) + ("alpha", "dora_scale")
_PEFT_NAMES = {"lora_A.weight": "lora_down.weight", "lora_B.weight": "lora_up.weight", "lora_dora_scale": "dora_scale"}


def component_prefix(component: str, single_text_encoder: bool) -> str:
    if component.startswith("text_encoder"):
        if single_text_encoder:
            return "lora_te"
        return "lora_te2" if component == "text_encoder_2" else "lora_te1"
    return "lora_unet"


def kohya_module_name(component: str, module_path: str, single_text_encoder: bool) -> str:
    """``lora_unet_down_blocks_0_..._to_q`` from a diffusers / transformers module path."""
    from lora_factory.plugins.image.export import _CLIP_INNER

    if component.startswith("text_encoder") and module_path.startswith(_CLIP_INNER):
        module_path = "text_model." + module_path  # transformers 5's flattened CLIP, named canonically
    return f"{component_prefix(component, single_text_encoder)}_{module_path.replace('.', '_')}"


def module_scales(module: Any) -> dict[str, float]:
    """peft's applied scale of every adapted layer of ``module``: module path -> ``lora_alpha / r``."""
    out = {}
    for name, layer in module.named_modules():
        scaling = getattr(layer, "scaling", None)
        if isinstance(scaling, dict) and "default" in scaling:
            out[name] = float(scaling["default"])
    return out


def state_dict_to_kohya(states: dict[str, dict[str, Any]], scales: dict[str, dict[str, float]]) -> dict[str, Any]:
    """peft state dicts per component (LoRA / LoHa / LoKr parameters) -> kohya / LyCORIS keys with alphas.

    :param states: component -> ``get_peft_model_state_dict(module)``.
    :param scales: component -> :func:`module_scales` of that module.
    """
    import torch

    single = "text_encoder_2" not in states
    grouped: dict[tuple[str, str], dict[str, Any]] = {}
    for component, state in states.items():
        for key, value in state.items():
            for suffix in ("lora_A.weight", "lora_B.weight", *SUFFIXES["loha"], *SUFFIXES["lokr"], "lora_dora_scale"):
                if key.endswith("." + suffix):
                    grouped.setdefault((component, key[: -len(suffix) - 1]), {})[_PEFT_NAMES.get(suffix, suffix)] = value
                    break
    out: dict[str, Any] = {}
    for (component, path), tensors in grouped.items():
        name = kohya_module_name(component, path, single)
        scale = scales.get(component, {}).get(path, 1.0)
        dim = _dim(tensors)
        if dim is None:  # a LoKr module of two full matrices: no alpha is read, the scale goes into w2
            tensors = dict(tensors, lokr_w2=tensors["lokr_w2"] * scale)
        else:
            out[f"{name}.alpha"] = torch.tensor(float(scale * dim))
        for suffix, value in tensors.items():
            out[f"{name}.{suffix}"] = value.detach().contiguous()
    return out


def _dim(tensors: dict[str, Any]) -> int | None:
    """The rank a loader divides alpha by (None: LoKr with full factors, where loaders use scale 1)."""
    if "lora_down.weight" in tensors:
        return int(tensors["lora_down.weight"].shape[0])
    if "hada_w1_b" in tensors:
        return int(tensors["hada_w1_b"].shape[0])
    for key in ("lokr_w2_b", "lokr_w1_b"):
        if key in tensors:
            return int(tensors[key].shape[0])
    return None


def network_kind(keys: Any) -> str:
    """``lora``, ``loha``, ``lokr`` or ``dora`` (LoRA / LoCon with ``dora_scale``) from a kohya file's tensor names."""
    keys = list(keys)
    if any(".hada_" in k for k in keys):
        return "loha"
    if any(".lokr_" in k for k in keys):
        return "lokr"
    if any(k.endswith(".dora_scale") for k in keys):
        return "dora"
    return "lora"


def delta_weight(tensors: dict[str, Any], shape: Any) -> Any:
    """One module's ``delta W`` (float32, in ``shape``) with its ``alpha / dim`` applied, as ComfyUI computes it."""
    import torch

    t = {k: v.float() for k, v in tensors.items()}
    dim = _dim(tensors)
    alpha = float(t["alpha"]) if "alpha" in t else None
    scale = alpha / dim if (alpha is not None and dim) else 1.0
    if "lora_down.weight" in t:
        up, down = t["lora_up.weight"], t["lora_down.weight"]
        diff = up.flatten(1) @ down.flatten(1)
    elif "hada_w1_a" in t:
        diff = (t["hada_w1_a"] @ t["hada_w1_b"]) * (t["hada_w2_a"] @ t["hada_w2_b"])
    else:
        w1 = t["lokr_w1"] if "lokr_w1" in t else t["lokr_w1_a"] @ t["lokr_w1_b"]
        w2 = t["lokr_w2"] if "lokr_w2" in t else t["lokr_w2_a"] @ t["lokr_w2_b"]
        if w2.dim() == 4:
            w1 = w1[:, :, None, None]
        diff = torch.kron(w1, w2)
    return (diff * scale).reshape(shape)


def module_map(pipe: Any) -> dict[str, Any]:
    """kohya module name -> the pipeline's layer, for the UNet and the text encoder(s) (ComfyUI's naming)."""
    import torch

    single = getattr(pipe, "text_encoder_2", None) is None
    out = {}
    for component in ("unet", "text_encoder", "text_encoder_2"):
        module = getattr(pipe, component, None)
        if module is None:
            continue
        for path, layer in module.named_modules():
            if path and isinstance(getattr(layer, "weight", None), torch.Tensor):
                out[kohya_module_name(component, path, single)] = layer
    return out


def read_modules(path: Path) -> dict[str, dict[str, Any]]:
    """A kohya file's tensors grouped by module name."""
    from safetensors.torch import load_file

    grouped: dict[str, dict[str, Any]] = {}
    for key, value in load_file(str(path)).items():
        name, _, suffix = key.partition(".")
        grouped.setdefault(name, {})[suffix] = value
    return grouped


def merge_kohya_file(pipe: Any, path: Path, weight: float, backup: dict[Any, Any]) -> int:
    """Add ``weight`` x the file's deltas to the pipeline's weights (originals saved in ``backup`` once);
    return how many modules were applied. A module the pipeline does not have is an error, as a mismatch."""
    import torch

    layers = module_map(pipe)
    missing = [name for name in read_modules(path) if name not in layers]
    if missing:
        raise KeyError(f"{len(missing)} modules of {Path(path).name} are not in this model, e.g. {missing[0]}")
    count = 0
    with torch.no_grad():
        for name, tensors in read_modules(path).items():
            layer = layers[name]
            base = layer.weight
            if layer not in backup:
                backup[layer] = base.detach().clone()
            delta = delta_weight(tensors, base.shape).to(base.device)
            if "dora_scale" in tensors:  # DoRA: ComfyUI's / A1111's weight_decompose
                from lora_factory.plugins.image.dora import merge_weight

                base.copy_(merge_weight(base, delta, tensors["dora_scale"].to(base.device), weight).to(base.dtype))
            else:
                base.copy_((base.float() + weight * delta).to(base.dtype))
            count += 1
    return count


def restore(backup: dict[Any, Any]) -> None:
    """Put back the weights :func:`merge_kohya_file` changed."""
    import torch

    with torch.no_grad():
        for layer, original in backup.items():
            layer.weight.copy_(original)
    backup.clear()
