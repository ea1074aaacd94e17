"""A text LoRA / QLoRA training run through transformers' Trainer (SFT; the other methods: :mod:`pref_train`).

Why Trainer + our collator (not TRL): we control the loss mask (assistant tokens only), packing
without cross-sample attention, and the EOS token; checkpoints, resume, gradient accumulation,
mixed precision and schedulers come from Trainer. Progress, logs and cancel go through ``ctx``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from lora_factory.kit import LoRAFactoryError


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


def _check_paths(spec: dict[str, Any]) -> tuple[Path, Path]:
    base = Path(str(spec.get("base_model", "")))
    dataset = Path(str(spec.get("dataset", "")))
    if not (base / "config.json").is_file():
        raise LoRAFactoryError("MODEL_NOT_FOUND", f"ベースモデル「{base}」に config.json がありません。",
                               f"The base model '{base}' has no config.json.", 404,
                               detail={"field": "base_model", "path": str(base)})
    if not dataset.is_file():
        raise LoRAFactoryError("DATASET_NOT_FOUND", f"データセット「{dataset}」が見つかりません。",
                               f"The dataset '{dataset}' was not found.", 404,
                               detail={"field": "dataset", "path": str(dataset)})
    return base, dataset


def prepare_items(tokenizer: Any, dataset: Path, options: dict[str, Any], params: Any,
                  cache_root: Path | None = None, log: Any = None) -> tuple[Any, Any]:
    """Rows -> train / eval datasets (packed when asked). Shared by the benchmark; see
    :func:`~lora_factory.plugins.text.prepare.prepare_training_data` for the report."""
    from lora_factory.plugins.text.prepare import prepare_training_data

    prepared = prepare_training_data(tokenizer, dataset, options, params, cache_root, log)
    return prepared.train, prepared.eval or []


def training_arguments(params: Any, output_dir: Path, device: str, has_eval: bool) -> Any:
    """The TrainingArguments of a run (shared with the benchmark's plain-Trainer baseline, so the
    two compare like for like)."""
    from transformers import TrainingArguments

    return TrainingArguments(**training_argument_values(params, output_dir, device, has_eval))


def training_argument_values(params: Any, output_dir: Path, device: str, has_eval: bool) -> dict[str, Any]:
    """The keyword arguments of :func:`training_arguments`; TRL's configs (subclasses of
    TrainingArguments) take the same ones, so every method runs under the same schedule and checkpoints."""
    import torch
    from transformers import TrainingArguments

    bf16 = device == "cuda" and torch.cuda.is_bf16_supported()
    # transformers 5 renamed gradient_checkpointing to activation_checkpointing (the old name warns)
    ckpt = "activation_checkpointing" if "activation_checkpointing" in TrainingArguments.__dataclass_fields__ \
        else "gradient_checkpointing"
    checkpointing = {ckpt: params.gradient_checkpointing,
                     f"{ckpt}_kwargs": {"use_reentrant": False} if params.gradient_checkpointing else None}
    return dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=params.batch_size,
        per_device_eval_batch_size=params.batch_size,
        gradient_accumulation_steps=params.grad_accum,
        learning_rate=params.learning_rate,
        num_train_epochs=params.num_epochs,
        max_steps=params.max_steps,
        lr_scheduler_type=params.lr_scheduler,
        warmup_steps=params.warmup_ratio,  # transformers 5: a float below 1 is a ratio of the total steps
        weight_decay=params.weight_decay,
        logging_steps=params.logging_steps,
        save_strategy="steps",
        save_steps=params.save_steps,
        save_total_limit=3,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=params.save_steps if has_eval else None,
        bf16=bf16,
        fp16=device == "cuda" and not bf16 and params.quantization == "none",
        **checkpointing,
        seed=params.seed,
        data_seed=params.seed,
        report_to="none",
        remove_unused_columns=False,
        disable_tqdm=True,
        dataloader_num_workers=0,
        use_cpu=device == "cpu",
    )


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
    base, dataset = _check_paths(spec)
    trust = bool(spec.get("trust_remote_code", False))
    set_seed(params.seed)
    device = pick_device()
    ctx.log(f"base={base} dataset={dataset.name} device={device} preset={spec.get('preset')}")

    tokenizer = load_tokenizer(base, trust, ctx.log)
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

    args = training_arguments(params, Path(ctx.checkpoint_dir), device, has_eval=bool(eval_items))
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
    _save_outputs(Path(ctx.output_dir), model, tokenizer, spec, params, result)
    ctx.log(f"saved adapter to {ctx.output_dir}")
    return result


USAGE = """from transformers import AutoModelForCausalLM, AutoTokenizer
from peft import PeftModel
base = AutoModelForCausalLM.from_pretrained({base})
model = PeftModel.from_pretrained(base, "<this folder>")
tokenizer = AutoTokenizer.from_pretrained("<this folder>")"""


SFT_CARD_METRICS = ("final_loss", "eval_loss", "perplexity", "steps", "tokens_per_s", "train_runtime", "stopped")


def _save_outputs(out_dir: Path, model: Any, tokenizer: Any, spec: dict[str, Any], params: Any,
                  result: dict[str, Any], card_metrics: tuple[str, ...] = SFT_CARD_METRICS) -> None:
    """Adapter (safetensors), tokenizer with its chat template, training_config.json and the model card."""
    from lora_factory.kit.model_card import write_adapter_metadata

    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))
    base = spec.get("base_model_ref") or str(spec.get("base_model"))
    write_adapter_metadata(
        out_dir, modality="text", spec=spec, params=params.model_dump(), result=result,
        usage=USAGE.format(base=json.dumps(base, ensure_ascii=False)),
        libraries=("torch", "transformers", "peft", "bitsandbytes", "lora-factory"),
        card_metrics=card_metrics,
    )
