"""DoRA as LyCORIS trains it and A1111 / ComfyUI / Forge apply it (``dora_wd``, the magnitude per INPUT column).

The effective weight of an adapted layer is ``W' = (W + s dW) * dora_scale / ||W + s dW||_col`` where the norm runs
over every axis but the input one (ComfyUI ``comfy/weight_adapter/base.py`` ``weight_decompose``, A1111
``network.py`` ``apply_weight_decompose``, LyCORIS ``apply_weight_decompose`` with ``wd_on_out=False``, its
default); ``dora_scale`` has shape ``(1, in)`` (linear) or ``(1, in, 1, 1)`` (conv) and starts at ``||W||_col``, so
a fresh network changes nothing. peft's own DoRA puts the magnitude on the OUTPUT rows: a file converted from it
would load and draw something else, hence this module.

Why an input scaling: multiplying column ``i`` of the weight by ``c_i`` is the same as multiplying input channel
``i`` by ``c_i`` (linear and convolution alike, the bias untouched), so a forward pre-hook on peft's layer (LoRA,
LoCon, LoHa or LoKr: ``base(x) + delta(x)``) that scales its input by ``dora_scale / ||W + s dW||_col`` computes
exactly ``W' x + b``, with gradients to both the factors and ``dora_scale``. The parameter is named
``lora_dora_scale`` so that peft's state dict, checkpoints and resume carry it like the factors.
"""

from __future__ import annotations

from typing import Any

PARAM = "lora_dora_scale"  # on the peft layer, a ParameterDict keyed by adapter name (peft's own layout)
ADAPTER = "default"


def column_norm(weight: Any) -> Any:
    """``||W||`` per input column, shaped to broadcast like ``dora_scale``: (1, in) or (1, in, 1, ...)."""
    return (weight.transpose(0, 1).reshape(weight.shape[1], -1).norm(dim=1, keepdim=True)
            .reshape(weight.shape[1], *[1] * (weight.dim() - 1)).transpose(0, 1))


def effective_weight(layer: Any) -> Any:
    """The weight the layer computes with: ``(W + s dW) * dora_scale / ||W + s dW||_col``."""
    merged = layer.get_base_layer().weight.float() + layer.get_delta_weight(ADAPTER).float()
    return merged * (getattr(layer, PARAM)[ADAPTER] / column_norm(merged))


def _input_scale(layer: Any) -> Any:
    merged = layer.get_base_layer().weight.float() + layer.get_delta_weight(ADAPTER).float()
    return getattr(layer, PARAM)[ADAPTER] / column_norm(merged)  # (1, in) or (1, in, 1, 1)


def _pre_hook(layer: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if layer.disable_adapters or layer.merged or ADAPTER not in layer.active_adapters:
        return None
    x = args[0]
    scale = _input_scale(layer).to(x.dtype)
    scale = scale.reshape(-1) if scale.dim() == 2 else scale  # linear: the last axis; conv: the channel axis
    return (x * scale, *args[1:]), kwargs


def add_weight_decompose(module: Any) -> int:
    """Give every peft adapter layer of ``module`` a trainable ``dora_scale`` and the DoRA forward; return how many."""
    import torch
    from peft.tuners.tuners_utils import BaseTunerLayer

    count = 0
    for layer in module.modules():
        if not isinstance(layer, BaseTunerLayer) or hasattr(layer, PARAM):
            continue
        weight = layer.get_base_layer().weight
        if weight.dim() not in (2, 4):
            continue
        with torch.no_grad():
            start = column_norm(weight.detach().float())
        setattr(layer, PARAM, torch.nn.ParameterDict({ADAPTER: torch.nn.Parameter(start.to(weight.device))}))
        layer.register_forward_pre_hook(_pre_hook, with_kwargs=True)
        count += 1
    return count


def merge_weight(weight: Any, lora_diff: Any, dora_scale: Any, strength: float) -> Any:
    """ComfyUI's ``weight_decompose`` (``lora_diff`` already times ``alpha / dim``): the new weight, float32."""
    weight = weight.float()
    calc = weight + lora_diff.float()
    calc = calc * (dora_scale.float() / column_norm(calc))
    return calc if strength == 1.0 else weight + strength * (calc - weight)


def scale_state(module: Any) -> dict[str, Any]:
    """``<layer path>.lora_dora_scale`` -> tensor for every DoRA layer (peft's state dict keeps it for LoRA, not
    for LoHa / LoKr, whose prefix filter drops it: checkpoints and the kohya file take it from here)."""
    return {f"{path}.{PARAM}": getattr(layer, PARAM)[ADAPTER] for path, layer in module.named_modules()
            if hasattr(layer, PARAM)}


def load_scale_state(module: Any, state: dict[str, Any]) -> None:
    """Put back what :func:`scale_state` saved (a checkpoint being resumed)."""
    import torch

    with torch.no_grad():
        for path, layer in module.named_modules():
            key = f"{path}.{PARAM}"
            if hasattr(layer, PARAM) and key in state:
                getattr(layer, PARAM)[ADAPTER].copy_(state[key])


def match_plain(layer: Any) -> None:
    """``dora_scale`` = ``||W + s dW||``: the layer computes exactly ``W + s dW`` (a DoRA run continued from a
    plain LoRA file starts where that file is)."""
    import torch

    with torch.no_grad():
        merged = layer.get_base_layer().weight.float() + layer.get_delta_weight(ADAPTER).float()
        getattr(layer, PARAM)[ADAPTER].copy_(column_norm(merged))
