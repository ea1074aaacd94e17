"""DPO, KTO, ORPO, SimPO and GRPO on LoRA / QLoRA through TRL's trainers.

Why TRL (while SFT runs on our own collator): the preference losses, their reference-model
handling and GRPO's sampling loop are TRL's core work and move with the literature; we keep what
makes a run ours: the data readers (:mod:`pref_data`), the schedule and checkpoints (the same
TrainingArguments as SFT), progress / cancel / resume through the kit's TrainerBridge, and the
saved adapter folder with its model card.

One model copy: the trainers get the base model and a ``peft_config``; with no ``ref_model`` TRL
computes the reference log-probabilities (DPO, KTO, GRPO with a KL term) with the adapter disabled,
i.e. the base itself. ORPO and SimPO are reference-free.

TRL 1.16: ``DPOTrainer``, ``KTOTrainer`` and ``GRPOTrainer`` are stable; ORPO and CPO (SimPO is
``CPOConfig(loss_type="simpo", cpo_alpha=0)``) live in ``trl.experimental``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

# the Trainer's log keys -> the names the job view and metrics.jsonl use
METRIC_NAMES = {
    "rewards/chosen": "reward_chosen", "rewards/rejected": "reward_rejected", "rewards/margins": "reward_margin",
    "rewards/accuracies": "reward_accuracy", "kl": "kl", "logps/chosen": "logp_chosen",
    "logps/rejected": "logp_rejected", "log_odds_ratio": "log_odds_ratio", "nll_loss": "nll_loss",
    "reward": "reward", "reward_std": "reward_std", "completions/mean_length": "completion_length",
}
CARD_METRICS = ("final_loss", "reward_margin", "reward_accuracy", "reward", "steps", "train_runtime", "stopped")


def method_metrics(logs: dict[str, Any]) -> dict[str, float]:
    """A method's own figures from one Trainer log: rewards chosen / rejected, margins, accuracy, KL;
    for GRPO the mean reward and each reward function's mean (``reward_<name>``)."""
    out: dict[str, float] = {}
    for key, value in logs.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(float(value)):
            continue
        if key in METRIC_NAMES:
            out[METRIC_NAMES[key]] = float(value)
        elif key.startswith("rewards/") and key.endswith("/mean"):
            out["reward_" + key[len("rewards/"):-len("/mean")]] = float(value)
    return out


def _trainer_classes(method: str) -> tuple[Any, Any]:
    if method == "dpo":
        from trl import DPOConfig, DPOTrainer

        return DPOConfig, DPOTrainer
    if method == "kto":
        from trl import KTOConfig, KTOTrainer

        return KTOConfig, KTOTrainer
    if method == "orpo":
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        return ORPOConfig, ORPOTrainer
    if method == "simpo":
        from trl.experimental.cpo import CPOConfig, CPOTrainer

        return CPOConfig, CPOTrainer
    from trl import GRPOConfig, GRPOTrainer

    return GRPOConfig, GRPOTrainer


def method_config_values(params: Any) -> dict[str, Any]:
    """The method's own TRL options (beyond the shared TrainingArguments)."""
    method, beta = params.method, params.method_beta()
    values: dict[str, Any] = {"beta": beta}
    if method in ("dpo", "kto"):
        values.update(max_length=params.max_length)
    elif method == "orpo":
        values.update(max_length=params.max_length)
    elif method == "simpo":
        values.update(max_length=params.max_length, loss_type="simpo", cpo_alpha=0.0, simpo_gamma=params.simpo_gamma)
    else:  # grpo
        values.update(num_generations=params.num_generations, max_completion_length=params.max_completion_length,
                      temperature=params.temperature, log_completions=False)
    return values


def _dataset(rows: list[dict[str, Any]]) -> Any:
    from datasets import Dataset

    return Dataset.from_list(rows)


