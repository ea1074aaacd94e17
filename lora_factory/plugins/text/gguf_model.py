"""A whole model (the base, or base + LoRA merged) written as a GGUF file llama.cpp / Ollama run.

Weights: named by :mod:`gguf_arch`, q / k rows permuted for llama.cpp's RoPE, 2-D tensors in the
chosen type (f16, bf16, q8_0, f32), norms in f32, as ``convert_hf_to_gguf.py`` does. Further
quantisation (Q4_K_M ...) is llama.cpp's ``llama-quantize model-f16.gguf model-q4_k_m.gguf Q4_K_M``.

Tokenizer: a byte-level BPE ``tokenizer.json`` (GPT-2, Llama-3, Qwen2 style) becomes
``tokenizer.ggml.model = gpt2`` with the tokens, their types, the merges, the special ids and the
chat template; ``tokenizer.ggml.pre`` names the pre-tokenizer's split pattern. Other tokenizers
(sentencepiece ``tokenizer.model``, WordPiece) are refused with the reason.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lora_factory.plugins.text.gguf_arch import GGUFArch, file_type, publish, quantized, read_arch, unsupported

# the split regex of a pre-tokenizer -> llama.cpp's name for it (llama-vocab.cpp's LLAMA_VOCAB_PRE_TYPE_*)
_PRE_PATTERNS = {
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+":
        "llama-bpe",
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+":
        "qwen2",
}


def _pre_tokenizer_name(pre: dict[str, Any] | None) -> str:
    if not pre:
        raise unsupported("トークナイザーに pre_tokenizer がありません", "the tokenizer has no pre-tokenizer")
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        return "gpt-2"  # ByteLevel's own regex is GPT-2's (llama.cpp names that pre-tokenizer "gpt-2")
    if pre.get("type") == "Sequence":
        splits = [p for p in pre.get("pretokenizers") or [] if p.get("type") == "Split"]
        levels = [p for p in pre.get("pretokenizers") or [] if p.get("type") == "ByteLevel"]
        if len(splits) == 1 and levels and not levels[0].get("use_regex", True):
            pattern = (splits[0].get("pattern") or {}).get("Regex")
            if pattern in _PRE_PATTERNS:
                return _PRE_PATTERNS[pattern]
    raise unsupported("トークナイザーの前処理 (pre-tokenizer) が llama.cpp の既知のものと一致しません",
                      "the tokenizer's pre-tokenizer matches none llama.cpp knows", pre_tokenizer=pre)


def add_tokenizer(writer: Any, tokenizer_dir: Path, vocab_size: int) -> dict[str, Any]:
    """The ``tokenizer.ggml.*`` metadata from ``tokenizer.json`` + ``tokenizer_config.json``."""
    import gguf

    path = Path(tokenizer_dir) / "tokenizer.json"
    if not path.is_file():
        raise unsupported("tokenizer.json がありません (sentencepiece のみのトークナイザーは未対応)",
                          "there is no tokenizer.json (sentencepiece-only tokenizers are not supported yet)")
    data = json.loads(path.read_text(encoding="utf-8"))
    model = data.get("model") or {}
    if model.get("type") != "BPE" or (data.get("decoder") or {}).get("type") != "ByteLevel":
        raise unsupported(f"バイトレベル BPE 以外のトークナイザー ({model.get('type')}) です",
                          f"the tokenizer is not a byte-level BPE ({model.get('type')})")
    pre = _pre_tokenizer_name(data.get("pre_tokenizer"))
    config_file = Path(tokenizer_dir) / "tokenizer_config.json"
    tok_config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
    by_id: dict[int, str] = {int(i): t for t, i in model["vocab"].items()}
    types: dict[int, int] = {}
    for added in data.get("added_tokens") or []:
        by_id[int(added["id"])] = added["content"]
        types[int(added["id"])] = gguf.TokenType.CONTROL if added.get("special") else gguf.TokenType.USER_DEFINED
    size = max(vocab_size, max(by_id) + 1)
    tokens = [by_id.get(i, f"[PAD{i}]") for i in range(size)]
    token_types = [types.get(i, gguf.TokenType.NORMAL if i in by_id else gguf.TokenType.UNUSED) for i in range(size)]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(token_types)
    writer.add_token_merges(merges)
    ids = {t: i for i, t in by_id.items()}

    def special(name: str) -> int | None:
        value = tok_config.get(name)
        value = value.get("content") if isinstance(value, dict) else value
        return ids.get(value) if value else None

    for name, add in (("bos_token", writer.add_bos_token_id), ("eos_token", writer.add_eos_token_id),
                      ("pad_token", writer.add_pad_token_id), ("unk_token", writer.add_unk_token_id)):
        if (token_id := special(name)) is not None:
            add(token_id)
    adds_bos = bool((data.get("post_processor") or {}).get("type") == "TemplateProcessing"
                    and "bos" in json.dumps(data.get("post_processor")).lower())
    writer.add_add_bos_token(adds_bos)
    template = tok_config.get("chat_template")
    if not template and (Path(tokenizer_dir) / "chat_template.jinja").is_file():
        template = (Path(tokenizer_dir) / "chat_template.jinja").read_text(encoding="utf-8")
    if template:
        writer.add_chat_template(template)
    return {"tokens": size, "merges": len(merges), "pre": pre, "chat_template": bool(template)}


def write_gguf_model(state: dict[str, Any], arch: GGUFArch, tokenizer_dir: Path, out_path: Path,
                     outtype: str = "f16", name: str = "model") -> dict[str, Any]:
    """Write a full model from ``state`` (HF names -> float numpy arrays). :return: a summary."""
    import gguf

    out_path = Path(out_path)
    tmp = out_path.with_name(f".tmp-{out_path.name}")
    writer = gguf.GGUFWriter(str(tmp), arch.arch)
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name)
    arch.add_hparams(writer)
    writer.add_file_type(file_type(outtype))
    vocab = add_tokenizer(writer, tokenizer_dir, int(arch.config["vocab_size"]))
    count = 0
    for key in sorted(state):
        if key.endswith("rotary_emb.inv_freq"):
            continue
        module, _, suffix = key.rpartition(".")
        array = arch.permute_rows(state[key], module)
        data, qtype = quantized(array, outtype)
        writer.add_tensor(arch.gguf_name(module, f".{suffix}"), data, raw_dtype=qtype)
        count += 1
    publish(writer, tmp, out_path)
    return {"tensors": count, "architecture": arch.arch, "outtype": outtype, "vocab": vocab}


def model_state(model_dir: Path, adapter_dir: Path | None = None) -> dict[str, Any]:
    """The base's weights as float32 numpy arrays, with the LoRA merged in when ``adapter_dir`` is given."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    return {k: v.detach().float().numpy() for k, v in model.state_dict().items()}


def export_model_gguf(model_dir: Path, out_path: Path, outtype: str = "f16", adapter_dir: Path | None = None,
                      name: str = "model") -> dict[str, Any]:
    arch = read_arch(model_dir)
    return write_gguf_model(model_state(model_dir, adapter_dir), arch, model_dir, out_path, outtype, name)
