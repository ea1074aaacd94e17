"""Training presets and the validated parameter model for text LoRA.

Why a pydantic model: the UI, the API and the job's ``config.json`` all speak these exact keys; a
typo (``learnig_rate``) must fail loudly with the field named, not be silently ignored.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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
    overlong_rows: Literal["truncate", "drop"] = Field(
        "truncate", description="Conversations longer than max_length: cut at max_length, or left out (counted "
                                "either way in the job's log and result)")
    text_stride: int = Field(
        0, ge=0, description="Plain-text documents longer than max_length are split into blocks; each block after "
                             "the first repeats this many tokens of the previous one as context (not trained twice)")
    gradient_checkpointing: bool = False
    seed: int = Field(42, ge=0, le=2**32 - 1)  # numpy and torch refuse larger seeds (the job crashed)
    quantization: Literal["none", "4bit"] = "none"
    logging_steps: int = Field(1, ge=1)
    method: Literal["sft", "dpo", "kto", "orpo", "simpo", "grpo"] = Field(
        "sft", description="sft: instruction / chat / text data; dpo, orpo, simpo: preference pairs; kto: good / bad "
                           "labels or pairs; grpo: prompts scored by reward functions")
    beta: float | None = Field(
        None, ge=0.0, le=100.0, description="DPO / KTO: strength of the pull towards the reference (the base); ORPO: "
                                            "odds-ratio weight; SimPO: reward scale; GRPO: KL weight. Empty: the "
                                            "method's default (0.1; SimPO 2.0; GRPO 0.0)")
    simpo_gamma: float = Field(0.5, ge=0.0, le=100.0, description="SimPO: the target reward margin")
    num_generations: int = Field(4, ge=2, le=64, description="GRPO: completions sampled per prompt")
    max_completion_length: int = Field(64, ge=1, le=32768, description="GRPO: longest completion sampled")
    temperature: float = Field(1.0, gt=0.0, le=10.0, description="GRPO: sampling temperature")
    rewards: list[dict[str, Any]] = Field(
        default_factory=list, description='GRPO reward functions, e.g. [{"name": "exact_answer"}, '
                                          '{"name": "length", "target": 40, "weight": 0.5}]')

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

    @model_validator(mode="after")
    def _stride_below_length(self) -> TrainParams:
        if self.text_stride >= self.max_length:
            raise ValueError(f"text_stride ({self.text_stride}) must be smaller than max_length ({self.max_length})")
        return self

    @model_validator(mode="after")
    def _grpo_needs_rewards(self) -> TrainParams:
        if self.method == "grpo":
            from lora_factory.plugins.text.rewards import check_reward_specs

            if not self.rewards:
                raise ValueError('GRPO needs at least one reward function in "rewards"')
            self.rewards = check_reward_specs(self.rewards)
        return self

    def method_beta(self) -> float:
        """``beta``, or the method's own default when it was left empty."""
        from lora_factory.plugins.text.methods import default_beta

        return float(self.beta) if self.beta is not None else default_beta(self.method)


# The method keys every SFT preset carries (a preset lists every parameter: what it shows is what runs).
_SFT: dict[str, Any] = {"method": "sft", "beta": None, "simpo_gamma": 0.5, "num_generations": 4,
                        "max_completion_length": 64, "temperature": 1.0, "rewards": []}

