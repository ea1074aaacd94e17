"""GPU benchmark of the audio plugin at Llasa-1B size, with random weights (no download needed).

Builds a Llama LM with Llasa-1B's shape (hidden 2048, 16 layers, 32 heads / 8 KV heads, vocabulary of
Llama 3 + the Llasa markers + 65,536 ``<|s_N|>`` codes) and a full-size XCodec2, both random, then:
LoRA training tokens/s and peak VRAM over synthetic codec tokens (the same step as the plugin's loop:
prompt masked, bf16 autocast, gradient checkpointing), and synthesis real-time factor with the codec
decode included (generation forced to a fixed length, since random weights never stop).

    python benchmarks/gpu_train_audio.py                 # 1B on the GPU
    python benchmarks/gpu_train_audio.py --size tiny     # CPU smoke test of the same code path
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SIZES = {
    "1b": {"hidden": 2048, "layers": 16, "heads": 32, "kv": 8, "inter": 8192, "text_vocab": 128256,
           "levels": [4] * 8, "codec": "full"},
    "tiny": {"hidden": 64, "layers": 2, "heads": 4, "kv": 4, "inter": 128, "text_vocab": 640, "levels": [4] * 4,
             "codec": "tiny"},
}


def build(size: str, device: str, dtype):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Xcodec2Config, Xcodec2Model

    from lora_factory.plugins.audio.tiny_model import build_tiny_codec

    s = SIZES[size]
    codebook = 1
    for level in s["levels"]:
        codebook *= level
    offset = s["text_vocab"] + 8  # the eight Llasa markers follow the text vocabulary
    config = LlamaConfig(vocab_size=offset + codebook, hidden_size=s["hidden"], num_hidden_layers=s["layers"],
                         num_attention_heads=s["heads"], num_key_value_heads=s["kv"], intermediate_size=s["inter"],
                         max_position_embeddings=4096, tie_word_embeddings=False)
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(dtype)
    if s["codec"] == "tiny":
        import tempfile

        folder = Path(tempfile.mkdtemp()) / "codec"
        build_tiny_codec(folder)
        codec = Xcodec2Model.from_pretrained(str(folder)).to(device).eval()
    else:
        codec = Xcodec2Model(Xcodec2Config()).to(device).eval()  # the released XCodec2's shape
    return model, codec, offset, codebook


def train_speed(model, offset: int, codebook: int, steps: int, batch: int, seconds: float, device: str, dtype) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj",
                                                                                       "o_proj"], task_type="CAUSAL_LM"))
    peft_model.gradient_checkpointing_enable()
    peft_model.enable_input_require_grads()
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-4)
    prompt, frames = 48, int(seconds * 50)
    gen = torch.Generator().manual_seed(0)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    tokens = 0
    started = None
    for step in range(steps + 2):
        ids = torch.cat([torch.randint(0, offset - 8, (batch, prompt), generator=gen),
                         offset + torch.randint(0, codebook, (batch, frames), generator=gen)], dim=1).to(device)
        labels = ids.clone()
        labels[:, :prompt] = -100
        with torch.autocast(device_type=device, dtype=dtype, enabled=device == "cuda"):
            loss = peft_model(input_ids=ids, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step == 1:  # two warm-up steps
            if device == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
        elif step > 1:
            tokens += ids.numel()
    if device == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
    peft_model.gradient_checkpointing_disable()
    return {"train_tokens_per_s": round(tokens / elapsed, 1), "peak_vram_gib": round(peak, 2) if peak else None,
            "batch": batch, "seq_len": prompt + frames, "model": peft_model}


def synthesis_rtf(model, codec, offset: int, codebook: int, seconds: float, device: str) -> dict:
    import torch

    frames = int(seconds * 50)
    prompt = torch.randint(0, offset - 8, (1, 48), device=device)
    bias = torch.full((model.config.vocab_size,), float("-inf"), device=device)
    bias[offset: offset + codebook] = 0.0

    def only_codes(input_ids, scores):
        return scores + bias[: scores.shape[-1]]

    with torch.inference_mode():
        model.eval()
        model.generate(input_ids=prompt, max_new_tokens=8, min_new_tokens=8, do_sample=True,
                       logits_processor=[only_codes])  # warm-up
        if device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        out = model.generate(input_ids=prompt, max_new_tokens=frames, min_new_tokens=frames, do_sample=True,
                             top_p=0.95, temperature=0.8, logits_processor=[only_codes])
        codes = (out[0, prompt.shape[1]:] - offset).clamp(0, codebook - 1)
        generated = time.perf_counter() - started
        audio = codec.decode(audio_codes=codes[None, None].long()).audio_values
        if device == "cuda":
            torch.cuda.synchronize()
        total = time.perf_counter() - started
    audio_s = audio.shape[-1] / 16000
    return {"audio_s": round(audio_s, 2), "lm_tokens_per_s": round(frames / generated, 1),
            "synthesis_s": round(total, 3), "rtf": round(total / audio_s, 3)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", choices=sorted(SIZES), default="1b")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--clip-seconds", type=float, default=8.0)
    parser.add_argument("--speech-seconds", type=float, default=10.0)
    args = parser.parse_args()
    import torch

    device = "cuda" if torch.cuda.is_available() and args.size != "tiny" else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    if args.size == "tiny":
        args.steps, args.batch, args.clip_seconds, args.speech_seconds = min(args.steps, 3), 2, 1.0, 1.0
    model, codec, offset, codebook = build(args.size, device, dtype)
    params = sum(p.numel() for p in model.parameters())
    train = train_speed(model, offset, codebook, args.steps, args.batch, args.clip_seconds, device, dtype)
    synth = synthesis_rtf(train.pop("model"), codec, offset, codebook, args.speech_seconds, device)
    report = {"size": args.size, "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
              "lm_parameters": params, **train, **synth}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
