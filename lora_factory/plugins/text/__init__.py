"""The built-in text plugin: causal LMs with PEFT LoRA / QLoRA, chat, Evol-Instruct and dedup.

Only the hook functions live here. Each imports its working module inside the function: the server
imports this module at start-up, and torch / transformers must stay out of it.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from lora_factory.kit import __version__, hookimpl


class _DropMessage(logging.Filter):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in str(record.msg)


# bitsandbytes on a CPU-only machine logs a missing optional kernel package at import; harmless
logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(_DropMessage("Failed to load CPU gemm_4bit_forward"))
# peft 0.21 still calls the transformers-5 deprecated name; nothing for the user to act on
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)

MODALITY = "text"
SAMPLE_DIR = Path(__file__).parent / "sample_data"


def _mine(modality: str) -> bool:
    return modality == MODALITY


@hookimpl
def describe_modalities() -> list[dict[str, Any]]:
    from lora_factory.plugins.text.export import EXPORT_TARGETS
    from lora_factory.plugins.text.formats import DATASET_EXTENSIONS, DATASET_FORMATS
    from lora_factory.plugins.text.methods import describe_methods
    from lora_factory.plugins.text.presets import PRESET_INFO, PRESETS, TRAIN_PARAMS_SCHEMA
    from lora_factory.plugins.text.refine import REFINE_OPERATIONS
    from lora_factory.plugins.text.rewards import BUILTIN_INFO

    return [{
        "id": MODALITY,
        "label_ja": "テキスト",
        "label_en": "Text",
        # the libraries its workers import: a warm start (core/jobs/warm_start) imports them once
        "worker_modules": ["peft", "transformers.trainer", "datasets", "accelerate"],
        "presets": PRESETS,
        "default_preset": "quick",
        "dataset_formats": DATASET_FORMATS,
        "dataset_extensions": DATASET_EXTENSIONS,
        "refine_operations": REFINE_OPERATIONS,
        "refine_output_format": "openai",  # a refined instruction set is written as OpenAI messages
        "preset_info": PRESET_INFO,
        "train_params_schema": TRAIN_PARAMS_SCHEMA,
        "training_methods": describe_methods(),
        "reward_functions": BUILTIN_INFO,  # GRPO's built-ins; GET /api/rewards adds the plugins' own
        "sample_datasets": [str(p) for p in sorted(SAMPLE_DIR.glob("*.jsonl"))],
        "supports": ["chat", "tiny_model", "merge", "eval_loss", "regression", "evol_instruct", "qlora",
                     "dpo", "kto", "orpo", "simpo", "grpo"],
        "export_targets": EXPORT_TARGETS,
    }]


@hookimpl
def download_model(modality: str, spec: dict[str, Any], ctx: Any) -> dict[str, Any] | None:
    if not _mine(modality):
        return None
    from lora_factory.plugins.text.download import download_text_model

    return download_text_model(spec, ctx)


@hookimpl
def refine_dataset(modality: str, spec: dict[str, Any], ctx: Any) -> dict[str, Any] | None:
    if not _mine(modality):
        return None
    from lora_factory.plugins.text.refine import run_refine

    return run_refine(spec, ctx)


@hookimpl
def resolve_refine_spec(modality: str, spec: dict[str, Any], workspace: Any) -> dict[str, Any] | None:
    if not _mine(modality):
        return None
    from lora_factory.plugins.text.refine import resolve_operations

    operations, uses_gpu = resolve_operations(spec.get("operations"), workspace)
    return dict(spec, operations=operations, gpu=uses_gpu)


@hookimpl
def resolve_train_spec(modality: str, spec: dict[str, Any]) -> dict[str, Any] | None:
    if not _mine(modality):
        return None
    from lora_factory.plugins.text.presets import resolve_train_spec as resolve

    return resolve(spec)


@hookimpl
def train(modality: str, spec: dict[str, Any], ctx: Any) -> dict[str, Any] | None:
    if not _mine(modality):
        return None
    from lora_factory.plugins.text.train import train_text_adapter

    return train_text_adapter(spec, ctx)


@hookimpl
def infer(modality: str, request: dict[str, Any], session: Any) -> Any:
    if not _mine(modality):
        return None
    from lora_factory.plugins.text.inference import chat_events

    return chat_events(request, session)


@hookimpl
def evaluate(modality: str, spec: dict[str, Any], ctx: Any) -> dict[str, Any] | None:
    if not _mine(modality):
        return None
    from lora_factory.plugins.text.evaluate import evaluate_text

    return evaluate_text(spec, ctx)


@hookimpl
def merge_adapter(modality: str, spec: dict[str, Any], ctx: Any) -> dict[str, Any] | None:
    if not _mine(modality):
        return None
    from lora_factory.plugins.text.merge import merge_text_adapter

    return merge_text_adapter(spec, ctx)


@hookimpl
def resolve_export_spec(modality: str, spec: dict[str, Any], workspace: Any) -> dict[str, Any] | None:
    if not _mine(modality):
        return None
    from lora_factory.plugins.text.export import resolve

    return resolve(spec)


@hookimpl
def export_adapter(modality: str, spec: dict[str, Any], ctx: Any) -> dict[str, Any] | None:
    if not _mine(modality):
        return None
    from lora_factory.plugins.text.export import run

    return run(spec, ctx)


@hookimpl
def inspect_model(modality: str, path: str) -> dict[str, Any] | None:
    if not _mine(modality):
        return None
    from lora_factory.plugins.text.model_info import inspect_text_model

    return inspect_text_model(Path(path))


@hookimpl
def inspect_dataset(modality: str, path: str, options: dict[str, Any]) -> dict[str, Any] | None:
    if not _mine(modality):
        return None
    from lora_factory.plugins.text.formats import inspect_dataset_file

    return inspect_dataset_file(Path(path), options or {})


@hookimpl
def import_dataset_index(modality: str, path: str, datasets_dir: str,
                         options: dict[str, Any]) -> list[dict[str, Any]] | None:
    if not _mine(modality):
        return None
    from lora_factory.plugins.text.dataset_info import import_dataset_info_report

    report = import_dataset_info_report(Path(path), Path(datasets_dir), (options or {}).get("txt_split"))
    return [dict(item, file=str(item["file"])) for item in report["imported"]] + \
        [{"name": s["name"], "skipped": s["reason"]} for s in report["skipped"]]


__all__ = ["__version__"]
