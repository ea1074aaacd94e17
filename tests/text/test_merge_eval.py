"""Merge an adapter into its base; evaluate loss / perplexity the way training computes it."""

from __future__ import annotations

import json
import math
from pathlib import Path

from lora_factory.plugins.text.evaluate import evaluate_text
from lora_factory.plugins.text.merge import merge_text_adapter
from lora_factory.plugins.text.model_info import inspect_text_model


def test_merge_matches_adapter(tmp_path, tiny_model, trained_adapter, ctx_factory):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    ctx = ctx_factory(tmp_path / "ws", "merge", kind="merge")
    result = merge_text_adapter({"base_model": str(tiny_model), "adapter": str(trained_adapter["path"]),
                                 "output_name": "merged"}, ctx)
    out = Path(result["path"])
    assert (out / "model.safetensors").is_file() and (out / "tokenizer_config.json").is_file()
    info = inspect_text_model(out)
    assert info["merged"] is True and info["parameters"] == result["parameters"] == inspect_text_model(tiny_model)["parameters"]
    assert json.loads((out / "merge_info.json").read_text(encoding="utf-8"))["parameters"] == result["parameters"]

    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), trained_adapter["path"]).eval()
    base = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    ids = torch.tensor([[1, 50, 60, 70, 80, 90, 2]])
    with torch.no_grad():
        a, b, c = merged(ids).logits, peft_model(ids).logits, base(ids).logits
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    assert (a - c).abs().max() > 1e-2  # the merge really changed the weights


def test_eval_adapter_beats_base(tmp_path, tiny_model, memo_dataset, trained_adapter, ctx_factory):
    spec = {"base_model": str(tiny_model), "adapter": None, "dataset": str(memo_dataset), "dataset_options": {},
            "params": {"max_length": 256, "batch_size": 3}}
    base = evaluate_text(spec, ctx_factory(tmp_path / "ws", "e1", kind="eval"))
    tuned = evaluate_text({**spec, "adapter": str(trained_adapter["path"])}, ctx_factory(tmp_path / "ws", "e2", kind="eval"))
    for r in (base, tuned):
        assert math.isfinite(r["eval_loss"]) and math.isfinite(r["perplexity"])
        assert r["rows"] == 8 and r["tokens"] > 0
        assert math.isclose(r["perplexity"], math.exp(r["eval_loss"]), rel_tol=1e-6)
    assert tuned["eval_loss"] < base["eval_loss"] * 0.5
    # close to the loss training reported at its end (same masks and templating)
    assert abs(tuned["eval_loss"] - trained_adapter["result"]["final_loss"]) < 0.5
    limited = evaluate_text({**spec, "params": {"max_rows": 2}}, None)
    assert limited["rows"] == 2
