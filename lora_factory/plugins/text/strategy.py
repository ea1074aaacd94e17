"""How a text run spreads over several devices: ``ddp`` (default), ``fsdp`` (FSDP2), DeepSpeed ZeRO-2 / 3.

The strategy is configuration for the HF Trainer (which runs on accelerate), not a code path: this
module turns the choice into ``TrainingArguments`` values and writes exactly what was used into the run
folder (``runs/<job>/strategy.json``, plus ``ds_config.json`` for DeepSpeed). DeepSpeed is offered only
where it is installed: asking for it elsewhere is a 422 at submit time and the job's error in the worker,
never a silent fall-back to DDP. With one device the choice does not matter and is recorded as such.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from lora_factory.kit import LoRAFactoryError, devices, dist

DEEPSPEED_STRATEGIES = {"deepspeed_zero2": 2, "deepspeed_zero3": 3}


def deepspeed_available() -> bool:
    return importlib.util.find_spec("deepspeed") is not None


def check_strategy(params: Any) -> None:
    """422 for a strategy this machine cannot run (DeepSpeed not installed; FSDP with 4-bit weights)."""
    strategy = getattr(params, "strategy", "ddp")
    if strategy in DEEPSPEED_STRATEGIES and not deepspeed_available():
        raise LoRAFactoryError(
            "STRATEGY_UNAVAILABLE",
            f"分散方式「{strategy}」には DeepSpeed が必要ですが、インストールされていません"
            "(pip install deepspeed)。ddp か fsdp を選んでください。",
            f"The strategy '{strategy}' needs DeepSpeed, which is not installed (pip install deepspeed). "
            "Choose ddp or fsdp.", 422, detail={"field": "params.strategy", "strategy": strategy})
    if strategy == "fsdp" and getattr(params, "quantization", "none") == "4bit":
        raise LoRAFactoryError(
            "STRATEGY_UNAVAILABLE", "4bit 量子化 (QLoRA) と fsdp は同時に使えません。ddp を選んでください。",
            "4-bit quantization (QLoRA) cannot be sharded with fsdp here; choose ddp.", 422,
            detail={"field": "params.strategy", "strategy": strategy})


def deepspeed_config(stage: int) -> dict[str, Any]:
    """A ZeRO config whose sizes the Trainer fills in (``auto``) from its own arguments."""
    zero: dict[str, Any] = {"stage": stage, "overlap_comm": True, "contiguous_gradients": True}
    if stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    return {"zero_optimization": zero, "train_micro_batch_size_per_gpu": "auto",
            "gradient_accumulation_steps": "auto", "train_batch_size": "auto", "gradient_clipping": "auto",
            "bf16": {"enabled": "auto"}, "fp16": {"enabled": "auto"}}


def strategy_arguments(params: Any, run_dir: Path, log: Any = None) -> dict[str, Any]:
    """Extra ``TrainingArguments`` for the run's strategy (``{}`` for DDP), with the record written.

    Every rank calls it (the Trainer of every rank needs the same arguments); rank 0 writes the record.
    """
    check_strategy(params)
    strategy = getattr(params, "strategy", "ddp")
    world = dist.world_size()
    extra: dict[str, Any] = {"ddp_timeout": int(dist.collective_timeout_s())}
    used = strategy if world > 1 else "single"
    if world > 1 and strategy == "fsdp" and not devices.cuda_available():
        # accelerate runs FSDP on accelerators only: on CPU ranks the Trainer would quietly train plain DDP
        raise LoRAFactoryError(
            "STRATEGY_UNAVAILABLE",
            "fsdp は GPU でのみ使えます。CPU のデバイス(cpu:N)では ddp を選んでください。",
            "fsdp runs on GPUs only; on CPU devices (cpu:N) choose ddp.", 422,
            detail={"field": "params.strategy", "strategy": strategy})
    if world > 1 and strategy == "fsdp":
        extra.update(fsdp="full_shard auto_wrap", fsdp_config={
            "version": 2, "reshard_after_forward": True, "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "state_dict_type": "SHARDED_STATE_DICT", "cpu_ram_efficient_loading": False,
            "activation_checkpointing": bool(getattr(params, "gradient_checkpointing", False))})
    elif world > 1 and strategy in DEEPSPEED_STRATEGIES:
        config = deepspeed_config(DEEPSPEED_STRATEGIES[strategy])
        if dist.is_main_process():
            (Path(run_dir) / "ds_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
        extra["deepspeed"] = config
    if world > 1 and strategy == "ddp":
        extra["ddp_find_unused_parameters"] = False
    if dist.is_main_process():
        record = {"requested": strategy, "used": used, "world_size": world,
                  "training_arguments": {k: v for k, v in extra.items() if k != "deepspeed"}}
        if "deepspeed" in extra:
            record["deepspeed_config"] = "ds_config.json"
        (Path(run_dir) / "strategy.json").write_text(json.dumps(record, ensure_ascii=False, indent=2), encoding="utf-8")
        if log is not None:
            log(f"strategy={used} (requested {strategy}, {world} rank{'s' if world > 1 else ''})")
    return extra
