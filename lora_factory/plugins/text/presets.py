"""Training presets and the validated parameter model for text LoRA.

Why a pydantic model: the UI, the API and the job's ``config.json`` all speak these exact keys; a
typo (``learnig_rate``) must fail loudly with the field named, not be silently ignored.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lora_factory.kit.presets import resolve_params, validate_params
from lora_factory.plugins.text.schema_ja import with_japanese_titles


class TrainParams(BaseModel):
    """Every knob of a text LoRA run. ``max_steps=-1`` trains for ``num_epochs``."""

    model_config = ConfigDict(extra="forbid")

    rank: int = Field(16, ge=1, le=1024, description="LoRA rank r")
    alpha: float = Field(32, gt=0, description="LoRA alpha (scale = alpha / r)")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: str | list[str] = Field("all-linear", description='"all-linear" or module names')
    learning_rate: float = Field(2e-4, gt=0, le=1.0)
    num_epochs: float = Field(3, gt=0, le=1000)
    max_steps: int = Field(-1, ge=-1)
    batch_size: int = Field(4, ge=1, le=1024)
    grad_accum: int = Field(1, ge=1, le=1024)
    max_length: int = Field(1024, ge=8, le=131072)
    warmup_ratio: float = Field(0.03, ge=0.0, le=0.5)
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts"] = "cosine"
    weight_decay: float = Field(0.0, ge=0.0, le=1.0)
    save_steps: int = Field(100, ge=1)
    eval_ratio: float = Field(0.0, ge=0.0, le=0.5)
    packing: bool = False
    assistant_only_loss: bool = True
    gradient_checkpointing: bool = False
    seed: int = 42
    quantization: Literal["none", "4bit"] = "none"
    logging_steps: int = Field(1, ge=1)

    @field_validator("target_modules")
    @classmethod
    def _targets(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, str):
            if value != "all-linear":
                raise ValueError('must be "all-linear" or a list of module names')
            return value
        if not value or not all(isinstance(v, str) and v.strip() for v in value):
            raise ValueError("must be a non-empty list of module names")
        return [v.strip() for v in value]


PRESETS: dict[str, dict[str, Any]] = {
    # A short first try, capped at 60 optimizer steps whatever the dataset size; it learns a handful
    # of memorisable rows on the tiny model in seconds on a CPU.
    "quick": {
        "rank": 16, "alpha": 32, "dropout": 0.0, "target_modules": "all-linear", "learning_rate": 5e-3,
        "num_epochs": 30, "max_steps": 60, "batch_size": 4, "grad_accum": 1, "max_length": 512,
        "warmup_ratio": 0.0, "lr_scheduler": "constant", "weight_decay": 0.0, "save_steps": 50,
        "eval_ratio": 0.0, "packing": False, "assistant_only_loss": True, "gradient_checkpointing": False,
        "seed": 42, "quantization": "none", "logging_steps": 1,
    },
    # A sensible default for a real 1-8B model on a consumer GPU.
    "standard": {
        "rank": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear", "learning_rate": 2e-4,
        "num_epochs": 3, "max_steps": -1, "batch_size": 4, "grad_accum": 4, "max_length": 2048,
        "warmup_ratio": 0.03, "lr_scheduler": "cosine", "weight_decay": 0.0, "save_steps": 200,
        "eval_ratio": 0.05, "packing": False, "assistant_only_loss": True, "gradient_checkpointing": True,
        "seed": 42, "quantization": "none", "logging_steps": 1,
    },
    # Higher rank, lower lr, more epochs: slower, for a dataset worth the time.
    "high_quality": {
        "rank": 64, "alpha": 128, "dropout": 0.05, "target_modules": "all-linear", "learning_rate": 1e-4,
        "num_epochs": 5, "max_steps": -1, "batch_size": 4, "grad_accum": 8, "max_length": 4096,
        "warmup_ratio": 0.05, "lr_scheduler": "cosine", "weight_decay": 0.01, "save_steps": 200,
        "eval_ratio": 0.05, "packing": False, "assistant_only_loss": True, "gradient_checkpointing": True,
        "seed": 42, "quantization": "none", "logging_steps": 1,
    },
}

TRAIN_PARAMS_SCHEMA: dict[str, Any] = with_japanese_titles(TrainParams.model_json_schema())


def resolve_train_params(preset: str, params: dict[str, Any] | None) -> TrainParams:
    """The preset's values overridden by the user's ``params``, validated (in the server, once)."""
    return resolve_params(TrainParams, PRESETS, preset, params)


def read_train_params(params: dict[str, Any]) -> TrainParams:
    """The resolved parameters of a job's spec, as the worker reads them (no preset merged again)."""
    return validate_params(TrainParams, params)


def resolve_train_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """A train request with its complete parameter set (what the server queues and config.json keeps)."""
    preset = spec.get("preset") or "quick"
    params = resolve_train_params(preset, spec.get("params") or {})
    return dict(spec, preset=preset, params=params.model_dump(), requested_params=spec.get("params") or {})
