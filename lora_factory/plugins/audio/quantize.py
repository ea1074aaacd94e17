"""int8 dynamic quantisation of the TTS LM for CPU synthesis.

Dynamic quantisation stores each ``nn.Linear`` weight in int8 and quantises the activations on the
fly: about 4x less weight memory to stream through the cache per generated token, which is what a
CPU's autoregressive loop waits on. torch 2.13 still ships ``torch.ao.quantization.quantize_dynamic``
(deprecated in favour of torchao's ``quantize_``, which needs a separate package); it is used when
present, torchao's ``Int8DynamicActivationInt8WeightConfig`` otherwise.

peft cannot add a LoRA to a quantised layer, so the adapter (or the weighted mix) that is active is
merged into a copy of the model first; the float model stays as it was for the other requests.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any


def _merged_copy(model: Any) -> Any:
    """A plain transformers model: the active adapter merged in, or the base when adapters are off."""
    clone = copy.deepcopy(model)
    if not hasattr(clone, "merge_and_unload"):
        return clone
    if _adapters_disabled(model):
        return clone.unload()
    return clone.merge_and_unload()


def _adapters_disabled(model: Any) -> bool:
    """True inside peft's ``disable_adapter()``: every LoRA layer is switched off."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    return bool(layers) and all(getattr(m, "disable_adapters", False) for m in layers)


def int8_copy(model: Any) -> Any:
    """An int8 dynamic-quantised copy of ``model`` (CPU inference only)."""
    import torch

    plain = _merged_copy(model).to("cpu").float().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        try:
            from torch.ao.quantization import quantize_dynamic
        except ImportError:  # torch removed its eager quantisation: torchao's API
            from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

            quantize_(plain, Int8DynamicActivationInt8WeightConfig())
            return plain
        return quantize_dynamic(plain, {torch.nn.Linear}, dtype=torch.qint8)
