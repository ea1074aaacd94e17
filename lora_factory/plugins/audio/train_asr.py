"""Whisper LoRA (ASR), as peft's Whisper example does it: LoRA on the attention projections, labels
= the transcript with Whisper's prefix tokens, loss on the text. A held-out split (``eval_fraction``)
is transcribed before and after training: CER / WER of the base vs the adapter is the result.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lora_factory.kit import dist, presets
from lora_factory.plugins.audio.asr import WHISPER_RATE, WhisperModel
from lora_factory.plugins.audio.audio_io import read_audio
from lora_factory.plugins.audio.dataset_formats import read_clip_list
from lora_factory.plugins.audio.dataset_inspect import check_clips
from lora_factory.plugins.audio.metrics import corpus_rates
from lora_factory.plugins.audio.presets import AudioTrainParams
from lora_factory.plugins.audio.train_tts import (
    TrainingDataError,
    lora_config,
    lr_at,
    planned_loader,
    rank_batch,
    weighted,
)

WHISPER_TARGETS = ["q_proj", "v_proj"]


def split_eval(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Deterministic train / held-out indices (at least one of each when n >= 2 and fraction > 0)."""
    order = np.random.default_rng(seed).permutation(n).tolist()
    held = 0 if fraction <= 0 or n < 2 else max(1, int(round(n * fraction)))
    return sorted(order[held:]), sorted(order[:held])


def collate_whisper(chosen: list[tuple[np.ndarray, list[int]]]) -> dict[str, Any]:
    """Log-mel features stacked; labels right-padded with -100 (ignored by the loss)."""
    import torch

    width = max(len(lab) for _, lab in chosen)
    labels = torch.full((len(chosen), width), -100, dtype=torch.long)
    for row, (_, lab) in enumerate(chosen):
        labels[row, :len(lab)] = torch.tensor(lab)
    return {"input_features": torch.tensor(np.stack([f for f, _ in chosen])), "labels": labels}


def label_tokens(items: list[tuple[np.ndarray, list[int]]]) -> int:
    """The label tokens Whisper's loss averages over."""
    return sum(len(labels) for _, labels in items)


def evaluate_rates(whisper: WhisperModel, items: list[tuple[np.ndarray, str]], language: str) -> dict[str, float]:
    pairs = [(whisper.transcribe(w, WHISPER_RATE, language=language, timestamps=False).text, ref) for w, ref in items]
    return corpus_rates(pairs) if pairs else {}


