"""A tiny random-weight chat model, built offline in about a second.

Why: the product must be usable (and testable) with no hub access. A 2-layer Llama with a byte-level
BPE tokenizer trained on the spot behaves like a real chat model for every code path (chat template,
LoRA targets, 4-bit, merge, streaming) while costing nothing to train. Its answers are gibberish
until a LoRA teaches it something, which is exactly what a demo needs to show.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lora_factory.kit.files import write_text_atomic

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
PAD = "<|pad|>"
BOS = "<|endoftext|>"

# ChatML. The {% generation %} markers let transformers compute assistant masks
# (return_assistant_tokens_mask=True); our own collator computes them independently too.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\\n' }}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{ '\\n' }}"
    "{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# A small bilingual corpus: enough for BPE merges that cover common Japanese and English pieces.
_CORPUS = [
    "こんにちは。今日はいい天気ですね。",
    "私の名前はロラです。よろしくお願いします。",
    "日本の首都は東京です。富士山は日本で一番高い山です。",
    "ありがとうございます。どういたしまして。",
    "質問に答えてください。はい、わかりました。",
    "猫が好きです。犬も好きです。",
    "機械学習とは、データから規則を学ぶ方法です。",
    "LoRAは少ないパラメータでモデルを調整する方法です。",
    "Hello, how are you today? I am fine, thank you.",
    "The capital of Japan is Tokyo. Mount Fuji is the highest mountain.",
    "Machine learning learns rules from data.",
    "LoRA adapts a model with few trainable parameters.",
    "system user assistant",
    "あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわをん",
    "アイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリルレロワヲン",
    "0123456789 !?.,:;()[]{}\"'-_/\\@#$%&*+=<>",
]


def _build_tokenizer(vocab_size: int) -> Any:
    """Train a byte-level BPE on the corpus and wrap it as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = [BOS, IM_START, IM_END, PAD]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=IM_END,
        pad_token=PAD,
        unk_token=None,
        additional_special_tokens=[IM_START],
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.padding_side = "right"
    return fast


def build_tiny_text_model(
    out_dir: Path,
    seed: int = 0,
    hidden_size: int = 64,
    num_layers: int = 2,
    vocab_size: int = 512,
) -> dict[str, Any]:
    """Build a random LlamaForCausalLM + ChatML tokenizer into ``out_dir`` (safetensors).

    :return: ``{"path", "parameters", "architecture"}``.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = _build_tokenizer(vocab_size)
    real_vocab = len(tokenizer)
    heads = max(1, hidden_size // 16)
    config = LlamaConfig(
        vocab_size=real_vocab,
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    # The default init (std 0.02) caps the logits near +-1.3 after the frozen final norm, so a LoRA
    # could never make a confident prediction: give the output head the scale a trained model has.
    with torch.no_grad():
        model.lm_head.weight.normal_(0.0, 0.15)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    parameters = sum(p.numel() for p in model.parameters())
    write_text_atomic(
        out_dir / "README.md",
        "# Tiny random chat model (LoRA Factory)\n\n"
        "このモデルは重みがランダムな動作確認用モデルです。学習前の出力は意味を持ちません。\n\n"
        "This model has RANDOM weights: it exists so the whole workflow (training, chat, merge) can be "
        f"tried offline. Its output means nothing until a LoRA teaches it something.\n\n"
        f"- architecture: LlamaForCausalLM\n- parameters: {parameters}\n- hidden_size: {hidden_size}\n"
        f"- layers: {num_layers}\n- vocab: {real_vocab} (byte-level BPE, ChatML template)\n- seed: {seed}\n",
    )
    return {"path": str(out_dir), "parameters": int(parameters), "architecture": "LlamaForCausalLM"}
