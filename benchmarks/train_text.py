"""Throughput of LoRA Factory's text training against a plain transformers + peft loop.

Prints (1) our train_text_adapter tokens/s divided by the plain loop's tokens/s on the same tiny model,
data and hyper-parameters, and (2) real (non-pad) tokens/s with packing vs without.
Default run: well under 2 minutes on a 2-core CPU. Bigger: --hidden 512 --layers 8 --steps 100.

    .venv/bin/python benchmarks/train_text.py [--hidden 128] [--layers 2] [--rows 96] [--steps 30]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

QUESTIONS = ["日本の首都は?", "富士山について教えて", "好きな食べ物は?", "LoRAとは何ですか?", "今日の天気は?",
             "おすすめの本は?", "機械学習を説明して", "猫と犬どちらが好き?"]
WORDS = ["東京", "富士山", "猫", "犬", "学習", "データ", "モデル", "天気", "本", "日本", "です", "ます", "とても", "少し"]


def make_dataset(path: Path, rows: int, seed: int) -> None:
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as fh:
        for _ in range(rows):
            answer = "".join(rng.choice(WORDS) for _ in range(rng.randint(2, 40))) + "。"
            msgs = [{"role": "user", "content": rng.choice(QUESTIONS)}, {"role": "assistant", "content": answer}]
            fh.write(json.dumps({"messages": msgs}, ensure_ascii=False) + "\n")


def load_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def run_ours(model_dir: Path, data: Path, home: Path, job: str, params: dict) -> dict:
    from lora_factory.core.context import JobContext
    from lora_factory.core.workspace import Workspace
    from lora_factory.plugins.text.presets import resolve_train_spec
    from lora_factory.plugins.text.train import train_text_adapter

    ws = Workspace(home)
    ctx = JobContext(job, ws, ws.run_dir(job), ws.log_path("train", job))
    return train_text_adapter(resolve_train_spec({"base_model": str(model_dir), "dataset": str(data), "preset": "quick",
                               "params": params, "output_name": job}), ctx)


def run_plain(model_dir: Path, data: Path, params: dict) -> dict:
    """The textbook loop: chat template -> tokens, labels = inputs, pad per batch, AdamW, LoRA all-linear."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(params["seed"])
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="sdpa")
    model.config.use_cache = False
    model = get_peft_model(model, LoraConfig(r=params["rank"], lora_alpha=params["alpha"], lora_dropout=0.0,
                                             target_modules="all-linear", task_type="CAUSAL_LM"))
    model.train()
    rows = [tok.apply_chat_template(r["messages"], tokenize=False) for r in load_jsonl(data)]
    encoded = [tok(t, add_special_tokens=False)["input_ids"][: params["max_length"]] for t in rows]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=params["learning_rate"])
    bs, steps, tokens = params["batch_size"], params["max_steps"], 0
    order = list(range(len(encoded)))
    random.Random(params["seed"]).shuffle(order)
    start = time.perf_counter()
    for step in range(steps):
        idx = [order[(step * bs + i) % len(order)] for i in range(bs)]
        batch = [encoded[i] for i in idx]
        longest = max(map(len, batch))
        ids = torch.tensor([b + [tok.pad_token_id] * (longest - len(b)) for b in batch])
        mask = torch.tensor([[1] * len(b) + [0] * (longest - len(b)) for b in batch])
        labels = ids.masked_fill(mask == 0, -100)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        tokens += int(mask.sum())
    elapsed = time.perf_counter() - start
    return {"tokens_per_s": tokens / elapsed, "final_loss": loss.item(), "runtime": elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--rows", type=int, default=96)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=256)
    args = parser.parse_args()

    from lora_factory.plugins.text.tiny_model import build_tiny_text_model

    tmp = Path(tempfile.mkdtemp(prefix="lf_bench_"))
    model_dir = tmp / "model"
    build_tiny_text_model(model_dir, hidden_size=args.hidden, num_layers=args.layers)
    data = tmp / "data.jsonl"
    make_dataset(data, args.rows, seed=0)
    params = {"max_steps": args.steps, "batch_size": args.batch_size, "max_length": args.max_length,
              "save_steps": 10_000, "seed": 0, "assistant_only_loss": True, "packing": False}
    from lora_factory.plugins.text.presets import PRESETS

    plain_params = {**PRESETS["quick"], **params}

    run_plain(model_dir, data, {**plain_params, "max_steps": 3})  # warm-up: one-time kernel / allocator costs
    plain = run_plain(model_dir, data, plain_params)
    ours = run_ours(model_dir, data, tmp / "ws", "nopack", params)
    packed = run_ours(model_dir, data, tmp / "ws", "pack", {**params, "packing": True})
    print(f"model: hidden={args.hidden} layers={args.layers}  rows={args.rows} steps={args.steps} "
          f"batch={args.batch_size} max_length={args.max_length}")
    print(f"plain transformers+peft loop : {plain['tokens_per_s']:10.1f} real tokens/s  (loss {plain['final_loss']:.3f})")
    print(f"ours (train_text_adapter)    : {ours['tokens_per_s']:10.1f} real tokens/s  (loss {ours['final_loss']:.3f})")
    print(f"ours / plain                 : {ours['tokens_per_s'] / plain['tokens_per_s']:.2f}")
    print(f"ours with packing            : {packed['tokens_per_s']:10.1f} real tokens/s  "
          f"({packed['train_rows']} packed blocks from {ours['train_rows']} rows)")
    print(f"packing / no packing         : {packed['tokens_per_s'] / ours['tokens_per_s']:.2f}")


if __name__ == "__main__":
    main()