def train_asr_adapter(spec: dict[str, Any], ctx: Any, make_reporter: Callable[..., Any], *,
                      device: str = "cpu", dtype: Any = None) -> dict[str, Any]:
    import torch
    from peft import get_peft_model, set_peft_model_state_dict

    from lora_factory.kit import loop

    params = presets.validate_params(AudioTrainParams, spec["params"])  # resolved by resolve_train_spec
    base = Path(spec["base_model"])
    root = Path(spec["dataset"])
    torch.manual_seed(params.seed)
    listing = read_clip_list(root)
    clips, problems, _ = check_clips(root, listing, min_seconds=0.1, max_seconds=min(30.0, params.max_clip_seconds * 2),
                                     require_text=True)
    if not clips:
        raise TrainingDataError("no clip with a transcript under 30 s")
    waves = [read_audio(c.path_in(root), WHISPER_RATE)[0] for c in clips]
    train_idx, eval_idx = split_eval(len(clips), params.eval_fraction, params.seed)
    whisper = WhisperModel.load(base, device=device)
    processor = whisper.processor
    processor.tokenizer.set_prefix_tokens(language=params.language, task="transcribe", predict_timestamps=False)
    held_out = [(waves[i], clips[i].text) for i in eval_idx]
    before = evaluate_rates(whisper, held_out, params.language) if dist.is_main_process() else {}
    if before:
        ctx.log(f"held-out before training: CER {before['cer']:.3f} WER {before['wer']:.3f} ({len(held_out)} clips)")

    start_id = whisper.model.config.decoder_start_token_id
    examples = []
    for i in train_idx:
        features = processor.feature_extractor(waves[i], sampling_rate=WHISPER_RATE,
                                               return_tensors="np").input_features[0]
        labels = processor.tokenizer(clips[i].text).input_ids
        if labels and labels[0] == start_id:
            labels = labels[1:]  # the model prepends the start token itself
        examples.append((features, labels))
    targets = params.target_modules if params.target_modules != ["q_proj", "k_proj", "v_proj", "o_proj"] \
        else WHISPER_TARGETS
    # no task type (as peft's Whisper example): PeftModelForSeq2SeqLM passes input_ids Whisper does not take
    config = lora_config(params.model_copy(update={"target_modules": targets}), task_type=None)
    model = get_peft_model(whisper.model, config)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=params.learning_rate, weight_decay=params.weight_decay)
    accelerator = loop.make_accelerator(device, "no")  # Whisper loads and trains in fp32 (``dtype`` unused)
    loader, batches = planned_loader(examples, params)
    model, optimizer = accelerator.prepare(model, optimizer, device_placement=[False, True])
    model = loop.without_ddp(accelerator, model)  # several ranks: gradients synced below, once per step
    main = accelerator.is_main_process

    def save_checkpoint(folder: Path) -> None:
        accelerator.unwrap_model(model).save_pretrained(folder)
        torch.save(optimizer.state_dict(), folder / "optimizer.pt")

    reporter = make_reporter(max_steps=params.max_steps, save_every=params.save_every, save_fn=save_checkpoint)
    start = reporter.resume_step()
    if start:
        from safetensors.torch import load_file

        checkpoint = Path(ctx.resume_checkpoint)
        set_peft_model_state_dict(accelerator.unwrap_model(model), load_file(str(checkpoint / "adapter_model.safetensors")))
        optimizer.load_state_dict(torch.load(checkpoint / "optimizer.pt", weights_only=True))
    started = time.perf_counter()
    loss_value = float("nan")
    stopped = False
    step = start
    micro_batches = loop.micro_batches(loader, batches, skip=start * params.gradient_accumulation)
    for step in range(start + 1, params.max_steps + 1):
        lr = lr_at(step, params.max_steps, params.learning_rate, params.warmup_ratio)
        for group in optimizer.param_groups:
            group["lr"] = lr
        total = 0.0
        for _ in range(params.gradient_accumulation):
            _, items = next(micro_batches)
            batch, weight = rank_batch(items, collate_whisper, label_tokens, accelerator.device)
            loss = weighted(model(**batch).loss, weight, params.gradient_accumulation)
            accelerator.backward(loss)
            total += float(loss.detach())
        loop.sync_gradients(accelerator, trainable)
        accelerator.clip_grad_norm_(trainable, params.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss_value = loop.mean_everywhere(accelerator, total)
        if loop.stop_everywhere(accelerator, main and reporter.step(step, loss_value, lr=lr)):
            stopped = True
            break
    elapsed = time.perf_counter() - started
    model.eval()
    after: dict[str, float] = {}
    if main:
        after = evaluate_rates(WhisperModel(model=model, processor=processor, device=device), held_out,
                               params.language)
        if after:
            ctx.log(f"held-out after training: CER {after['cer']:.3f} WER {after['wer']:.3f}")
        accelerator.unwrap_model(model).save_pretrained(Path(ctx.output_dir))
        processor.save_pretrained(Path(ctx.output_dir))  # the adapter folder opens with WhisperProcessor too
    accelerator.wait_for_everyone()
    return {
        "final_loss": None if math.isnan(loss_value) else round(loss_value, 5),
        "steps": step, "stopped": stopped, "clips": len(train_idx), "held_out_clips": len(eval_idx),
        "skipped_clips": len(problems), "train_seconds": round(elapsed, 2),
        "cer_before": before.get("cer"), "wer_before": before.get("wer"),
        "cer_after": after.get("cer"), "wer_after": after.get("wer"),
        "family": "whisper", "task": "asr",
    }
