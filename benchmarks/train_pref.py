"""DPO throughput and memory: LoRA Factory's DPO job against a plain TRL ``DPOTrainer`` script.

Same random-weight Llama, same preference pairs, same hyper-parameters, each variant in its own
process (so peak memory is that variant's alone):
  - ours: ``train_text_adapter`` with ``method=dpo`` and the JobContext a job worker builds (progress
    to metrics.jsonl and, at most every 0.25 s, to the job row; cancel polled from the job row);
  - trl: a plain script, ``DPOTrainer(model, peft_config=LoraConfig(...))`` with the TrainingArguments
    our job builds (also one model copy; TRL's per-step printer removed: ours writes its own log line);
  - trl_two_copies: the same script handed an explicit ``ref_model`` (a second copy of the base), the
    memory a setup without the adapter-disabled reference pays.

How a step is timed, the same instrument in every variant: ``DPOTrainer.training_step`` is wrapped
to note the wall clock, the process CPU time and the time spent so far in the Trainer's callbacks
(where all of our job's own per-step work runs: progress, log line, job row, cancel poll) and in
switching the model to its reference (TRL's ``use_adapter``: the adapter disabled, and back) when
each step starts; the gap to the next start is the whole step. The first ``--warmup`` steps are left out;
a run's rate is the steps after them over their time (a mean: periodic costs such as the job row's
writes count).

Speed: ours and trl take turns in one process (the imports shared, so a round takes seconds and its
two runs are close in time), the order swapped every round; ours / trl is taken per round, and its
min / median / max over the rounds is the spread. On a shared 2-core machine a step's time drifts by
+-30 % over seconds, also in CPU time; that is why rounds are short and many. Memory: one process per
variant (peak memory is that variant's alone). Also printed: the rows, pairs and tokens per step each
variant trained, whether their batches were identical step by step, and any difference in their
TrainingArguments, LoRA config, dtype or attention kernel.

    .venv/bin/python benchmarks/train_pref.py --hidden 128 --layers 2 --steps 60 --repeats 10
    .venv/bin/python benchmarks/train_pref.py --hidden 1024 --layers 12 --steps 40 --warmup 5   # on a GPU
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

QUESTIONS = ["日本の首都は?", "好きな動物は?", "一番高い山は?", "今日の天気は?", "好きな色は?", "朝ごはんは?",
             "好きな季節は?", "趣味は?", "好きな果物は?", "好きな花は?", "得意な科目は?", "行きたい国は?"]
VARIANTS = ("ours", "trl", "trl_two_copies")


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
    # eval_ratio 0: our job would otherwise hold rows out, and its batches would differ from the script's
    return {"method": "dpo", "max_steps": steps, "batch_size": 4, "learning_rate": 5e-4, "save_steps": 10_000,
            "rank": 16, "alpha": 32, "beta": 0.1, "max_length": 128, "warmup_ratio": 0.0, "lr_scheduler": "constant",
            "eval_ratio": 0.0, "logging_steps": 1, "gradient_checkpointing": False}


def peak_memory() -> float:
    """MiB: CUDA max allocated when on a GPU, else this process's peak resident set."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class StepProbe:
    """Wraps ``DPOTrainer.training_step`` (the class both variants use): when each step starts (wall, CPU, and
    the time spent so far in the Trainer's callbacks, where all of our job's own per-step work runs), its
    batch (kept as tensors, read after training: nothing syncs a GPU inside the timed loop), and once the
    trainer's set-up (arguments, LoRA config, dtype, attention, dataset sizes)."""

    def __init__(self) -> None:
        from transformers.trainer_callback import CallbackHandler
        from trl import DPOTrainer
        from trl.trainer import dpo_trainer

        self.reset()
        step, call_event, use_adapter = DPOTrainer.training_step, CallbackHandler.call_event, dpo_trainer.use_adapter
        probe = self

        def training_step(trainer: Any, model: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
            probe.marks.append((time.perf_counter(), time.process_time(), probe.callback_s, probe.switch_s))
            probe.batches.append((inputs["input_ids"], inputs["attention_mask"]))
            if not probe.setup:
                probe.setup = describe(trainer, model)
            return step(trainer, model, inputs, *args, **kwargs)

        def timed_call_event(handler: Any, *args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return call_event(handler, *args, **kwargs)
            finally:
                probe.callback_s += time.perf_counter() - t0

        @contextlib.contextmanager
        def timed_use_adapter(model: Any, adapter_name: str | None) -> Any:
            t0 = time.perf_counter()
            context = use_adapter(model, adapter_name)
            context.__enter__()
            probe.switch_s += time.perf_counter() - t0
            try:
                yield
            finally:
                t1 = time.perf_counter()
                context.__exit__(None, None, None)
                probe.switch_s += time.perf_counter() - t1

        DPOTrainer.training_step = training_step
        CallbackHandler.call_event = timed_call_event
        dpo_trainer.use_adapter = timed_use_adapter  # TRL's switch to the reference (the adapter disabled)

    def reset(self) -> None:
        self.marks: list[tuple[float, float, float, float]] = []
        self.batches: list[tuple[Any, Any]] = []
        self.setup: dict[str, Any] = {}
        self.callback_s = self.switch_s = 0.0

    def summary(self, warmup: int) -> dict[str, Any]:
        first, last = self.marks[warmup], self.marks[-1]
        steps = len(self.marks) - 1 - warmup
        real = [int(mask.sum()) for _, mask in self.batches]
        digest = hashlib.blake2b(digest_size=8)
        for ids, _ in self.batches:
            digest.update(ids.detach().cpu().numpy().tobytes())
        return {"steps": len(self.marks), "timed_steps": steps, "steps_per_s": steps / (last[0] - first[0]),
                "cpu_ms_per_step": (last[1] - first[1]) * 1000 / steps,
                "callback_ms_per_step": (last[2] - first[2]) * 1000 / steps,
                "switch_ms_per_step": (last[3] - first[3]) * 1000 / steps,
                "pairs_per_step": statistics.mean(ids.shape[0] // 2 for ids, _ in self.batches),
                "tokens_per_step": statistics.mean(real),
                "padded_tokens_per_step": statistics.mean(ids.numel() for ids, _ in self.batches),
                "batches": digest.hexdigest(), "setup": self.setup}


def describe(trainer: Any, model: Any) -> dict[str, Any]:
    """What decides a step's work, to check that both variants do the same."""
    args = {k: v for k, v in trainer.args.to_dict().items() if k not in ("output_dir", "logging_dir", "run_name")}
    peft = getattr(model, "peft_config", {}).get("default")
    lora = {} if peft is None else {k: sorted(v) if isinstance(v, set) else v for k, v in peft.to_dict().items()
                                    if k in ("r", "lora_alpha", "lora_dropout", "target_modules", "bias", "use_dora")}
    return {"args": json.loads(json.dumps(args, default=str)), "lora": lora, "dtype": str(model.dtype),
            "attention": getattr(model.config, "_attn_implementation", None), "train_rows": len(trainer.train_dataset),
            "eval_rows": len(trainer.eval_dataset) if trainer.eval_dataset is not None else 0,
            "ref_model": trainer.ref_model is not None}


def run_ours(model_dir: Path, data: Path, home: Path, steps: int) -> None:
    """A train job's hook call with the context a job worker gives it (job row, ProgressWriter, cancel poll)."""
    from lora_factory.core.jobs.context import JobContext
    from lora_factory.core.jobs.hook_call import ProgressWriter
    from lora_factory.core.jobs.store import JobStore
    from lora_factory.core.storage.workspace import Workspace
    from lora_factory.plugins.text.presets import resolve_train_spec
    from lora_factory.plugins.text.train import train_text_adapter

    ws = Workspace(home)
    spec = resolve_train_spec({"base_model": str(model_dir), "dataset": str(data), "preset": "quick", "output_name": "b",
                               "dataset_options": {"format": "preference"}, "params": params(steps)})
    store = JobStore(ws.db_path)
    job = store.create("train", "text", spec, "b", gpu=False)
    writer = ProgressWriter(store, job)
    ctx = JobContext(job, ws, ws.run_dir(job), ws.log_path("train", job), on_progress=writer, kind="train",
                     modality="text", stop_requested=lambda: bool(store.get(job)["cancel_requested_at"]))
    train_text_adapter(spec, ctx)
    writer.flush()


def run_trl(model_dir: Path, data: Path, home: Path, steps: int, two_copies: bool) -> None:
    """The plain TRL script a user would write (same values as our job's TrainingArguments)."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from transformers.trainer_callback import PrinterCallback
    from trl import DPOConfig, DPOTrainer

    from lora_factory.plugins.text.loading import pick_device, pick_dtype
    from lora_factory.plugins.text.pref_data import load_method_rows
    from lora_factory.plugins.text.presets import read_train_params, resolve_train_params
    from lora_factory.plugins.text.train_common import training_argument_values

    p = read_train_params(resolve_train_params("quick", params(steps)).model_dump())
    set_seed(p.seed)
    device = pick_device()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)

    def load() -> Any:
        return AutoModelForCausalLM.from_pretrained(model_dir, dtype=pick_dtype(device), attn_implementation="sdpa",
                                                    device_map={"": device})

    model = load()
    ref = load() if two_copies else None
    rows = load_method_rows(data, {"format": "preference"}, "dpo")
    config = DPOConfig(**training_argument_values(p, home / "trl", device, False), beta=p.method_beta(),
                       max_length=p.max_length)
    trainer = DPOTrainer(model=model, ref_model=ref, args=config, train_dataset=Dataset.from_list(rows),
                         processing_class=tokenizer,
                         peft_config=LoraConfig(r=p.rank, lora_alpha=p.alpha, lora_dropout=p.dropout,
                                                target_modules=p.target_modules, task_type="CAUSAL_LM", bias="none"))
    trainer.remove_callback(PrinterCallback)  # ours writes its own log line instead of this dict per step
    trainer.train()


def run(variant: str, root: Path, steps: int) -> None:
    model_dir, data, home = root / "model", root / "pairs.jsonl", Path(tempfile.mkdtemp(dir=root))
    if variant == "ours":
        run_ours(model_dir, data, home, steps)
    else:
        run_trl(model_dir, data, home, steps, two_copies=variant == "trl_two_copies")


def child(args: argparse.Namespace) -> None:
    """One process: ``memory``: one run of ``--variant`` (its peak memory is this process's); ``speed``: ours
    and trl taking turns, ``--repeats`` rounds, the order swapped every round (ABBA: a drift of the machine's
    speed falls on both alike), the imports shared, so a round takes seconds and its two runs are close in time."""
    import gc

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    root = Path(args.root)
    probe = StepProbe()
    if args.mode == "memory":
        run(args.variant, root, args.steps)
        print(json.dumps({"variant": args.variant, **probe.summary(args.warmup), "peak_mib": peak_memory()}))
        return
    rounds = []
    for round_ in range(args.repeats):
        runs = {}
        for variant in ("ours", "trl") if round_ % 2 == 0 else ("trl", "ours"):
            probe.reset()
            run(variant, root, args.steps)
            runs[variant] = probe.summary(args.warmup)
            gc.collect()
        rounds.append(runs)
    print(json.dumps(rounds))


def spread(values: list[float], digits: int = 3) -> str:
    return " / ".join(f"{v:.{digits}f}" for v in (min(values), statistics.median(values), max(values)))


def setup_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Keys whose values differ between two variants' set-ups (``ref_model`` differs by design)."""
    out = []
    for key in sorted(set(a) | set(b)):
        if key == "ref_model":
            continue
        if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
            out += [f"{key}.{k}: {a[key].get(k)!r} vs {b[key].get(k)!r}" for k in sorted(set(a[key]) | set(b[key]))
                    if a[key].get(k) != b[key].get(k)]
        elif a.get(key) != b.get(key):
            out.append(f"{key}: {a.get(key)!r} vs {b.get(key)!r}")
    return out


def report(memory: dict[str, dict], rounds: list[dict[str, dict]]) -> None:
    for name, r in memory.items():
        s, lora = r["setup"], r["setup"]["lora"]
        targets = sorted({t.rsplit(".", 1)[-1] for t in lora.get("target_modules") or []})
        print(f"{name:15s} trained {s['train_rows']} rows (eval {s['eval_rows']}), {r['steps']} steps of "
              f"{r['pairs_per_step']:.1f} pairs, {r['tokens_per_step']:.1f} real / {r['padded_tokens_per_step']:.1f} "
              f"padded tokens; {s['dtype']}, {s['attention']}; LoRA r={lora.get('r')} alpha={lora.get('lora_alpha')} "
              f"dropout={lora.get('lora_dropout')} on {len(lora.get('target_modules') or [])} layers ({', '.join(targets)})")
    every = [r for r in memory.values()] + [r for rnd in rounds for r in rnd.values()]
    kinds = {r["batches"] for r in every}
    print("batches identical, step by step, in every run:", "yes" if len(kinds) == 1 else f"NO ({len(kinds)} kinds)")
    for other in ("trl", "trl_two_copies"):
        diff = setup_differences(memory["ours"]["setup"], memory[other]["setup"])
        print(f"set-up ours vs {other}:", "identical" if not diff else "differs in " + "; ".join(diff))
    print(f"speed: {len(rounds)} rounds in one process, {rounds[0]['ours']['timed_steps']} steps timed per run "
          f"(after {rounds[0]['ours']['steps'] - 1 - rounds[0]['ours']['timed_steps']} warm-up); min / median / max:")
    for name in ("ours", "trl"):
        rs = [rnd[name] for rnd in rounds]
        print(f"  {name:5s} {spread([r['steps_per_s'] for r in rs])} steps/s   "
              f"{spread([r['cpu_ms_per_step'] for r in rs], 1)} CPU ms/step   "
              f"{spread([r['callback_ms_per_step'] for r in rs], 2)} ms/step in callbacks   "
              f"{spread([r['switch_ms_per_step'] for r in rs], 2)} ms/step switching to the reference")
    wall = [rnd["ours"]["steps_per_s"] / rnd["trl"]["steps_per_s"] for rnd in rounds]
    cpu = [rnd["trl"]["cpu_ms_per_step"] / rnd["ours"]["cpu_ms_per_step"] for rnd in rounds]
    print(f"  ours / trl per round: {spread(wall)} in steps/s, {spread(cpu)} in CPU time per step")
    print("memory (one process per variant): " + ", ".join(
        f"{name} {r['peak_mib']:.0f} MiB peak ({r['steps_per_s']:.2f} steps/s)" for name, r in memory.items()))
    print(f"one model copy vs two: {memory['ours']['peak_mib']:.0f} vs {memory['trl_two_copies']['peak_mib']:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=60, help="steps per run")
    parser.add_argument("--warmup", type=int, default=10, help="first steps of a run left out of the timing")
    parser.add_argument("--repeats", type=int, default=10, help="rounds of ours and trl taking turns")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--mode", choices=["memory", "speed"], help=argparse.SUPPRESS)
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps < args.warmup + 10:
        parser.error("--steps must leave at least 10 timed steps after --warmup")
    if args.mode:
        child(args)
        return
    common = ["--steps", str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads),
              "--repeats", str(max(1, args.repeats))]

    def child_output(*extra: str) -> Any:
        out = subprocess.run([sys.executable, __file__, *common, "--root", tmp, *extra],
                             capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    with tempfile.TemporaryDirectory() as tmp:
        build(Path(tmp), args.hidden, args.layers)
        memory = {v: child_output("--mode", "memory", "--variant", v) for v in VARIANTS}
        rounds = child_output("--mode", "speed")
    report(memory, rounds)


if __name__ == "__main__":
    main()
