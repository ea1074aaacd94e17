"""DPO throughput and memory: LoRA Factory's DPO job against a plain TRL ``DPOTrainer`` script.

Same random-weight Llama, same preference pairs, same hyper-parameters, each variant in its own
process (so peak memory is that variant's alone):
  - ours: ``train_text_adapter`` with ``method=dpo`` (what a train job runs: one model copy, the
    reference is the base with the adapter disabled);
  - trl: a plain script, ``DPOTrainer(model, peft_config=LoraConfig(...))`` (also one copy);
  - trl_two_copies: the same script handed an explicit ``ref_model`` (a second copy of the base), the
    memory a setup without the adapter-disabled reference pays.

Printed: optimizer steps/s (median step time after the first step), ours / trl (goal >= 1.0x), and
peak memory (CUDA: max allocated; CPU: the process's peak RSS) of each. With ``--repeats N`` every
variant runs N times, the variants taking turns (the order rotates each round, so a busy moment on a
shared machine does not land on one variant only); the median of its runs is printed.

    .venv/bin/python benchmarks/train_pref.py                       # CPU, small model
    .venv/bin/python benchmarks/train_pref.py --hidden 1024 --layers 12 --steps 20   # on a GPU
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

QUESTIONS = ["日本の首都は?", "好きな動物は?", "一番高い山は?", "今日の天気は?", "好きな色は?", "朝ごはんは?",
             "好きな季節は?", "趣味は?", "好きな果物は?", "好きな花は?", "得意な科目は?", "行きたい国は?"]


def build(root: Path, hidden: int, layers: int) -> tuple[Path, Path]:
    """A random Llama with the tiny model's tokenizer, and planted preference pairs."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from lora_factory.plugins.text.tiny_model import build_tiny_text_model

    tiny = root / "tiny"
    build_tiny_text_model(tiny, seed=0)
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2,
                         num_hidden_layers=layers, num_attention_heads=max(1, hidden // 64),
                         num_key_value_heads=max(1, hidden // 64), max_position_embeddings=1024,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    model_dir = root / "model"
    LlamaForCausalLM(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    data = root / "pairs.jsonl"
    data.write_text("".join(json.dumps({"instruction": q, "chosen": f"{q}の答えです。", "rejected": f"{q}の答えだ。"},
                                       ensure_ascii=False) + "\n" for q in QUESTIONS * 4), encoding="utf-8")
    return model_dir, data


def params(steps: int) -> dict:
    return {"method": "dpo", "max_steps": steps, "batch_size": 4, "learning_rate": 5e-4, "save_steps": 10_000,
            "rank": 16, "alpha": 32, "beta": 0.1, "max_length": 128, "warmup_ratio": 0.0, "lr_scheduler": "constant"}


def peak_memory() -> float:
    """MiB: CUDA max allocated when on a GPU, else this process's peak resident set."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_ours(model_dir: Path, data: Path, home: Path, steps: int) -> list[float]:
    from lora_factory.core.jobs.context import JobContext
    from lora_factory.core.storage.workspace import Workspace
    from lora_factory.plugins.text.presets import resolve_train_spec
    from lora_factory.plugins.text.train import train_text_adapter

    marks: list[float] = []

    class Ctx(JobContext):
        def progress(self, step, max_steps, loss=None, **metrics):  # noqa: ANN001
            marks.append(time.perf_counter())
            super().progress(step, max_steps, loss, **metrics)

    ws = Workspace(home)
    ctx = Ctx("bench", ws, ws.run_dir("bench"), ws.log_path("train", "bench"), kind="train", modality="text")
    spec = resolve_train_spec({"base_model": str(model_dir), "dataset": str(data), "preset": "quick", "output_name": "b",
                               "dataset_options": {"format": "preference"}, "params": params(steps)})
    train_text_adapter(spec, ctx)
    return marks


def run_trl(model_dir: Path, data: Path, home: Path, steps: int, two_copies: bool) -> list[float]:
    """The plain TRL script a user would write (same values as our job's TrainingArguments)."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from lora_factory.plugins.text.pref_data import load_method_rows
    from lora_factory.plugins.text.presets import read_train_params, resolve_train_params
    from lora_factory.plugins.text.train_common import training_argument_values

    p = read_train_params(resolve_train_params("quick", params(steps)).model_dump())
    device = "cuda" if __import__("torch").cuda.is_available() else "cpu"
    marks: list[float] = []

    class Marks(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
            marks.append(time.perf_counter())

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).to(device)
    ref = AutoModelForCausalLM.from_pretrained(model_dir).to(device) if two_copies else None
    rows = load_method_rows(data, {"format": "preference"}, "dpo")
    config = DPOConfig(**training_argument_values(p, home / "trl", device, False), beta=0.1, max_length=p.max_length)
    trainer = DPOTrainer(model=model, ref_model=ref, args=config, train_dataset=Dataset.from_list(rows),
                         processing_class=tokenizer, callbacks=[Marks()],
                         peft_config=LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"))
    trainer.train()
    return marks


def child(args: argparse.Namespace) -> None:
    root = Path(args.root)
    model_dir, data = root / "model", root / "pairs.jsonl"
    home = Path(tempfile.mkdtemp(dir=root))
    if args.variant == "ours":
        marks = run_ours(model_dir, data, home, args.steps)
    else:
        marks = run_trl(model_dir, data, home, args.steps, two_copies=args.variant == "trl_two_copies")
    gaps = [b - a for a, b in zip(marks, marks[1:])]
    print(json.dumps({"variant": args.variant, "steps": len(marks),
                      "steps_per_s": 1.0 / statistics.median(gaps) if gaps else None, "peak_mib": peak_memory()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each variant, taking turns")
    parser.add_argument("--variant", choices=["ours", "trl", "trl_two_copies"], help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        child(args)
        return
    variants = ["ours", "trl", "trl_two_copies"]
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as tmp:
        build(Path(tmp), args.hidden, args.layers)
        for round_ in range(max(1, args.repeats)):
            for variant in variants[round_ % 3:] + variants[:round_ % 3]:
                out = subprocess.run([sys.executable, __file__, "--variant", variant, "--root", tmp, "--steps",
                                      str(args.steps)], capture_output=True, text=True, check=True)
                runs[variant].append(json.loads(out.stdout.strip().splitlines()[-1]))
    results = {v: {"steps_per_s": statistics.median(r["steps_per_s"] for r in rs),
                   "peak_mib": max(r["peak_mib"] for r in rs),
                   "all": [round(r["steps_per_s"], 3) for r in rs]} for v, rs in runs.items()}
    for name, r in results.items():
        print(f"{name:15s} {r['steps_per_s']:.3f} steps/s (runs: {r['all']})   peak {r['peak_mib']:.0f} MiB")
    print(f"ours / trl: {results['ours']['steps_per_s'] / results['trl']['steps_per_s']:.2f}x steps/s; "
          f"one copy vs two: {results['ours']['peak_mib']:.0f} vs {results['trl_two_copies']['peak_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
