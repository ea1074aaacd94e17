"""LoRA (bf16) and QLoRA (4-bit nf4) on a random-weight model of real size, through our train job code.

Prepared for a machine with an NVIDIA GPU and no hub access: the model is built from a config
(Qwen2-0.5B-like shapes, Llama architecture, random weights, the locally trained tokenizer), the data
is synthetic Japanese chat. Prints tokens/s (real, non-pad) and peak VRAM for each mode; each mode
runs in its own process so the VRAM peaks do not mix. Modes: ``lora``, ``qlora`` (SFT), ``dpo`` (pairs made
from the same answers: the full answer chosen, a shuffled half rejected; reference = the base with the
adapter disabled) and ``grpo`` (the prompts, 8 samples each, a length reward).

    .venv/bin/python benchmarks/gpu_train_text.py                # 0.5B, both modes, 30 steps each
    .venv/bin/python benchmarks/gpu_train_text.py --size 1.5b    # Qwen2-1.5B-like shapes
    .venv/bin/python benchmarks/gpu_train_text.py --size tiny --steps 3   # a CPU smoke test
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SIZES = {  # hidden, layers, intermediate, heads, kv heads, vocab (vocab rows beyond the tokenizer stay unused)
    "tiny": (64, 2, 128, 4, 4, 512),
    "0.5b": (896, 24, 4864, 14, 2, 151936),
    "1.5b": (1536, 28, 8960, 12, 2, 151936),
}


def build_model(out: Path, size: str) -> int:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from lora_factory.plugins.text.tiny_model import build_tiny_text_model

    build_tiny_text_model(out, seed=0)  # tokenizer + chat template; the weights are replaced below
    if size == "tiny":
        return sum(p.numel() for p in LlamaForCausalLM.from_pretrained(out).parameters())
    hidden, layers, inter, heads, kv, vocab = SIZES[size]
    base = json.loads((out / "config.json").read_text())
    config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, intermediate_size=inter,
                         num_attention_heads=heads, num_key_value_heads=kv, max_position_embeddings=4096,
                         bos_token_id=base.get("bos_token_id"), eos_token_id=base.get("eos_token_id"),
                         pad_token_id=base.get("pad_token_id"), tie_word_embeddings=True)
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    for stale in out.glob("*.safetensors"):
        stale.unlink()
    model.save_pretrained(out, safe_serialization=True)
    return sum(p.numel() for p in model.parameters())


def make_dataset(path: Path, rows: int) -> None:
    rng = random.Random(0)
    words = ["東京", "富士山", "学習", "データ", "モデル", "日本語", "とても", "です", "ます", "アダプタ", "計算"]
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(rows):
            answer = "".join(rng.choice(words) for _ in range(rng.randint(60, 160))) + "。"
            msgs = [{"role": "user", "content": f"質問 {i}: 説明してください。"}, {"role": "assistant", "content": answer}]
            fh.write(json.dumps({"messages": msgs}, ensure_ascii=False) + "\n")
    rng = random.Random(1)
    with open(path.with_name("pairs.jsonl"), "w", encoding="utf-8") as fh:  # the dpo mode's pairs
        for line in path.read_text(encoding="utf-8").splitlines():
            question, answer = (m["content"] for m in json.loads(line)["messages"])
            half = list(answer[: len(answer) // 2])
            rng.shuffle(half)
            fh.write(json.dumps({"instruction": question, "chosen": answer, "rejected": "".join(half)},
                                ensure_ascii=False) + "\n")


def run_mode(model: Path, data: Path, mode: str, steps: int, batch: int, max_length: int) -> dict:
    import torch

    from lora_factory.core.jobs.context import JobContext
    from lora_factory.core.storage.workspace import Workspace
    from lora_factory.plugins.text.presets import resolve_train_spec
    from lora_factory.plugins.text.train import train_text_adapter

    home = Path(tempfile.mkdtemp(prefix=f"lf-gpu-{mode}-"))
    ws = Workspace(home)
    ctx = JobContext(mode, ws, ws.run_dir(mode), ws.log_path("train", mode))
    params = {"max_steps": steps, "batch_size": batch, "grad_accum": 1, "max_length": max_length, "packing": True,
              "learning_rate": 2e-4, "save_steps": 10_000, "gradient_checkpointing": True, "rank": 16, "alpha": 32,
              "quantization": "4bit" if mode == "qlora" else "none"}
    options: dict = {}
    if mode == "dpo":
        data, options = data.with_name("pairs.jsonl"), {"format": "preference"}
        params.update(method="dpo", packing=False, learning_rate=5e-5)
    elif mode == "grpo":
        params.update(method="grpo", packing=False, learning_rate=1e-5, num_generations=8, batch_size=max(8, batch),
                      max_completion_length=128, rewards=[{"name": "length", "target": 100}])
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    result = train_text_adapter(resolve_train_spec({"base_model": str(model), "dataset": str(data), "preset": "standard",
                                                    "dataset_options": options, "params": params,
                                                    "output_name": mode}), ctx)
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")
    return {"mode": mode, "tokens_per_s": result.get("tokens_per_s") or 0.0, "peak_vram_gib": round(peak, 2),
            "steps_per_s": round(result["steps"] / max(result["train_runtime"], 1e-9), 3),
            "steps": result["steps"], "final_loss": result["final_loss"], "wall_s": round(time.perf_counter() - started, 1),
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", choices=sorted(SIZES), default="0.5b")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--modes", default="lora,qlora,dpo,grpo")
    parser.add_argument("--work", help="reuse this folder (model + data)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="lf-gpu-bench-"))
    model, data = work / "model", work / "data.jsonl"
    if args.one:  # child process: one mode, JSON on the last line
        print(json.dumps(run_mode(model, data, args.one, args.steps, args.batch, args.max_length)))
        return
    started = time.perf_counter()
    params = build_model(model, args.size)
    make_dataset(data, rows=max(64, args.steps * args.batch))
    print(f"model: random Llama, {params / 1e6:.0f}M parameters ({args.size}), built in {time.perf_counter() - started:.0f} s")
    for mode in args.modes.split(","):
        if mode == "qlora" and importlib.util.find_spec("bitsandbytes") is None:  # one missing package, not a crash
            print(f"{mode:>5}: not measured (bitsandbytes not available)")
            continue
        out = subprocess.run([sys.executable, __file__, "--work", str(work), "--one", mode, "--steps", str(args.steps),
                              "--batch", str(args.batch), "--max-length", str(args.max_length), "--size", args.size],
                             capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{mode}: FAILED\n{out.stderr[-3000:]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{mode:>5}: {r['tokens_per_s']:>10.0f} real tokens/s   peak VRAM {r['peak_vram_gib']:>6} GiB   "
              f"{r['steps']} steps ({r['steps_per_s']} steps/s), loss {r['final_loss']:.3f}, {r['wall_s']} s on {r['device']}")


if __name__ == "__main__":
    main()
