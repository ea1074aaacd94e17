"""A text LoRA / QLoRA training run through transformers' Trainer (SFT; the other methods: :mod:`pref_train`).

Why Trainer + our collator (not TRL): we control the loss mask (assistant tokens only), packing
without cross-sample attention, and the EOS token; checkpoints, resume, gradient accumulation,
mixed precision and schedulers come from Trainer. Progress, logs and cancel go through ``ctx``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from lora_factory.kit import dist
from lora_factory.plugins.text.strategy import strategy_arguments
from lora_factory.plugins.text.train_common import check_paths, save_outputs, training_argument_values


class _ListDataset:
    """A map-style dataset over pre-tokenised rows (the Trainer only needs len and getitem)."""

    def __init__(self, items: list[dict[str, list[int]]]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        return self.items[i]


class _CountingCollator:
    """Counts the real (non-pad) tokens that went into training, for tokens/s."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.tokens = 0

    def __call__(self, features: list[dict[str, list[int]]]) -> dict[str, Any]:
        self.tokens += sum(len(f["input_ids"]) for f in features)
        return self.inner(features)


def prepare_items(tokenizer: Any, dataset: Path, options: dict[str, Any], params: Any,
                  cache_root: Path | None = None, log: Any = None) -> tuple[Any, Any]:
    """Rows -> train / eval datasets (packed when asked). Shared by the benchmark; see
    :func:`~lora_factory.plugins.text.prepare.prepare_training_data` for the report."""
    from lora_factory.plugins.text.prepare import prepare_training_data

    prepared = prepare_training_data(tokenizer, dataset, options, params, cache_root, log)
    return prepared.train, prepared.eval or []


def training_arguments(params: Any, output_dir: Path, device: str, has_eval: bool,
                       extra: dict[str, Any] | None = None) -> Any:
    """The TrainingArguments of a run (shared with the benchmark's plain-Trainer baseline, so the
    two compare like for like); ``extra``: the multi-device strategy's (:mod:`strategy`)."""
    from transformers import TrainingArguments

    return TrainingArguments(**training_argument_values(params, output_dir, device, has_eval), **(extra or {}))


def train_text_adapter(spec: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Train a LoRA adapter into ``ctx.output_dir``; see the hook contract in ``core/hookspecs.py``."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import set_seed

    from lora_factory.kit.trainer import TrainerBridge
    from lora_factory.plugins.text.batching import CausalCollator
    from lora_factory.plugins.text.lean_trainer import lean_trainer_class
    from lora_factory.plugins.text.loading import load_causal_lm, load_tokenizer, pick_device
    from lora_factory.plugins.text.prepare import prepare_training_data, result_fields, token_cache_root
    from lora_factory.plugins.text.presets import read_train_params

    params = read_train_params(spec.get("params") or {})
    if params.method != "sft":  # DPO, KTO, ORPO, SimPO, GRPO: TRL's trainers
        from lora_factory.plugins.text.pref_train import train_with_trl

        return train_with_trl(spec, ctx, params)
    base, dataset = check_paths(spec)
    trust = bool(spec.get("trust_remote_code", False))
    set_seed(params.seed)
    device = pick_device()
    ctx.log(f"base={base} dataset={dataset.name} device={device} preset={spec.get('preset')}")

    tokenizer = load_tokenizer(base, trust, ctx.log)
    with dist.main_first():  # several ranks: rank 0 fills the token cache, the others read it
        prepared = prepare_training_data(tokenizer, dataset, spec.get("dataset_options") or {}, params,
                                         token_cache_root(ctx), ctx.log)
    train_items, eval_items = prepared.train, prepared.eval or []
    ctx.log(f"train rows={len(train_items)} eval rows={len(eval_items)} packing={params.packing}")

    model = load_causal_lm(base, params.quantization, trust, device)
    model.config.use_cache = False
    if params.quantization == "4bit":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=params.gradient_checkpointing)
        n4 = sum(1 for m in model.modules() if type(m).__name__ == "Linear4bit")
        ctx.log(f"quantization=4bit (nf4): {n4} Linear4bit layers")
    lora = LoraConfig(
        r=params.rank, lora_alpha=params.alpha, lora_dropout=params.dropout,
        target_modules=params.target_modules, task_type="CAUSAL_LM", bias="none",
    )
    model = get_peft_model(model, lora)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    ctx.log(f"trainable parameters: {trainable}")

    args = training_arguments(params, Path(ctx.checkpoint_dir), device, has_eval=bool(eval_items),
                              extra=strategy_arguments(params, Path(ctx.run_dir), ctx.log))
    counter = _CountingCollator(CausalCollator(tokenizer.pad_token_id))
    bridge = TrainerBridge(ctx, token_counter=lambda: counter.tokens)
    trainer = lean_trainer_class()(  # the Trainer, minus three walks over the whole model per step
        model=model, args=args, train_dataset=_ListDataset(train_items),
        eval_dataset=_ListDataset(eval_items) if eval_items else None,
        data_collator=counter, processing_class=tokenizer,
        callbacks=[bridge.callback()],
    )
    # our callback already writes one readable line per step; the printer would add a raw dict per log
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    resume = str(ctx.resume_checkpoint) if ctx.resume_checkpoint else None
    if resume:
        ctx.log(f"resume from {resume}")
    out = trainer.train(resume_from_checkpoint=resume)

    eval_loss = bridge.eval_loss
    if eval_items and not bridge.stopped:
        eval_loss = float(trainer.evaluate()["eval_loss"])
    elapsed = bridge.elapsed()
    history = bridge.history
    result = {
        "final_loss": history[-1]["loss"] if history else None,
        "first_loss": history[0]["loss"] if history else None,
        "eval_loss": eval_loss,
        "perplexity": math.exp(min(eval_loss, 50.0)) if eval_loss is not None else None,
        "train_runtime": round(float(out.metrics.get("train_runtime", elapsed)), 3),
        "tokens_per_s": round(bridge.tokens_per_s(), 2),
        "steps": int(trainer.state.global_step),
        "max_steps": int(trainer.state.max_steps),
        "stopped": bool(bridge.stopped),
        "train_rows": len(train_items),
        "eval_rows": len(eval_items),
        "trainable_parameters": int(trainable),
        **result_fields(prepared.report),
    }
    if dist.is_main_process():  # several ranks: rank 0 alone writes the adapter
        save_outputs(Path(ctx.output_dir), model, tokenizer, spec, params, result)
        ctx.log(f"saved adapter to {ctx.output_dir}")
    dist.barrier()
    return result