PRESETS: dict[str, dict[str, Any]] = {
    # A short first try, capped at 60 optimizer steps whatever the dataset size; it learns a handful
    # of memorisable rows on the tiny model in seconds on a CPU.
    "quick": {
        "rank": 16, "alpha": 32, "dropout": 0.0, "target_modules": "all-linear", "learning_rate": 5e-3,
        "num_epochs": 30, "max_steps": 60, "batch_size": 4, "grad_accum": 1, "max_length": 512,
        "warmup_ratio": 0.0, "lr_scheduler": "constant", "weight_decay": 0.0, "save_steps": 50,
        "eval_ratio": 0.0, "packing": False, "assistant_only_loss": True, "overlong_rows": "truncate", "text_stride": 0,
        "gradient_checkpointing": False,
        "seed": 42, "quantization": "none", "logging_steps": 1, **_SFT,
    },
    # A sensible default for a real 1-8B model on a consumer GPU.
    "standard": {
        "rank": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear", "learning_rate": 2e-4,
        "num_epochs": 3, "max_steps": -1, "batch_size": 4, "grad_accum": 4, "max_length": 2048,
        "warmup_ratio": 0.03, "lr_scheduler": "cosine", "weight_decay": 0.0, "save_steps": 200,
        "eval_ratio": 0.05, "packing": False, "assistant_only_loss": True, "overlong_rows": "truncate",
        "text_stride": 0, "gradient_checkpointing": True,
        "seed": 42, "quantization": "none", "logging_steps": 1, **_SFT,
    },
    # Higher rank, lower lr, more epochs: slower, for a dataset worth the time.
    "high_quality": {
        "rank": 64, "alpha": 128, "dropout": 0.05, "target_modules": "all-linear", "learning_rate": 1e-4,
        "num_epochs": 5, "max_steps": -1, "batch_size": 4, "grad_accum": 8, "max_length": 4096,
        "warmup_ratio": 0.05, "lr_scheduler": "cosine", "weight_decay": 0.01, "save_steps": 200,
        "eval_ratio": 0.05, "packing": False, "assistant_only_loss": True, "overlong_rows": "truncate",
        "text_stride": 0, "gradient_checkpointing": True,
        "seed": 42, "quantization": "none", "logging_steps": 1, **_SFT,
    },
}



def _method_preset(method: str, **changes: Any) -> dict[str, Any]:
    """A method's preset for a real 1-8B model: ``standard`` with the method's usual values. Preference
    methods start from an instruction-tuned model, so one or two epochs at a lower learning rate."""
    return {**PRESETS["standard"], "method": method, **changes}


PRESETS.update({
    # DPO / KTO with LoRA: ~10x the full fine-tuning rate (5e-7) is the usual LoRA choice
    "dpo": _method_preset("dpo", learning_rate=5e-5, num_epochs=1, beta=0.1, max_length=1024),
    "kto": _method_preset("kto", learning_rate=5e-5, num_epochs=1, beta=0.1, max_length=1024),
    # ORPO trains from the SFT stage on: the ORPO paper's 8e-6 full fine-tuning, higher for LoRA
    "orpo": _method_preset("orpo", learning_rate=8e-5, num_epochs=2, beta=0.1, max_length=1024),
    # SimPO: beta 2.0 and gamma 0.5 (gamma / beta = 0.25), the paper's Llama-3-Instruct values
    "simpo": _method_preset("simpo", learning_rate=5e-5, num_epochs=1, beta=2.0, simpo_gamma=0.5, max_length=1024),
    # GRPO: 8 samples per prompt, batch a multiple of it, a reward for matching the dataset's answer
    "grpo": _method_preset("grpo", learning_rate=2e-5, num_epochs=1, batch_size=8, grad_accum=1, beta=0.0,
                           num_generations=8, max_completion_length=256, temperature=1.0,
                           rewards=[{"name": "exact_answer", "weight": 1.0, "allow_prefix": True}], gradient_checkpointing=True, max_length=1024),
})

