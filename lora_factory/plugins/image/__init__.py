"""The built-in image plugin: SD1.5 / SDXL LoRA (Flux QLoRA on a GPU) with diffusers, kohya export,
captions and tags, aspect-ratio buckets, sample images, generation with ControlNet / IP-Adapter.

Written as a third party would write it: it imports only ``lora_factory.kit`` (and ``hookimpl`` /
``LoRAFactoryError``). Only the hook functions live here; each imports its working module inside
the function, because the server imports this module at start-up and torch / diffusers must stay
out of it.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from lora_factory.kit import hookimpl

MODALITY = "image"
__version__ = "0.1.0"


class _DropMessage(logging.Filter):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in str(record.msg)


# harmless noise in job logs: a missing optional kernel package (bitsandbytes on a CPU), torchvision
logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(_DropMessage("Failed to load CPU gemm_4bit_forward"))
warnings.filterwarnings("ignore", message=".*requires torchvision.*")
# diffusers 0.42 renames torch_dtype to dtype; the old name still works and older diffusers only know it
warnings.filterwarnings("ignore", message="`torch_dtype` is deprecated", category=FutureWarning)


def _mine(modality: str) -> bool:
    return modality == MODALITY


@hookimpl
def describe_modalities() -> list[dict[str, Any]]:
    from lora_factory.kit import presets
    from lora_factory.kit.presets import with_descriptions_ja
    from lora_factory.plugins.image import generate_params as gp
    from lora_factory.plugins.image.dataset import DATASET_FORMAT, IMAGE_SUFFIXES
    from lora_factory.plugins.image.download import AUX_KINDS
    from lora_factory.plugins.image.export_targets import EXPORT_TARGETS
    from lora_factory.plugins.image.presets import (
        DESCRIPTIONS_JA,
        PRESET_INFO,
        PRESETS,
        TITLES_JA,
        ImageTrainParams,
    )
    from lora_factory.plugins.image.refine import REFINE_OPERATIONS
    from lora_factory.plugins.image.regression import CHECKS

    return [{
        "id": MODALITY,
        "label_ja": "画像",
        "label_en": "Image",
        # the libraries its workers import: a warm start (core/jobs/warm_start) imports them once. diffusers
        # imports its models and pipelines on first use: its auto-pipeline module brings them all (VAE, UNet,
        # the SD / SDXL / Flux pipelines, schedulers), 2 s that each training, generation and export paid
        "worker_modules": ["peft", "diffusers", "diffusers.pipelines.auto_pipeline", "transformers", "accelerate",
                           "safetensors.torch"],
        "presets": PRESETS,
        "preset_info": PRESET_INFO,
        "default_preset": "quick",
        "dataset_formats": [DATASET_FORMAT],
        "dataset_extensions": [".zip", *IMAGE_SUFFIXES, ".txt"],
        "dataset_kind": "folder",
        "refine_operations": REFINE_OPERATIONS,
        "train_params_schema": with_descriptions_ja(presets.schema_for(ImageTrainParams, TITLES_JA), DESCRIPTIONS_JA),
        "model_extensions": [".safetensors"],
        "inference_kinds": ["image"],
        "infer_schemas": {"image": {"input_schema": gp.INPUT_SCHEMA,
                                    "params_schema": presets.schema_for(gp.GenerateParams, gp.TITLES_JA),
                                    "presets": gp.GENERATE_PRESETS}},
        "aux_model_kinds": AUX_KINDS,
        "regression_checks": CHECKS,
        "export_targets": EXPORT_TARGETS,
        "supports": ["tiny_model", "single_file", "item_edit", "regression", "compare", "png_info", "kohya_export",
                     "samples"],
        "licenses": ("SD1.5: CreativeML OpenRAIL-M / SDXL: OpenRAIL++-M / FLUX.1 [dev]: 非商用 (non-commercial); "
                     "FLUX.1 [schnell]: Apache-2.0. 学習データの権利はご自身で確認してください / check the rights to "
                     "your training images."),
    }]


@hookimpl
def download_model(modality: str, spec: dict[str, Any], ctx: Any) -> dict[str, Any] | None:
    if not _mine(modality):
        return None
    from lora_factory.plugins.image.download import download_image_model

    return download_image_model(spec, ctx)


@hookimpl
def resolve_export_spec(modality: str, spec: dict[str, Any], workspace: Any) -> dict[str, Any] | None:
    if not _mine(modality):
        return None
    from lora_factory.plugins.image.export_targets import resolve

    return resolve(spec, workspace)


@hookimpl
def export_adapter(modality: str, spec: dict[str, Any], ctx: Any) -> dict[str, Any] | None:
    if not _mine(modality):
        return None
    from lora_factory.plugins.image.export_targets import run

    return run(spec, ctx)


@hookimpl
def inspect_model(modality: str, path: str) -> dict[str, Any] | None:
    if not _mine(modality):
        return None
    from lora_factory.plugins.image.model_info import inspect_image_model

    return inspect_image_model(Path(path))


@hookimpl
def inspect_dataset(modality: str, path: str, options: dict[str, Any]) -> dict[str, Any] | None:
    if not _mine(modality):
        return None
    from lora_factory.plugins.image.dataset import inspect_image_folder

    return inspect_image_folder(Path(path), options or {})


@hookimpl
def resolve_refine_spec(modality: str, spec: dict[str, Any], workspace: Any) -> dict[str, Any] | None:
    if not _mine(modality):
        return None
    from lora_factory.plugins.image.refine import resolve_operations

    operations, uses_gpu = resolve_operations(spec.get("operations"), workspace)
    return dict(spec, operations=operations, gpu=uses_gpu)


@hookimpl
def refine_dataset(modality: str, spec: dict[str, Any], ctx: Any) -> dict[str, Any] | None:
    if not _mine(modality):
        return None
    from lora_factory.plugins.image.refine import run_refine

    return run_refine(spec, ctx)


@hookimpl
def resolve_train_spec(modality: str, spec: dict[str, Any]) -> dict[str, Any] | None:
    if not _mine(modality):
        return None
    from lora_factory.kit import presets
    from lora_factory.plugins.image.optimizers import check_available
    from lora_factory.plugins.image.presets import PRESETS, ImageTrainParams, preset_layers

    preset = spec.get("preset") or "quick"
    overrides = spec.get("params") or {}
    params = presets.resolve_params(ImageTrainParams, PRESETS, preset, overrides, *preset_layers(preset, overrides))
    check_available(params.optimizer)  # a 422 naming the package now, not a failed job later
    return dict(spec, preset=preset, params=params.model_dump(), requested_params=overrides)


@hookimpl
def train(modality: str, spec: dict[str, Any], ctx: Any) -> dict[str, Any] | None:
    if not _mine(modality):
        return None
    from lora_factory.plugins.image.train import train_image_adapter

    return train_image_adapter(spec, ctx)


@hookimpl
def infer(modality: str, request: dict[str, Any], session: Any) -> Any:
    if not _mine(modality):
        return None
    from lora_factory.plugins.image.generate import generate_images

    return generate_images(request, session)


@hookimpl
def resolve_infer_request(modality: str, request: dict[str, Any], workspace: Any) -> dict[str, Any] | None:
    if not _mine(modality):
        return None
    from lora_factory.plugins.image.resolve import resolve_generate_request

    return resolve_generate_request(request, workspace)


@hookimpl
def regression_check(modality: str, check: dict[str, Any], output: dict[str, Any], reference: dict[str, Any] | None,
                     session: Any) -> dict[str, Any] | None:
    if not _mine(modality):
        return None
    from lora_factory.plugins.image.regression import run_check

    return run_check(check, output, reference, session)


__all__ = ["__version__"]


@hookimpl
def register_ui(register: Any) -> None:
    """The image front-end (``static/index.js``): its datasets tab and its view of the 推論 tab."""
    register(Path(__file__).parent / "static", script="index.js", modality=MODALITY)
