"""A text LoRA / QLoRA training run through transformers' Trainer.

Why Trainer + our collator (not TRL): we control the loss mask (assistant tokens only), packing
without cross-sample attention, and the EOS token; checkpoints, resume, gradient accumulation,
mixed precision and schedulers come from Trainer. Progress, logs and cancel go through ``ctx``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from lora_factory.core.errors import LoRAFactoryError
from lora_factory.core.workspace import write_text_atomic


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


def _make_callback(ctx: Any, counter: _CountingCollator, history: list[dict[str, Any]], flags: dict[str, Any]) -> Any:
    from transformers import TrainerCallback

    class ProgressCallback(TrainerCallback):
        """Forwards every logged step to ``ctx.progress`` and turns ``ctx.should_stop()`` into a stop."""

        def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
            flags["t0"] = time.perf_counter()
            flags["tokens0"] = counter.tokens
            flags["start_step"] = state.global_step

        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
            logs = logs or {}
            if "loss" not in logs:
                if "eval_loss" in logs:
                    ctx.log(f"step {state.global_step}: eval_loss={logs['eval_loss']:.4f}")
                    flags["eval_loss"] = float(logs["eval_loss"])
                return
            elapsed = max(time.perf_counter() - flags.get("t0", time.perf_counter()), 1e-9)
            tps = (counter.tokens - flags.get("tokens0", 0)) / elapsed
            record = {
                "step": state.global_step,
                "loss": float(logs["loss"]),
                "lr": float(logs.get("learning_rate", 0.0)),
                "epoch": float(logs.get("epoch", state.epoch or 0.0)),
                "grad_norm": None if logs.get("grad_norm") is None else float(logs["grad_norm"]),
                "tokens_per_s": round(tps, 2),
            }
            history.append(record)
            ctx.progress(state.global_step, state.max_steps, loss=record["loss"], lr=record["lr"],
                         epoch=record["epoch"], tokens_per_s=record["tokens_per_s"], grad_norm=record["grad_norm"])
            ctx.log(f"step {state.global_step}/{state.max_steps} loss={record['loss']:.4f} "
                    f"lr={record['lr']:.3g} epoch={record['epoch']:.2f} tok/s={tps:.0f}")
            self._check_stop(state, control)  # on_log runs before the save decision of the same step

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
            self._check_stop(state, control)
            return control

        def _check_stop(self, state, control) -> None:  # noqa: ANN001
            if not flags["stopped"] and ctx.should_stop():
                flags["stopped"] = True
                control.should_training_stop = True
                control.should_save = True  # a checkpoint to resume from
                ctx.log(f"停止要求を受けました。ステップ {state.global_step} で保存します / stop requested at step "
                        f"{state.global_step}: saving")

    return ProgressCallback()


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
    import torch
    from transformers import TrainingArguments

    bf16 = device == "cuda" and torch.cuda.is_bf16_supported()
    # transformers 5 renamed gradient_checkpointing to activation_checkpointing (the old name warns)
    ckpt = "activation_checkpointing" if "activation_checkpointing" in TrainingArguments.__dataclass_fields__ \
        else "gradient_checkpointing"
    checkpointing = {ckpt: params.gradient_checkpointing,
                     f"{ckpt}_kwargs": {"use_reentrant": False} if params.gradient_checkpointing else None}
    return TrainingArguments(
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

    from lora_factory.plugins.text.batching import CausalCollator
    from lora_factory.plugins.text.lean_trainer import lean_trainer_class
    from lora_factory.plugins.text.loading import load_causal_lm, load_tokenizer, pick_device
    from lora_factory.plugins.text.model_card import library_versions, render_model_card
    from lora_factory.plugins.text.prepare import prepare_training_data, result_fields, token_cache_root
    from lora_factory.plugins.text.presets import resolve_train_params

    params = resolve_train_params(str(spec.get("preset", "standard")), spec.get("params") or {})
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
    history: list[dict[str, Any]] = []
    flags: dict[str, Any] = {"stopped": False}
    trainer = lean_trainer_class()(  # the Trainer, minus three walks over the whole model per step
        model=model, args=args, train_dataset=_ListDataset(train_items),
        eval_dataset=_ListDataset(eval_items) if eval_items else None,
        data_collator=counter, processing_class=tokenizer,
        callbacks=[_make_callback(ctx, counter, history, flags)],
    )
    # our callback already writes one readable line per step; the printer would add a raw dict per log
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    resume = str(ctx.resume_checkpoint) if getattr(ctx, "resume_checkpoint", None) else None
    if resume:
        ctx.log(f"resume from {resume}")
    out = trainer.train(resume_from_checkpoint=resume)

    eval_loss = flags.get("eval_loss")
    if eval_items and not flags["stopped"]:
        eval_loss = float(trainer.evaluate()["eval_loss"])
    elapsed = max(time.perf_counter() - flags.get("t0", time.perf_counter()), 1e-9)
    result = {
        "final_loss": history[-1]["loss"] if history else None,
        "first_loss": history[0]["loss"] if history else None,
        "eval_loss": eval_loss,
        "perplexity": math.exp(min(eval_loss, 50.0)) if eval_loss is not None else None,
        "train_runtime": round(float(out.metrics.get("train_runtime", elapsed)), 3),
        "tokens_per_s": round((counter.tokens - flags.get("tokens0", 0)) / elapsed, 2),
        "steps": int(trainer.state.global_step),
        "max_steps": int(trainer.state.max_steps),
        "stopped": bool(flags["stopped"]),
        "train_rows": len(train_items),
        "eval_rows": len(eval_items),
        "trainable_parameters": int(trainable),
        **result_fields(prepared.report),
    }
    _save_outputs(Path(ctx.output_dir), model, tokenizer, spec, params, result, library_versions(), render_model_card)
    ctx.log(f"saved adapter to {ctx.output_dir}")
    return result


def _save_outputs(out_dir: Path, model: Any, tokenizer: Any, spec: dict[str, Any], params: Any,
                  result: dict[str, Any], versions: dict[str, str], render: Any) -> None:
    """Adapter (safetensors), tokenizer with its chat template, training_config.json and the model card."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))
    config = {
        "modality": "text",
        "preset": spec.get("preset"),
        "params": params.model_dump(),
        "base_model": spec.get("base_model_ref") or str(spec.get("base_model")),
        "dataset": spec.get("dataset_ref") or str(spec.get("dataset")),
        "dataset_options": spec.get("dataset_options") or {},
        "output_name": spec.get("output_name"),
        "result": result,
        "versions": versions,
    }
    write_text_atomic(out_dir / "training_config.json", json.dumps(config, ensure_ascii=False, indent=2))
    card = render(
        title=str(spec.get("output_name") or out_dir.name),
        base_model=config["base_model"],
        dataset=config["dataset"],
        params=params.model_dump(),
        metrics={k: result[k] for k in ("final_loss", "eval_loss", "perplexity", "steps", "tokens_per_s",
                                        "train_runtime", "stopped")},
        versions=versions,
    )
    write_text_atomic(out_dir / "README.md", card)
