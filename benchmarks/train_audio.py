"""Throughput of LoRA Factory's TTS LoRA training against a plain transformers + peft loop, and the
synthesis real-time factor and time to first chunk.

In one run, on the same tiny Llasa-layout model, the same cached codec tokens and the same
hyper-parameters: (1) our train job (the audio plugin's ``train`` hook) tokens/s divided by a plain
loop's tokens/s; (2) streamed synthesis of a three-sentence text with the trained adapter: seconds to
the first audio chunk, to the whole utterance, and the real-time factor (compute seconds / audio seconds).

    .venv/bin/python benchmarks/train_audio.py [--clips 24] [--steps 40] [--batch 4] [--hidden 64]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TEXTS = ["こんにちは。", "今日はいい天気ですね。", "1,100円です。", "東京に行きます。", "ありがとうございます。",
         "雨が降っています。", "明日は晴れるでしょう。", "音声合成のデータを作ります。"]
SPEECH = "こんにちは。今日はいい天気ですね。明日は東京に行きます。"


def make_ctx(home: Path, name: str):
    from lora_factory.core.jobs.context import JobContext
    from lora_factory.core.storage.workspace import Workspace

    ws = Workspace(home)
    ws.ensure(["audio"])
    return JobContext(name, ws, home / "runs" / name, home / "logs" / f"{name}.log", kind="train", modality="audio")


def run_ours(model: Path, data: Path, home: Path, params: dict) -> dict:
    from lora_factory.plugins import audio as plugin

    spec = plugin.resolve_train_spec(modality="audio", spec={"base_model": str(model), "dataset": str(data),
                                                             "preset": "quick", "params": params,
                                                             "output_name": "bench"})
    ctx = make_ctx(home, "bench-ours")
    result = plugin.train(modality="audio", spec=spec, ctx=ctx)
    return {"tokens_per_s": result["tokens_per_s"], "final_loss": result["final_loss"], "adapter": ctx.output_dir,
            "steps": result["steps"], "seconds": result["train_seconds"]}


def run_plain(model_dir: Path, data: Path, params: dict) -> dict:
    """A plain transformers + peft loop over the same cached codec tokens (the baseline)."""
    import numpy as np
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lora_factory.plugins.audio.dataset_formats import read_clip_list
    from lora_factory.plugins.audio.llasa import LlasaLayout

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    clips = read_clip_list(data).clips
    cache = next((data / ".cache").glob("codes-*.npz"))
    with np.load(cache) as npz:
        codes = [npz[f"c{i}"] for i in range(len(clips))]
    layout = LlasaLayout.from_tokenizer(tokenizer, 256)
    examples = [layout.training_example(tokenizer, c.text, k) for c, k in zip(clips, codes)]
    torch.manual_seed(params["seed"])
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=params["lora_r"], lora_alpha=params["lora_alpha"], lora_dropout=0.0,
                                             target_modules="all-linear", task_type="CAUSAL_LM"))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=params["learning_rate"])
    model.train()
    tokens = 0
    started = time.perf_counter()
    rng = np.random.default_rng(0)
    for _ in range(params["max_steps"]):
        batch = [examples[i] for i in rng.choice(len(examples), params["batch_size"], replace=False)]
        width = max(len(e["input_ids"]) for e in batch)
        ids = torch.full((len(batch), width), tokenizer.pad_token_id)
        labels = torch.full((len(batch), width), -100)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, e in enumerate(batch):
            ids[row, :len(e["input_ids"])] = torch.tensor(e["input_ids"])
            labels[row, :len(e["labels"])] = torch.tensor(e["labels"])
            mask[row, :len(e["input_ids"])] = 1
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        tokens += int(mask.sum())
    return {"tokens_per_s": round(tokens / (time.perf_counter() - started), 1), "final_loss": round(float(loss.detach()), 5)}


def run_synthesis(model: Path, adapter: Path, max_seconds: float) -> dict:
    from lora_factory.core.inference.session import InferenceSession
    from lora_factory.plugins.audio.inference import speech_events

    session = InferenceSession()
    session.outputs_dir = adapter.parent / "outputs"
    request = {"task": "speech", "base_model": str(model), "adapter": str(adapter), "stream": True,
               "input": {"text": SPEECH}, "params": {"seed": 0, "max_seconds_per_sentence": max_seconds}}
    list(speech_events(dict(request, input={"text": "はい。"}), session))  # load once, as the worker does
    started = time.perf_counter()
    first = None
    meta = {}
    for event in speech_events(request, session):
        if event.get("chunk") and first is None:
            first = time.perf_counter() - started
        if event.get("path"):
            meta = event["meta"]
    total = time.perf_counter() - started
    return {"time_to_first_chunk_s": round(first or total, 3), "total_s": round(total, 3),
            "audio_s": meta.get("seconds"), "rtf": round(total / meta["seconds"], 3) if meta.get("seconds") else None,
            "chunks": meta.get("chunks")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=2.0, help="clip length")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--speech-seconds", type=float, default=3.0, help="cap per synthesised sentence")
    args = parser.parse_args()

    from lora_factory.plugins.audio.tiny_model import build_tiny_tts_model
    from tests.audio.synthetic import write_clip_dataset

    work = Path(tempfile.mkdtemp(prefix="lf-bench-audio-"))
    try:
        home = work / "ws"
        model = home / "models" / "audio" / "tiny-tts"
        build_tiny_tts_model(model, hidden_size=args.hidden, num_layers=args.layers)
        data = write_clip_dataset(home / "datasets" / "audio" / "voice",
                                  [TEXTS[i % len(TEXTS)] for i in range(args.clips)], seconds=args.seconds)
        params = {"max_steps": args.steps, "batch_size": args.batch, "sample_every": 0, "save_every": 0,
                  "lora_r": 8, "lora_alpha": 16, "learning_rate": 5e-3, "seed": 42, "lora_dropout": 0.0,
                  "sample_max_seconds": 0.5}
        # warm-up: encodes the codec tokens into the dataset's cache, so both loops read the same tokens
        run_ours(model, data, work / "warm", dict(params, max_steps=2))
        # the two loops back to back, several rounds; the median of the per-round ratios resists the
        # drift of a shared CPU better than either loop's best run
        ours_runs, plain_runs = [], []
        for round_ in range(args.rounds):
            plain_runs.append(run_plain(model, data, params))
            ours_runs.append(run_ours(model, data, work / f"ours{round_}", params))
        ratios = sorted(o["tokens_per_s"] / p["tokens_per_s"] for o, p in zip(ours_runs, plain_runs))
        ours = ours_runs[-1]
        synth = run_synthesis(model, ours["adapter"], args.speech_seconds)
        report = {
            "device": "cpu", "clips": args.clips, "steps": args.steps, "batch": args.batch, "hidden": args.hidden,
            "ours_tokens_per_s": [r["tokens_per_s"] for r in ours_runs],
            "plain_tokens_per_s": [r["tokens_per_s"] for r in plain_runs],
            "ratio_ours_over_plain_median": round(ratios[len(ratios) // 2], 3),
            "ratios": [round(r, 3) for r in ratios],
            "synthesis": synth,
        }
        print(json.dumps(report, indent=2, ensure_ascii=False))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