def train_with_trl(spec: dict[str, Any], ctx: Any, params: Any) -> dict[str, Any]:
    """Train ``params.method`` into ``ctx.output_dir``; the result carries the method's last figures."""
    from peft import LoraConfig, prepare_model_for_kbit_training
    from transformers import set_seed
    from transformers.trainer_callback import PrinterCallback

    from lora_factory.kit.trainer import TrainerBridge
    from lora_factory.plugins.text import lean_reference
    from lora_factory.plugins.text.batching import split_indices
    from lora_factory.plugins.text.loading import load_causal_lm, load_tokenizer, pick_device
    from lora_factory.plugins.text.pref_data import load_method_rows
    from lora_factory.plugins.text.train_common import check_paths, save_outputs, training_argument_values

    method = params.method
    base, dataset = check_paths(spec)
    trust = bool(spec.get("trust_remote_code", False))
    set_seed(params.seed)
    device = pick_device()
    ctx.log(f"method={method} base={base} dataset={dataset.name} device={device} preset={spec.get('preset')} "
            f"beta={params.method_beta()}")
    rows = load_method_rows(dataset, spec.get("dataset_options") or {}, method)
    train_idx, eval_idx = split_indices(len(rows), float(params.eval_ratio), int(params.seed))
    train_rows, eval_rows = [rows[i] for i in train_idx], [rows[i] for i in eval_idx]
    ctx.log(f"train rows={len(train_rows)} eval rows={len(eval_rows)}")
    if params.packing:
        ctx.log("packing is an SFT option: not used by " + method.upper())

    tokenizer = load_tokenizer(base, trust, ctx.log)
    model = load_causal_lm(base, params.quantization, trust, device)
    model.config.use_cache = False
    if params.quantization == "4bit" and method in ("dpo", "kto", "grpo"):  # ORPO / CPO prepare it themselves
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=params.gradient_checkpointing)
    if params.quantization == "4bit":
        n4 = sum(1 for m in model.modules() if type(m).__name__ == "Linear4bit")
        ctx.log(f"quantization=4bit (nf4): {n4} Linear4bit layers")
    lora = LoraConfig(r=params.rank, lora_alpha=params.alpha, lora_dropout=params.dropout,
                      target_modules=params.target_modules, task_type="CAUSAL_LM", bias="none")

    config_cls, trainer_cls = _trainer_classes(method)
    values = training_argument_values(params, Path(ctx.checkpoint_dir), device, has_eval=bool(eval_rows))
    from lora_factory.plugins.text.strategy import strategy_arguments

    values.update(strategy_arguments(params, Path(ctx.run_dir), ctx.log))
    config = config_cls(**values, **method_config_values(params))
    tokens = {"seen": 0}  # TRL logs the tokens seen so far as ``num_tokens``: tokens/s as for SFT

    def figures(logs: dict[str, Any]) -> dict[str, float]:
        if isinstance(logs.get("num_tokens"), (int, float)):
            tokens["seen"] = int(logs["num_tokens"])
        return method_metrics(logs)

    bridge = TrainerBridge(ctx, token_counter=lambda: tokens["seen"], extra_metrics=figures)
    kwargs: dict[str, Any] = {}
    if method == "grpo":
        from lora_factory.plugins.text.grpo_rewards import trl_reward_functions

        kwargs["reward_funcs"] = trl_reward_functions(params.rewards, ctx)
    trainer = trainer_cls(model=model, args=config, train_dataset=_dataset(train_rows),
                          eval_dataset=_dataset(eval_rows) if eval_rows else None, processing_class=tokenizer,
                          peft_config=lora, callbacks=[bridge.callback()], **kwargs)
    trainer.remove_callback(PrinterCallback)
    peft_model = trainer.model
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    lean = method not in ("orpo", "simpo") and lean_reference.install(peft_model)
    ctx.log(f"trainable parameters: {trainable}; reference: "
            + ("none (reference-free)" if method in ("orpo", "simpo") else "the base with the adapter disabled"
               + (" (switched per layer flag)" if lean else "")))
    resume = str(ctx.resume_checkpoint) if ctx.resume_checkpoint else None
    if resume:
        ctx.log(f"resume from {resume}")
    out = trainer.train(resume_from_checkpoint=resume)

    history = bridge.history
    eval_metrics: dict[str, Any] = {}
    if eval_rows and not bridge.stopped:
        eval_metrics = {k: v for k, v in trainer.evaluate().items() if isinstance(v, (int, float))}
    last = {k: v for k, v in (history[-1] if history else {}).items() if k in set(METRIC_NAMES.values())
            or k.startswith("reward_")}
    result = {
        "method": method,
        "final_loss": history[-1]["loss"] if history else None,
        "first_loss": history[0]["loss"] if history else None,
        "eval_loss": eval_metrics.get("eval_loss"),
        "eval_metrics": eval_metrics,
        "train_runtime": round(float(out.metrics.get("train_runtime", bridge.elapsed())), 3),
        # None where the trainer does not count tokens (TRL's ORPO / CPO)
        "tokens_per_s": round(bridge.tokens_per_s(), 2) if tokens["seen"] else None,
        "steps": int(trainer.state.global_step),
        "max_steps": int(trainer.state.max_steps),
        "stopped": bool(bridge.stopped),
        "train_rows": len(train_rows),
        "eval_rows": len(eval_rows),
        "trainable_parameters": int(trainable),
        **last,
    }
    from lora_factory.kit import dist

    if dist.is_main_process():  # several ranks: rank 0 alone writes the adapter
        save_outputs(Path(ctx.output_dir), peft_model, tokenizer, spec, params, result, card_metrics=CARD_METRICS)
        ctx.log(f"saved adapter to {ctx.output_dir}")
    dist.barrier()
    return result
