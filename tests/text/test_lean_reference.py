"""The fast "adapter disabled" reference switch gives exactly what peft's own context gives."""

from __future__ import annotations

import pytest


def _peft_model(tiny_model, **lora):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    # init_lora_weights=False: the adapter changes the output from the first step on
    return get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM",
                                            init_lora_weights=False, **lora))


def test_switch_matches_peft_and_restores(tiny_model):
    import torch

    from lora_factory.plugins.text import lean_reference

    model = _peft_model(tiny_model)
    ids = torch.tensor([[3, 5, 7, 9, 11]])
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    with torch.no_grad():
        adapted = model(input_ids=ids).logits
        with model.disable_adapter():  # peft's own
            base = model(input_ids=ids).logits
    assert not torch.allclose(adapted, base)

    assert lean_reference.install(model) is True
    with torch.no_grad():
        with model.disable_adapter():
            assert model._adapters_disabled
            switched = model(input_ids=ids).logits
            with model.disable_adapter():  # nested: still the base
                nested = model(input_ids=ids).logits
        after = model(input_ids=ids).logits
    torch.testing.assert_close(switched, base, rtol=0, atol=0)
    torch.testing.assert_close(nested, base, rtol=0, atol=0)
    torch.testing.assert_close(after, adapted, rtol=0, atol=0)
    assert not model._adapters_disabled
    assert [n for n, p in model.named_parameters() if p.requires_grad] == trainable
    # an exception inside the context leaves the adapter enabled
    with pytest.raises(RuntimeError), model.disable_adapter():
        raise RuntimeError("inside")
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, adapted, rtol=0, atol=0)


def test_switch_stays_off_where_peft_does_more(tiny_model):
    from lora_factory.plugins.text import lean_reference

    with_saved = _peft_model(tiny_model, modules_to_save=["lm_head"])
    assert lean_reference.install(with_saved) is False
    with_bias = _peft_model(tiny_model, bias="lora_only")
    assert lean_reference.install(with_bias) is False
