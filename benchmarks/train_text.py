"""Throughput of LoRA Factory's text training against a plain Trainer + peft script and a hand loop.

Three ways to train the same tiny model on the same data with the same hyper-parameters:
  - ours: ``train_text_adapter`` (what a train job runs);
  - a plain transformers ``Trainer`` + peft script with the TrainingArguments our job builds
    (chat template with assistant masks, a ``datasets.Dataset``, ``DataCollatorForSeq2Seq``);
  - a textbook hand-written loop (AdamW, pad per batch).
Ours and the Trainer script see the very same batches (same sampler, same seed: their losses match),
so their steps can be compared one by one.

Printed: real (non-pad) tokens/s of each, as wall-clock medians of interleaved runs, and the ratios
ours / Trainer and ours / hand loop; then the same ratios in CPU time per step (median over every
step of every run, ours and Trainer paired step by step), which a busy shared machine disturbs far
less than wall-clock time; then where a step's time goes outside the model (each part timed alone:
building a batch, the Trainer's FLOPs count, gradient clipping and zeroing over the whole model
versus over the LoRA parameters only); then packing vs no packing.

    .venv/bin/python benchmarks/train_text.py --threads 1     # steady numbers on a shared machine
    .venv/bin/python benchmarks/train_text.py [--hidden 128] [--layers 2] [--steps 30] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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


def step_times(marks: list[tuple[int, float, float]]) -> dict[int, tuple[float, float]]:
    """(step, cpu, wall) marks -> per step: (cpu seconds, wall seconds) since the previous mark."""
    return {s1: (c1 - c0, w1 - w0) for (_, c0, w0), (s1, c1, w1) in zip(marks, marks[1:], strict=False)}


def run_ours(model_dir: Path, data: Path, home: Path, job: str, params: dict) -> dict:
    from lora_factory.core.jobs.context import JobContext
    from lora_factory.core.storage.workspace import Workspace
    from lora_factory.plugins.text.presets import resolve_train_spec
    from lora_factory.plugins.text.train import train_text_adapter

    class TimedContext(JobContext):
        """A real JobContext that also notes the time of every step's progress report."""

        marks: list[tuple[int, float, float]]

        def progress(self, step, max_steps, loss=None, **metrics):  # noqa: ANN001
            self.marks.append((step, time.thread_time(), time.perf_counter()))
            super().progress(step, max_steps, loss, **metrics)

    ws = Workspace(home)
    ctx = TimedContext(job, ws, ws.run_dir(job), ws.log_path("train", job))
    ctx.marks = []
    result = train_text_adapter(resolve_train_spec({"base_model": str(model_dir), "dataset": str(data),
                                                    "preset": "quick", "params": params, "output_name": job}), ctx)
    return {**result, "steps_timed": step_times(ctx.marks)}