# what each preset is for, shown under the preset select (labels and descriptions in both languages)
PRESET_INFO: dict[str, dict[str, str]] = {
    "quick": {"label_ja": "お試し", "label_en": "Quick try",
              "description_ja": "最大 60 ステップで止まる短い学習。小さなデータやデモモデルで流れを確かめるためのもので、CPU でも数十秒で終わります。",
              "description_en": "A short run capped at 60 steps, to check the flow on a small dataset or the demo model; seconds on a CPU."},
    "standard": {"label_ja": "標準", "label_en": "Standard",
                 "description_ja": "1〜8B のモデルを家庭用 GPU で学習するときの基準。3 エポック、学習率 2e-4、勾配チェックポイントで省メモリ。",
                 "description_en": "The default for a 1-8B model on a consumer GPU: 3 epochs, learning rate 2e-4, gradient checkpointing."},
    "high_quality": {"label_ja": "高品質", "label_en": "High quality",
                     "description_ja": "ランク 64・5 エポック・低めの学習率。時間とメモリは増えますが、質のよいデータで差が出ます。",
                     "description_en": "Rank 64, 5 epochs, a lower learning rate: slower and larger, for a dataset worth the time."},
    "dpo": {"label_ja": "DPO", "label_en": "DPO",
            "description_ja": "選好ペア (chosen / rejected) で好ましい回答に寄せます。指示調整済みのモデルから 1 エポック。",
            "description_en": "Pulls towards the preferred answers of preference pairs; one epoch from an instruction-tuned model."},
    "kto": {"label_ja": "KTO", "label_en": "KTO",
            "description_ja": "良い / 悪いの二値ラベル(またはペア)で学習します。",
            "description_en": "Trains on good / bad labels (or pairs)."},
    "orpo": {"label_ja": "ORPO", "label_en": "ORPO",
             "description_ja": "参照モデルなしで SFT と選好学習を同時に行います。",
             "description_en": "SFT and preference learning in one, without a reference model."},
    "simpo": {"label_ja": "SimPO", "label_en": "SimPO",
              "description_ja": "参照モデルなしの選好学習 (β 2.0、γ 0.5)。",
              "description_en": "Reference-free preference learning (beta 2.0, gamma 0.5)."},
    "grpo": {"label_ja": "GRPO", "label_en": "GRPO",
             "description_ja": "プロンプトごとに 8 件生成し、報酬関数(既定: 正解との一致)で採点して学習します。",
             "description_en": "Samples 8 completions per prompt and learns from reward functions (default: matching the answer)."},
}

TRAIN_PARAMS_SCHEMA: dict[str, Any] = with_japanese_titles(TrainParams.model_json_schema())


def resolve_train_params(preset: str, params: dict[str, Any] | None) -> TrainParams:
    """The preset's values overridden by the user's ``params``, validated (in the server, once)."""
    return resolve_params(TrainParams, PRESETS, preset, params)


def read_train_params(params: dict[str, Any]) -> TrainParams:
    """The resolved parameters of a job's spec, as the worker reads them (no preset merged again)."""
    return validate_params(TrainParams, params)


def resolve_train_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """A train request with its complete parameter set (what the server queues and config.json keeps).
    A dataset the method cannot train on (preference pairs for SFT, an instruction set for DPO, KTO
    labels for DPO ...) is refused before it queues, naming the kind of data the method needs."""
    preset = spec.get("preset") or "quick"
    params = resolve_train_params(preset, spec.get("params") or {})
    check_dataset_for_method(spec, params.method)
    return dict(spec, preset=preset, params=params.model_dump(), requested_params=spec.get("params") or {})


def check_dataset_for_method(spec: dict[str, Any], method: str) -> None:
    """422 when the dataset's kind does not fit ``method``. The recorded format decides for most sets;
    a preference set is read (it may hold pairs, KTO labels or both)."""
    from pathlib import Path

    from lora_factory.plugins.text.methods import accepts, data_kinds_of_format, data_kinds_of_rows, wrong_data
    from lora_factory.plugins.text.preference import preference_not_trainable

    options = spec.get("dataset_options") or {}
    dataset = Path(str(spec.get("dataset", "")))
    kinds = data_kinds_of_format(options.get("format"))
    if kinds is None:
        return  # format unknown until read: the worker checks the rows
    if method == "sft":
        if kinds & {"pairs", "labels"}:
            raise preference_not_trainable(dataset.name)
        return
    if kinds & {"pairs", "labels"} and dataset.is_file():
        from lora_factory.plugins.text.formats import load_conversations

        kinds = data_kinds_of_rows(load_conversations(dataset, options))
    if not accepts(method, kinds):
        raise wrong_data(method, dataset.name, kinds)
