"""Text LoRA training on the tiny model: learning, masks, packing, cancel, resume, QLoRA, presets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lora_factory.core.errors import LoRAFactoryError
from lora_factory.plugins.text.batching import CausalCollator, pack
from lora_factory.plugins.text.presets import PRESETS, TRAIN_PARAMS_SCHEMA, resolve_train_params, resolve_train_spec
from lora_factory.plugins.text.train import train_text_adapter
from lora_factory.plugins.text.train_data import IGNORE_INDEX, encode_row


def _tok(tiny_model: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def _spec(tiny_model: Path, dataset: Path, **params) -> dict:
    return resolve_train_spec({"base_model": str(tiny_model), "dataset": str(dataset), "dataset_options": {},
                               "preset": "quick", "params": params, "output_name": "t"})


def test_quick_preset_learns(trained_adapter):
    result, out, ctx = trained_adapter["result"], trained_adapter["path"], trained_adapter["ctx"]
    losses = [r["loss"] for r in ctx.records]
    assert len(losses) == result["steps"] >= 30
    assert losses[-1] < losses[0] * 0.3, f"loss did not fall enough: {losses[0]} -> {losses[-1]}"
    assert result["final_loss"] == pytest.approx(losses[-1]) and result["stopped"] is False
    rec = ctx.records[-1]
    assert rec["max_steps"] == result["steps"] and rec["lr"] > 0 and rec["epoch"] > 0 and rec["tokens_per_s"] > 0
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer_config.json", "training_config.json",
                 "README.md"):
        assert (out / name).is_file(), name
    config = json.loads((out / "training_config.json").read_text(encoding="utf-8"))
    assert config["params"]["rank"] == PRESETS["quick"]["rank"] and config["dataset"] == "datasets/text/memo.jsonl"
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "models/text/tiny-chat" in card and "final_loss" in card


def test_adapter_loads_with_plain_peft(trained_adapter, tiny_model):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), trained_adapter["path"])
    assert model.peft_config["default"].r == PRESETS["quick"]["rank"]
    assert any("lora_A" in n for n, _ in model.named_parameters())


def test_assistant_only_labels(tiny_model):
    tok = _tok(tiny_model)
    row = {"messages": [{"role": "system", "content": "丁寧に"}, {"role": "user", "content": "質問1"},
                        {"role": "assistant", "content": "答え1"}, {"role": "user", "content": "質問2"},
                        {"role": "assistant", "content": "答え2"}]}
    item = encode_row(row, tok, 512, assistant_only=True)
    trained = [i for i, label in zip(item["input_ids"], item["labels"], strict=True) if label != IGNORE_INDEX]
    assert tok.decode(trained) == "答え1<|im_end|>答え2<|im_end|>"
    # every user / system token is masked
    masked_text = tok.decode([i for i, label in zip(item["input_ids"], item["labels"], strict=True)
                              if label == IGNORE_INDEX])
    assert "質問1" in masked_text and "質問2" in masked_text and "丁寧に" in masked_text
    assert "答え" not in masked_text
    full = encode_row(row, tok, 512, assistant_only=False)
    assert full["labels"] == full["input_ids"]
    text = encode_row({"text": "自由文"}, tok, 512, assistant_only=True)
    assert text["labels"] == text["input_ids"] and text["input_ids"][-1] == tok.eos_token_id
    assert encode_row(row, tok, 5, assistant_only=True) is None  # truncated before any answer


def test_packing_keeps_samples_apart(tiny_model):
    """A packed block gives each sample exactly the logits it has alone: no attention across samples."""
    import torch
    from transformers import AutoModelForCausalLM

    tok = _tok(tiny_model)
    rows = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
            for q, a in [("日本の首都は?", "東京です。"), ("好きな動物は?", "猫が好きです。"), ("1たす1は?", "2です。")]]
    items = [encode_row(r, tok, 512, True) for r in rows]
    blocks = pack(items, max_length=64)
    assert sum(len(b["input_ids"]) for b in blocks) == sum(len(i["input_ids"]) for i in items)
    assert all(len(b["input_ids"]) <= 64 for b in blocks) and len(blocks) < len(items)
    block = max(blocks, key=lambda b: b["position_ids"].count(0))
    starts = [i for i, p in enumerate(block["position_ids"]) if p == 0]
    assert len(starts) >= 2
    batch = CausalCollator(tok.pad_token_id)([block, items[0]])  # padding rows become their own segment
    assert "attention_mask" not in batch and batch["position_ids"].shape == batch["input_ids"].shape
    model = AutoModelForCausalLM.from_pretrained(tiny_model, attn_implementation="sdpa").eval()
    with torch.no_grad():
        packed_logits = model(input_ids=batch["input_ids"][:1], position_ids=batch["position_ids"][:1],
                              use_cache=False).logits[0]
        second = block["input_ids"][starts[1]:starts[2] if len(starts) > 2 else None]
        alone = model(input_ids=torch.tensor([second])).logits[0]
    torch.testing.assert_close(packed_logits[starts[1]:starts[1] + len(second)], alone, atol=1e-4, rtol=1e-4)


def test_packing_and_eval_split_train(tmp_path, tiny_model, memo_dataset, ctx_factory):
    ctx = ctx_factory(tmp_path / "ws", "pack")
    result = train_text_adapter(_spec(tiny_model, memo_dataset, packing=True, eval_ratio=0.25, max_steps=4,
                                      max_length=128), ctx)
    assert result["steps"] == 4 and result["eval_rows"] == 1
    assert result["eval_loss"] is not None and result["eval_loss"] > 0
    assert result["train_rows"] < 6  # 6 training samples were packed into fewer blocks
    assert (Path(ctx.output_dir) / "adapter_model.safetensors").is_file()


def test_cancel_then_resume(tmp_path, tiny_model, memo_dataset, ctx_factory):
    home = tmp_path / "ws"
    ctx = ctx_factory(home, "cancel", stop_after=3)
    result = train_text_adapter(_spec(tiny_model, memo_dataset, max_steps=6, save_steps=100), ctx)
    assert result["stopped"] is True and result["steps"] == 3
    assert (Path(ctx.output_dir) / "adapter_model.safetensors").is_file()
    checkpoint = Path(ctx.checkpoint_dir) / "checkpoint-3"
    assert checkpoint.is_dir(), list(Path(ctx.checkpoint_dir).iterdir())

    resumed = ctx_factory(home, "cancel_resume", resume_checkpoint=checkpoint)
    result2 = train_text_adapter(_spec(tiny_model, memo_dataset, max_steps=6, save_steps=100), resumed)
    assert result2["steps"] == 6 and result2["stopped"] is False
    assert [r["step"] for r in resumed.records] == [4, 5, 6]


def test_qlora_4bit_cpu(tmp_path, tiny_model, memo_dataset, ctx_factory):
    try:
        import bitsandbytes  # noqa: F401
        from transformers import BitsAndBytesConfig  # noqa: F401
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"bitsandbytes 4-bit is unavailable on this platform: {exc}")
    ctx = ctx_factory(tmp_path / "ws", "qlora")
    result = train_text_adapter(_spec(tiny_model, memo_dataset, quantization="4bit", max_steps=2), ctx)
    assert result["steps"] == 2 and result["final_loss"] is not None
    lines = [line for line in ctx.lines if line.startswith("quantization=4bit")]
    assert lines and int(lines[0].split(": ")[1].split()[0]) > 0, ctx.lines
    config = json.loads((Path(ctx.output_dir) / "adapter_config.json").read_text(encoding="utf-8"))
    assert config["r"] == PRESETS["quick"]["rank"]


def test_presets_and_validation():
    assert set(PRESETS) == {"quick", "standard", "high_quality", "dpo", "kto", "orpo", "simpo", "grpo"}
    for name in PRESETS:
        assert resolve_train_params(name, {}).model_dump() == PRESETS[name]
    assert "learning_rate" in TRAIN_PARAMS_SCHEMA["properties"]
    with pytest.raises(LoRAFactoryError) as err:
        resolve_train_params("turbo", {})
    assert err.value.code == "UNKNOWN_PRESET"
    with pytest.raises(LoRAFactoryError) as err:
        resolve_train_params("quick", {"learnig_rate": 1e-3})
    assert err.value.code == "INVALID_TRAIN_PARAMS" and err.value.detail["field"] == "learnig_rate"
    with pytest.raises(LoRAFactoryError) as err:
        resolve_train_params("quick", {"target_modules": "everything"})
    assert err.value.detail["field"] == "target_modules"


def test_missing_dataset(tmp_path, tiny_model, ctx_factory):
    with pytest.raises(LoRAFactoryError) as err:
        train_text_adapter(_spec(tiny_model, tmp_path / "nope.jsonl"), ctx_factory(tmp_path / "ws", "m"))
    assert err.value.code == "DATASET_NOT_FOUND"