def run_trainer(model_dir: Path, data: Path, home: Path, params: dict) -> dict:
    """The plain transformers Trainer + peft script: chat template with assistant masks, a datasets
    Dataset, DataCollatorForSeq2Seq, and the TrainingArguments our job builds for these params."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainerCallback,
        set_seed,
    )
    from transformers.trainer_callback import PrinterCallback

    from lora_factory.plugins.text.presets import resolve_train_params
    from lora_factory.plugins.text.train import training_arguments

    p = resolve_train_params("quick", params)
    set_seed(p.seed)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa")
    model.config.use_cache = False
    model = get_peft_model(model, LoraConfig(r=p.rank, lora_alpha=p.alpha, lora_dropout=p.dropout,
                                             target_modules=p.target_modules, task_type="CAUSAL_LM", bias="none"))
    rows = []
    for r in load_jsonl(data):
        enc = tok.apply_chat_template(r["messages"], tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
        ids, mask = enc["input_ids"][: p.max_length], enc["assistant_masks"][: p.max_length]
        rows.append({"input_ids": ids, "attention_mask": [1] * len(ids),
                     "labels": [i if m else -100 for i, m in zip(ids, mask, strict=True)]})
    counted = {"tokens": 0}
    inner = DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100)

    def collate(features):  # noqa: ANN001, ANN202
        counted["tokens"] += sum(len(f["input_ids"]) for f in features)
        return inner(features)

    marks: list[tuple[int, float, float]] = []

    class StepTimes(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
            if logs and "loss" in logs:
                marks.append((state.global_step, time.thread_time(), time.perf_counter()))

    trainer = Trainer(model=model, args=training_arguments(p, home / "trainer_ckpt", "cpu", has_eval=False),
                      train_dataset=Dataset.from_list(rows), data_collator=collate, callbacks=[StepTimes()])
    trainer.remove_callback(PrinterCallback)  # a dict printed per step would only clutter this output
    out = trainer.train()
    runtime = float(out.metrics["train_runtime"])
    return {"tokens_per_s": counted["tokens"] / runtime, "final_loss": float(trainer.state.log_history[-2]["loss"]),
            "runtime": runtime, "steps_timed": step_times(marks)}


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
    start, cpu_start = time.perf_counter(), time.thread_time()
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
    elapsed, cpu = time.perf_counter() - start, time.thread_time() - cpu_start
    return {"tokens_per_s": tokens / elapsed, "tokens_per_cpu_s": tokens / cpu, "final_loss": loss.item(),
            "runtime": elapsed}


def host_overheads(model_dir: Path, data: Path, home: Path, params: dict) -> dict[str, float]:
    """Milliseconds per step spent outside the model, each part timed alone (best of several repeats,
    so a busy machine barely moves them): data -> batch, the FLOPs bookkeeping, progress reporting."""
    import timeit

    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq

    from lora_factory.core.jobs.context import JobContext
    from lora_factory.core.storage.workspace import Workspace
    from lora_factory.plugins.text.batching import CausalCollator
    from lora_factory.plugins.text.prepare import prepare_training_data
    from lora_factory.plugins.text.presets import resolve_train_params

    p = resolve_train_params("quick", params)
    tok = AutoTokenizer.from_pretrained(model_dir)
    bs = p.batch_size
    ours_ds = prepare_training_data(tok, data, {}, p).train
    ours_collate = CausalCollator(tok.pad_token_id)
    rows = []
    for r in load_jsonl(data):
        enc = tok.apply_chat_template(r["messages"], tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
        rows.append({"input_ids": enc["input_ids"], "attention_mask": [1] * len(enc["input_ids"]),
                     "labels": [i if m else -100 for i, m in zip(enc["input_ids"], enc["assistant_masks"], strict=True)]})
    trainer_ds = Dataset.from_list(rows)
    trainer_collate = DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir),
                           LoraConfig(r=p.rank, target_modules="all-linear", task_type="CAUSAL_LM"))
    ws = Workspace(home)
    ctx = JobContext("overhead", ws, ws.run_dir("overhead"), ws.log_path("train", "overhead"))

    def best(fn, number: int = 20) -> float:  # noqa: ANN001
        return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e3

    def report_step() -> None:
        ctx.progress(1, 30, loss=1.0, lr=1e-3, epoch=0.1, tokens_per_s=1000.0, grad_norm=1.0)
        ctx.log("step 1/30 loss=1.0000 lr=0.001 epoch=0.10 tok/s=1000")
        ctx.should_stop()

    import torch

    trainable = [p for p in model.parameters() if p.requires_grad]

    def clip_and_zero(params: Any, zero: Any) -> None:
        for t in trainable:
            t.grad = torch.zeros_like(t)
        torch.nn.utils.clip_grad_norm_(params(), 1.0)
        zero()

    def zero_trainable() -> None:
        for t in trainable:
            t.grad = None

    return {
        "ours: samples -> batch": best(lambda: ours_collate([ours_ds[i] for i in range(bs)])),
        "Trainer script: samples -> batch": best(lambda: trainer_collate(trainer_ds.__getitems__(list(range(bs))))),
        "FLOPs count (Trainer: every step; ours: once)": best(lambda: model.num_parameters(exclude_embeddings=True)),
        "Trainer: clip + zero_grad over the whole model": best(lambda: clip_and_zero(model.parameters, model.zero_grad)),
        "ours: clip + zero_grad over the LoRA parameters": best(lambda: clip_and_zero(lambda: trainable, zero_trainable)),
        "ours: progress, log line, stop flag": best(report_step),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--rows", type=int, default=96)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved runs of each; medians")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads (0: torch's default). On a shared machine 1 gives steadier numbers: "
                             "threads that wait on each other slow down several times when another process runs")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from lora_factory.plugins.text.presets import PRESETS
    from lora_factory.plugins.text.tiny_model import build_tiny_text_model

    tmp = Path(tempfile.mkdtemp(prefix="lf_bench_"))
    model_dir = tmp / "model"
    build_tiny_text_model(model_dir, hidden_size=args.hidden, num_layers=args.layers)
    data = tmp / "data.jsonl"
    make_dataset(data, args.rows, seed=0)
    params = {"max_steps": args.steps, "batch_size": args.batch_size, "max_length": args.max_length,
              "save_steps": 10_000, "seed": 0, "assistant_only_loss": True, "packing": False}
    plain_params = {**PRESETS["quick"], **params}

    # warm-up: one-time kernel / allocator / import costs
    run_plain(model_dir, data, {**plain_params, "max_steps": 3})
    run_trainer(model_dir, data, tmp / "warm", {**params, "max_steps": 3})
    run_ours(model_dir, data, tmp / "ws", "warmup", {**params, "max_steps": 3})
    plain_runs, trainer_runs, ours_runs = [], [], []
    for i in range(args.repeats):  # interleaved, so a noisy neighbour hurts every side alike
        plain_runs.append(run_plain(model_dir, data, plain_params))
        trainer_runs.append(run_trainer(model_dir, data, tmp / f"tr{i}", params))
        ours_runs.append(run_ours(model_dir, data, tmp / "ws", f"nopack{i}", params))
    packed = run_ours(model_dir, data, tmp / "ws", "pack", {**params, "packing": True})
    overheads = host_overheads(model_dir, data, tmp / "ws", params)

    def median(runs: list[dict], key: str = "tokens_per_s") -> float:
        return statistics.median(r[key] for r in runs)

    plain, trainer, ours = median(plain_runs), median(trainer_runs), median(ours_runs)
    # paired steps: the same batch in ours and in the Trainer script (step 1 holds start-up costs: skipped)
    paired = [t["steps_timed"][s][0] / o["steps_timed"][s][0]
              for o, t in zip(ours_runs, trainer_runs, strict=True) for s in o["steps_timed"]
              if s > 1 and s in t["steps_timed"] and o["steps_timed"][s][0] > 0]
    ours_cpu_step = statistics.median(c for o in ours_runs for s, (c, _) in o["steps_timed"].items() if s > 1)
    tokens_per_step = statistics.median(o["tokens_per_s"] * o["train_runtime"] / o["steps"] for o in ours_runs)
    ours_tokens_per_cpu_s = tokens_per_step / ours_cpu_step
    plain_cpu = median(plain_runs, "tokens_per_cpu_s")

    print(f"model: hidden={args.hidden} layers={args.layers}  rows={args.rows} steps={args.steps} "
          f"batch={args.batch_size} max_length={args.max_length}  torch threads={torch.get_num_threads()}  "
          f"{args.repeats} interleaved runs each")
    print(f"plain transformers+peft loop : {plain:10.1f} real tokens/s  (loss {plain_runs[-1]['final_loss']:.3f})")
    print(f"plain Trainer + peft script  : {trainer:10.1f} real tokens/s  (loss {trainer_runs[-1]['final_loss']:.3f})")
    print(f"ours (train_text_adapter)    : {ours:10.1f} real tokens/s  (loss {ours_runs[-1]['final_loss']:.3f})")
    print(f"ours / Trainer script        : {ours / trainer:.2f}  (wall clock, medians; each run: "
          + ", ".join(f"{o['tokens_per_s'] / t['tokens_per_s']:.2f}" for o, t in zip(ours_runs, trainer_runs,
                                                                                    strict=True)) + ")")
    print(f"ours / plain loop            : {ours / plain:.2f}  (wall clock, medians)")
    print(f"ours / Trainer script, CPU   : {statistics.median(paired):.2f}  (CPU time per step, the same batches "
          f"paired: median of {len(paired)} steps)")
    print(f"ours / plain loop, CPU       : {ours_tokens_per_cpu_s / plain_cpu:.2f}  (real tokens per CPU second)")
    step_ms = statistics.median(c for t in trainer_runs for s, (c, _) in t["steps_timed"].items() if s > 1) * 1e3
    print(f"per step outside the model (a Trainer-script step takes {step_ms:.1f} ms of CPU here):")
    for name, ms in overheads.items():
        print(f"    {name:48s} {ms:7.3f} ms")
    print(f"ours with packing            : {packed['tokens_per_s']:10.1f} real tokens/s  "
          f"({packed['train_rows']} packed blocks from {ours_runs[-1]['train_rows']} rows)")
    print(f"packing / no packing         : {packed['tokens_per_s'] / ours:.2f}")


if __name__ == "__main__":
    main()
