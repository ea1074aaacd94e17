"""The reference model of DPO / KTO / GRPO as "the base with the adapter disabled", switched in microseconds.

Why: with one model copy, TRL computes the reference log-probabilities inside
``peft_model.disable_adapter()`` at every step. peft's context walks the whole module tree three
times (``get_model_status``, then disable, then enable) and on each LoRA layer flips
``requires_grad`` on every adapter weight both ways. On the tiny DPO benchmark that is several
milliseconds of a ~45 ms step, more than the reference forward of a second model copy costs
(``benchmarks/train_pref.py``: one copy was slower than two before this).

The reference forward runs under ``torch.no_grad()`` in TRL, so the ``requires_grad`` flips buy
nothing there; what makes a LoRA layer return the base output is its ``_disable_adapters`` flag,
read by its ``forward``. :func:`install` finds the adapter layers once and replaces the model's
``disable_adapter`` with a context that sets and restores that flag on them (the same flag, the
same output, checked in the tests against peft's own context). Where a model is not plain LoRA
layers (``modules_to_save`` wrappers, prompt learning, adapters already disabled), peft's own
context stays.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


def install(peft_model: Any) -> bool:
    """Give ``peft_model`` a fast ``disable_adapter``; False (nothing changed) where it does not apply."""
    from peft.tuners.tuners_utils import BaseTunerLayer
    from peft.utils.other import AuxiliaryTrainingWrapper

    config = peft_model.peft_config.get(peft_model.active_adapter)
    if config is None or config.is_prompt_learning or getattr(config, "is_adaption_prompt", False):
        return False
    if getattr(config, "bias", "none") != "none":  # peft warns there: disabling is not the base model
        return False
    layers = []
    for module in peft_model.base_model.model.modules():
        if isinstance(module, AuxiliaryTrainingWrapper):
            return False
        if isinstance(module, BaseTunerLayer):
            layers.append(module)
    if not layers or any(layer._disable_adapters for layer in layers):
        return False

    @contextlib.contextmanager
    def disable_adapter() -> Iterator[None]:
        if peft_model._adapters_disabled or layers[0]._disable_adapters:
            yield  # nested, or inside peft's own context: already the base, and the outer context restores
            return
        for layer in layers:
            layer._disable_adapters = True
        peft_model._adapters_disabled = True
        try:
            yield
        finally:
            for layer in layers:
                layer._disable_adapters = False
            peft_model._adapters_disabled = False

    peft_model.disable_adapter = disable_adapter
    return True
