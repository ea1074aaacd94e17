"""What every text training method shares (SFT through the Trainer, the preference methods through TRL): the
path checks, the TrainingArguments values, and how an adapter folder is written. Its own module so that
``train`` and ``pref_train`` both import it and neither imports the other."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lora_factory.kit import LoRAFactoryError


def check_paths(spec: dict[str, Any]) -> tuple[Path, Path]:
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


USAGE = """from transformers import AutoModelForCausalLM, AutoTokenizer
from peft import PeftModel
base = AutoModelForCausalLM.from_pretrained({base})
model = PeftModel.from_pretrained(base, "<this folder>")
tokenizer = AutoTokenizer.from_pretrained("<this folder>")"""


SFT_CARD_METRICS = ("final_loss", "eval_loss", "perplexity", "steps", "tokens_per_s", "train_runtime", "stopped")


def save_outputs(out_dir: Path, model: Any, tokenizer: Any, spec: dict[str, Any], params: Any,
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
