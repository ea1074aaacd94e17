"""The offline tiny model: builds, reloads with Auto classes, Japanese round-trips, ChatML template."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from lora_factory.plugins.text.model_info import read_safetensors_header


def test_tiny_model_reloads(tiny_model: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    tok = AutoTokenizer.from_pretrained(tiny_model)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert (tiny_model / "model.safetensors").is_file()
    assert not list(tiny_model.glob("*.bin"))
    assert "random" in (tiny_model / "README.md").read_text(encoding="utf-8").lower()
    assert tok.eos_token == "<|im_end|>" and tok.pad_token is not None and tok.pad_token != tok.eos_token
    assert model.config.eos_token_id == tok.eos_token_id


def test_japanese_round_trip(tiny_model: Path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    for text in ["日本の首都は東京です。", "絵文字🙂とカタカナ、漢字「齟齬」", "mixed English と日本語 123"]:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text


def test_chat_template(tiny_model: Path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    msgs = [{"role": "user", "content": "こんにちは"}, {"role": "assistant", "content": "はい"}]
    assert tok.apply_chat_template(msgs, tokenize=False) == (
        "<|im_start|>user\nこんにちは<|im_end|>\n<|im_start|>assistant\nはい<|im_end|>\n")
    prompt = tok.apply_chat_template(msgs[:1], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>assistant\n")
    ids = tok.apply_chat_template(msgs, tokenize=True, return_dict=True)["input_ids"]
    assert tok.convert_tokens_to_ids("<|im_end|>") in ids and len(tok.encode("<|im_end|>", add_special_tokens=False)) == 1


def test_build_is_seeded(tmp_path: Path):
    from lora_factory.plugins.text.tiny_model import build_tiny_text_model

    a = build_tiny_text_model(tmp_path / "a", seed=3)
    b = build_tiny_text_model(tmp_path / "b", seed=3)
    c = build_tiny_text_model(tmp_path / "c", seed=4, hidden_size=32, num_layers=1)
    assert a["parameters"] == b["parameters"] > c["parameters"]
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()


def test_inspect_without_torch(tiny_model: Path, tmp_path: Path):
    """model_info must count parameters from the headers alone, in a process without torch."""
    import subprocess

    code = (
        "import json,sys; from lora_factory.plugins.text.model_info import inspect_text_model;"
        f"print(json.dumps(inspect_text_model({str(tiny_model)!r}))); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=str(Path(__file__).resolve().parents[2])).stdout.splitlines()
    info = json.loads(out[0])
    assert out[1] == "False"
    from transformers import AutoModelForCausalLM

    expected = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(tiny_model).parameters())
    assert info["parameters"] == expected
    assert info["architecture"] == "LlamaForCausalLM" and info["model_type"] == "llama"
    assert info["dtype"] == "float32" and info["chat_template"] is True and info["merged"] is False
    assert info["size_bytes"] > (tiny_model / "model.safetensors").stat().st_size
    header = read_safetensors_header(tiny_model / "model.safetensors")
    assert any(k.endswith("lm_head.weight") for k in header)
