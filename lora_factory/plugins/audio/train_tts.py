"""LoRA training of the codec LM (Llasa layout): prompt = normalised text [+ speaker], target = the
clip's codec tokens, loss on the target only.

A hand-written loop (not the HF Trainer): a sample utterance every N steps needs the model between
steps, the codec tokens are already cached tensors, and the loop stays as fast as a plain
transformers + peft loop (``benchmarks/train_audio.py`` measures the ratio). Progress, cancel and
checkpoints go through the kit's step reporter; the data order is a pure function of the step, so a
resumed run sees the same batches it would have seen.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lora_factory.kit import dist, presets
from lora_factory.plugins.audio.audio_io import write_audio
from lora_factory.plugins.audio.codec import codec_folder_of, load_codec
from lora_factory.plugins.audio.dataset_formats import read_clip_list
from lora_factory.plugins.audio.dataset_inspect import check_clips
from lora_factory.plugins.audio.llasa import LlasaLayout
from lora_factory.plugins.audio.presets import AudioTrainParams
from lora_factory.plugins.audio.speech_params import SpeechParams
from lora_factory.plugins.audio.synthesis import TTSModel, synthesize
from lora_factory.plugins.audio.text_norm import NormalizationOptions, UserDictionary
from lora_factory.plugins.audio.tts_data import build_examples, collate, encode_clips

TRAIN_STATE = "train_state.json"


class TrainingDataError(ValueError):
    """No usable clip (no transcripts, all too long ...): the message says which."""


def epoch_batches(order_seed: int, n: int, batch: int, epoch: int) -> list[list[int]]:
    """The example indices of each micro-batch of ``epoch`` (epochs reshuffled with seed + epoch)."""
    perm = np.random.default_rng(order_seed + epoch).permutation(n)
    return [perm[start:start + batch].tolist() for start in range(0, n, batch)]


def planned_loader(examples: list[Any], params: AudioTrainParams) -> tuple[Any, Any]:
    """The examples in :func:`epoch_batches` order as a loader of *global* batches (lists of examples:
    per device × devices, the same on every rank; :func:`rank_batch` takes this rank's share) and its plan."""
    from lora_factory.kit import dist, loop

    size = params.batch_size * dist.world_size()
    batches = loop.PlannedBatches(lambda epoch: epoch_batches(params.seed, len(examples), size, epoch), size)
    return loop.data_loader(examples, batches), batches


def rank_batch(items: list[Any], collate_fn: Callable[[list[Any]], Any], loss_items: Callable[[list[Any]], int],
               device: Any) -> tuple[dict[str, Any], float]:
    """This rank's share of a global micro-batch, collated onto ``device``, and the weight of its mean loss
    (by loss tokens, so N ranks train the global batch's token mean, as one process would). One process:
    the whole batch, weight 1."""
    from lora_factory.kit import dist, loop

    if dist.world_size() == 1:
        return loop.to_device(collate_fn(items), device), 1.0
    local, _, empty = dist.batch_share(items)
    weight = 0.0 if empty else dist.share_weight(loss_items(local), loss_items(items))
    return loop.to_device(collate_fn(local), device), weight


def causal_loss_tokens(items: list[dict[str, list[int]]]) -> int:
    """The tokens a causal LM's loss averages over (labels after the shift, -100 left out)."""
    return sum(sum(1 for t in item["labels"][1:] if t != -100) for item in items)


def weighted(loss: Any, weight: float, accumulation: int) -> Any:
    return loss / accumulation if weight == 1.0 else loss * (weight / accumulation)


def lora_config(params: AudioTrainParams, task_type: str | None = "CAUSAL_LM") -> Any:
    from peft import LoraConfig

    return LoraConfig(r=params.lora_r, lora_alpha=params.lora_alpha, lora_dropout=params.lora_dropout,
                      target_modules=params.target_modules, task_type=task_type, bias="none")


def lr_at(step: int, max_steps: int, base: float, warmup_ratio: float) -> float:
    warmup = int(max_steps * warmup_ratio)
    if warmup and step <= warmup:
        return base * step / warmup
    return base * max(0.0, (max_steps - step + 1) / max(1, max_steps - warmup))


def write_sample(tts: TTSModel, text: str, dictionary: UserDictionary, folder: Path, name: str,
                 seed: int, max_seconds: float = 8.0) -> Path:
    """One utterance of ``text`` with the model as it is now (deterministic seed, capped length)."""
    params = SpeechParams(seed=seed, max_seconds_per_sentence=max_seconds, temperature=0.8)
    chunks = [c.wave for c in synthesize(tts, text, params, dictionary)]
    wave = np.concatenate(chunks) if chunks else np.zeros(1600, np.float32)
    return write_audio(folder / f"{name}.wav", wave, tts.codec.sample_rate)


def train_tts_adapter(spec: dict[str, Any], ctx: Any, make_reporter: Callable[..., Any], *,
                      device: str = "cpu", dtype: Any = None) -> dict[str, Any]:
    import torch
    from peft import get_peft_model, set_peft_model_state_dict
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lora_factory.kit import loop

    params = presets.validate_params(AudioTrainParams, spec["params"])  # resolved by resolve_train_spec
    base = Path(spec["base_model"])
    root = Path(spec["dataset"])
    torch.manual_seed(params.seed)
    dictionary = UserDictionary.from_list(params.user_dictionary)
    norm = NormalizationOptions(latin=params.latin, user_dictionary=dictionary)

    listing = read_clip_list(root)
    clips, problems, _ = check_clips(root, listing, min_seconds=0.1, max_seconds=params.max_clip_seconds,
                                     require_text=True)
    for problem in problems[:20]:
        ctx.log(f"skip: {problem.get('file')}:{problem.get('line') or ''} {problem['reason']}")
    if not clips:
        raise TrainingDataError("no clip with a transcript within the length limit"
                                + ("" if listing.format != "recordings" else " (run 'transcribe' first)"))

    codec_folder = codec_folder_of(base)
    codec = load_codec(codec_folder, device=device)
    ctx.log(f"encoding {len(clips)} clips with {codec.name} ({codec.frame_rate:g} tokens/s)")
    with dist.main_first():  # several ranks: rank 0 encodes and caches the codes, the others read the cache
        codes = encode_clips(root, clips, codec, codec_folder, log=ctx.log, should_stop=ctx.should_stop)

    tokenizer = AutoTokenizer.from_pretrained(str(base))
    layout = LlasaLayout.from_tokenizer(tokenizer, codec.codebook_size)
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=dtype or torch.float32).to(device)
    max_tokens = int(getattr(model.config, "max_position_embeddings", 2048) or 2048)
    examples, skipped = build_examples(layout, tokenizer, clips, codes, norm,
                                       speaker_prompt=params.speaker_prompt, max_tokens=max_tokens)
    if not examples:
        raise TrainingDataError("every clip is longer than the model's context")
    if params.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    model = get_peft_model(model, lora_config(params))
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=params.learning_rate, weight_decay=params.weight_decay)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    # mixed precision (bf16 / fp16 autocast, fp16's gradient scaler) from the accelerator; the model is
    # on its device already
    accelerator = loop.make_accelerator(device, loop.mixed_precision_of(dtype))
    loader, batches = planned_loader(examples, params)
    model, optimizer = accelerator.prepare(model, optimizer, device_placement=[False, True])
    model = loop.without_ddp(accelerator, model)  # several ranks: gradients synced below, once per step
    main = accelerator.is_main_process

    def save_checkpoint(folder: Path) -> None:
        accelerator.unwrap_model(model).save_pretrained(folder)
        torch.save(optimizer.state_dict(), folder / "optimizer.pt")
        (folder / TRAIN_STATE).write_text(json.dumps({"tokens": tokens_seen}), encoding="utf-8")

    reporter = make_reporter(max_steps=params.max_steps, save_every=params.save_every, save_fn=save_checkpoint)
    start = reporter.resume_step()
    tokens_seen = 0
    if start:
        checkpoint = Path(ctx.resume_checkpoint)
        from safetensors.torch import load_file

        set_peft_model_state_dict(accelerator.unwrap_model(model), load_file(str(checkpoint / "adapter_model.safetensors")))
        optimizer.load_state_dict(torch.load(checkpoint / "optimizer.pt", weights_only=True))
        state = json.loads((checkpoint / TRAIN_STATE).read_text(encoding="utf-8"))
        tokens_seen = int(state.get("tokens", 0))
        ctx.log(f"resumed from {checkpoint.name} (step {start})")

    sample_dir = Path(ctx.sample_dir)
    samples: list[str] = []

    def sample(step: int) -> None:
        model.eval()
        tts = TTSModel(model=model, tokenizer=tokenizer, layout=layout, codec=codec, device=device)
        path = write_sample(tts, params.sample_text, dictionary, sample_dir, f"step-{step:06d}", params.seed,
                            params.sample_max_seconds)
        model.train()
        samples.append(str(path))
        ctx.report_sample(path, step, kind="audio", caption=params.sample_text)
        ctx.log(f"sample written: {path.name}")

    model.train()
    loss_value = float("nan")
    started = time.perf_counter()
    step_tokens = 0
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
            batch, weight = rank_batch(items, lambda chosen: collate(chosen, pad_id), causal_loss_tokens,
                                       accelerator.device)
            loss = weighted(model(**batch).loss, weight, params.gradient_accumulation)
            accelerator.backward(loss)
            total += float(loss.detach())
            n_tokens = sum(len(item["input_ids"]) for item in items)  # the global batch's
            tokens_seen += n_tokens
            step_tokens += n_tokens
        loop.sync_gradients(accelerator, trainable)
        accelerator.clip_grad_norm_(trainable, params.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss_value = loop.mean_everywhere(accelerator, total)
        elapsed = max(time.perf_counter() - started, 1e-9)
        cancel = main and reporter.step(step, loss_value, lr=lr, tokens_per_s=round(step_tokens / elapsed, 1))
        if loop.stop_everywhere(accelerator, cancel):
            stopped = True
            break
        if main and params.sample_every and step % params.sample_every == 0 and step < params.max_steps:
            sample(step)
    final_step = step
    elapsed = max(time.perf_counter() - started, 1e-9)

    out = Path(ctx.output_dir)
    final_sample = None
    if main:
        accelerator.unwrap_model(model).save_pretrained(out)
        if not stopped:
            sample(final_step)
            final_sample = samples[-1]
        (out / "samples").mkdir(parents=True, exist_ok=True)
        for path in samples:
            if Path(path).parent != out / "samples":
                shutil.copy2(path, out / "samples" / Path(path).name)
    accelerator.wait_for_everyone()
    return {
        "final_loss": None if math.isnan(loss_value) else round(loss_value, 5),
        "steps": final_step,
        "stopped": stopped,
        "clips": len(examples),
        "skipped_clips": skipped + len(problems),
        "tokens_per_s": round(step_tokens / elapsed, 1),
        "train_seconds": round(elapsed, 2),
        "codec": codec.name,
        "codebook_size": codec.codebook_size,
        "samples": [Path(p).name for p in samples],
        "final_sample": Path(final_sample).name if final_sample else None,
        "family": "llasa",
        "task": "tts",
    }
