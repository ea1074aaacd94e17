"""The two adapter files: diffusers' ``pytorch_lora_weights.safetensors`` and a kohya-format file.

The kohya file is what AUTOMATIC1111 / Forge / ComfyUI / SD.Next load from their ``models/Lora``
folder: ``lora_unet_*`` / ``lora_te_*`` (SD1) or ``lora_te1_*`` / ``lora_te2_*`` (SDXL) keys with
``.lora_down.weight``, ``.lora_up.weight`` and a scalar ``.alpha``, plus the ``ss_*`` metadata
sd-scripts writes (A1111 shows ``ss_tag_frequency``; it treats a file as SDXL when
``ss_base_model_version`` starts with ``sdxl_``) and the ``modelspec.*`` keys of Stability's spec.

diffusers' ``convert_state_dict_to_kohya`` does the key renaming, with three traps fixed here: it
adds the ``lora_unet`` prefix only to keys that start with ``unet.`` (peft's keys do not), it names
SD1's single text encoder ``lora_te1``, and it writes ``alpha = rank`` whatever ``lora_alpha`` was.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

DIFFUSERS_WEIGHT_NAME = "pytorch_lora_weights.safetensors"
NETWORK_MODULE = "networks.lora"
BASE_MODEL_VERSION = {"sd15": "sd_v1", "sd2": "sd_v2", "sdxl": "sdxl_base_v1-0", "flux": "flux1"}
MODELSPEC_ARCH = {"sd15": "stable-diffusion-v1", "sd2": "stable-diffusion-v2-512",
                  "sdxl": "stable-diffusion-xl-v1-base", "flux": "flux-1-dev"}
MODELSPEC_IMPL = {"sd15": "diffusers", "sd2": "diffusers", "sdxl": "https://github.com/Stability-AI/generative-models",
                  "flux": "https://github.com/black-forest-labs/flux"}
_DTYPES = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}


_CLIP_INNER = ("embeddings.", "encoder.", "final_layer_norm.")


def canonical_text_encoder_keys(state: dict[str, Any]) -> dict[str, Any]:
    """``text_model.encoder.layers.0...`` as every other tool names CLIP's layers.

    transformers 5 flattened ``CLIPTextModel`` (no ``text_model`` sub-module any more), so peft's keys
    lose the ``text_model.`` part; A1111 / ComfyUI / older diffusers only know the canonical names, and
    diffusers 0.42 reads both.
    """
    return {(f"text_model.{k}" if k.startswith(_CLIP_INNER) else k): v for k, v in state.items()}


def kohya_state_dict(parts: dict[str, dict[str, Any]], alpha: float, arch: str) -> dict[str, Any]:
    """peft state dicts per component (``unet``, ``text_encoder``, ``text_encoder_2``) -> kohya keys.

    :param parts: component name -> ``get_peft_model_state_dict(module)``.
    :param alpha: the real ``lora_alpha`` (kohya applies ``alpha / dim``).
    """
    import torch
    from diffusers.utils import convert_state_dict_to_kohya

    prefixed: dict[str, Any] = {}
    for component, state in parts.items():
        if component.startswith("text_encoder"):
            state = canonical_text_encoder_keys(state or {})
        for key, value in (state or {}).items():
            prefixed[f"{component}.{key}"] = value
    converted = convert_state_dict_to_kohya(prefixed)
    out: dict[str, Any] = {}
    single_text_encoder = "text_encoder_2" not in parts
    for key, value in converted.items():
        if single_text_encoder and key.startswith("lora_te1_"):
            key = "lora_te_" + key[len("lora_te1_"):]
        if key.endswith(".alpha"):
            value = torch.tensor(float(alpha))
        out[key] = value.contiguous()
    return out


# our resolved precision -> sd-scripts' --mixed_precision value ("no" for a full-precision run)
_MIXED_PRECISION = {"no": "no", "fp32": "no", "fp16": "fp16", "bf16": "bf16"}


def _addnet_hashes(tensors: dict[str, Any], metadata: dict[str, str]) -> tuple[str, str]:
    """sd-webui-additional-networks' hashes (``sshs_model_hash``, ``sshs_legacy_hash``), as kohya writes them."""
    from safetensors.torch import save

    data = save(tensors, {k: v for k, v in metadata.items() if k.startswith("ss_")})
    header = int.from_bytes(data[:8], "little")
    model_hash = hashlib.sha256(data[8 + header:]).hexdigest()
    buffer = io.BytesIO(data)
    buffer.seek(0x100000)
    legacy = hashlib.sha256(buffer.read(0x10000)).hexdigest()[:8]
    return model_hash, legacy


def kohya_metadata(*, arch: str, output_name: str, params: dict[str, Any], resolution: tuple[int, int],
                   tag_frequency: dict[str, dict[str, int]], dataset_dirs: dict[str, dict[str, int]],
                   steps: int, epoch: int, num_images: int, bucket_info: dict[str, Any] | None,
                   base_model_name: str, prediction_type: str, started_at: float, trigger: str | None,
                   batches_per_epoch: int) -> dict[str, str]:
    """The ``ss_*`` and ``modelspec.*`` metadata of kohya's ``train_network.py`` (all values strings)."""
    now = time.time()
    te_lr = params.get("text_encoder_lr") or (params["learning_rate"] / 2 if params.get("train_text_encoder") else None)
    meta: dict[str, Any] = {
        "ss_session_id": int(started_at * 1000) % 2**31,
        "ss_training_started_at": started_at,
        "ss_training_finished_at": now,
        "ss_output_name": output_name,
        "ss_learning_rate": params["learning_rate"],
        "ss_unet_lr": params["learning_rate"],
        "ss_text_encoder_lr": te_lr if params.get("train_text_encoder") else None,
        "ss_num_train_images": num_images,
        "ss_num_reg_images": 0,
        "ss_num_batches_per_epoch": batches_per_epoch,
        "ss_num_epochs": epoch,
        "ss_epoch": epoch,
        "ss_steps": steps,
        "ss_max_train_steps": steps,
        "ss_gradient_checkpointing": bool(params.get("gradient_checkpointing")),
        "ss_gradient_accumulation_steps": params.get("grad_accum", 1),
        "ss_lr_warmup_steps": params.get("lr_warmup_steps", 0),
        "ss_lr_scheduler": params.get("_lr_scheduler") or params.get("lr_scheduler"),
        "ss_network_module": NETWORK_MODULE,
        "ss_network_dim": params["rank"],
        "ss_network_alpha": _number(params["alpha"]),
        "ss_network_dropout": params.get("dropout", 0.0),
        "ss_network_train_unet_only": not params.get("train_text_encoder"),
        "ss_network_train_text_encoder_only": False,
        "ss_mixed_precision": _MIXED_PRECISION.get(str(params.get("_precision")), params.get("_precision"))
        or params.get("mixed_precision"),
        "ss_v2": arch == "sd2",
        "ss_base_model_version": BASE_MODEL_VERSION.get(arch, arch),
        "ss_sd_model_name": base_model_name,
        "ss_resolution": f"({resolution[0]}, {resolution[1]})",
        "ss_clip_skip": params.get("clip_skip") or "None",  # sd-scripts writes str(args.clip_skip)
        "ss_max_token_length": params.get("max_token_length") or "None",
        "ss_cache_latents": bool(params.get("cache_latents")),
        "ss_seed": params.get("seed"),
        "ss_noise_offset": params.get("noise_offset", 0.0),
        "ss_min_snr_gamma": params.get("min_snr_gamma"),
        "ss_adaptive_noise_scale": params.get("adaptive_noise_scale"),
        "ss_multires_noise_iterations": params.get("multires_noise_iterations") or None,
        "ss_multires_noise_discount": params.get("multires_noise_discount") if params.get("multires_noise_iterations") else None,
        "ss_ip_noise_gamma": params.get("ip_noise_gamma"),
        "ss_debiased_estimation": bool(params.get("debiased_estimation_loss")),
        "ss_zero_terminal_snr": bool(params.get("zero_terminal_snr")),
        "ss_loss_type": params.get("loss_type") or "l2",
        "ss_huber_schedule": params.get("huber_schedule"),
        "ss_huber_c": params.get("huber_c"),
        "ss_huber_scale": params.get("huber_scale"),
        "ss_optimizer": params.get("_optimizer_class") or params.get("_optimizer_name") or params.get("optimizer"),
        "ss_max_grad_norm": params.get("max_grad_norm"),
        "ss_caption_dropout_rate": params.get("caption_dropout_rate"),
        "ss_caption_tag_dropout_rate": params.get("caption_tag_dropout_rate"),
        "ss_caption_dropout_every_n_epochs": params.get("caption_dropout_every_n_epochs") or None,
        "ss_batch_size_per_device": params.get("batch_size"),
        "ss_total_batch_size": params.get("batch_size", 1) * params.get("grad_accum", 1),
        "ss_color_aug": bool(params.get("color_aug")),
        "ss_flip_aug": bool(params.get("flip_aug")),
        "ss_random_crop": bool(params.get("random_crop")),
        "ss_shuffle_caption": bool(params.get("shuffle_caption")),
        "ss_keep_tokens": params.get("keep_tokens"),
        "ss_enable_bucket": bool(params.get("enable_bucket")),
        "ss_bucket_no_upscale": bool(params.get("bucket_no_upscale")),
        "ss_min_bucket_reso": params.get("_min_bucket_reso") or params.get("min_bucket_reso"),
        "ss_max_bucket_reso": params.get("_max_bucket_reso") or params.get("max_bucket_reso"),
        "ss_sd_model_hash": params.get("_sd_model_hash"),
        "ss_new_sd_model_hash": params.get("_new_sd_model_hash"),
        "ss_dataset_dirs": json.dumps(dataset_dirs, ensure_ascii=False),
        "ss_reg_dataset_dirs": json.dumps({}),
        "ss_tag_frequency": json.dumps(tag_frequency, ensure_ascii=False),
        "ss_bucket_info": json.dumps(bucket_info or {}, ensure_ascii=False),
        "ss_training_comment": "trained with LoRA Factory",
        "ss_prior_loss_weight": 1.0,
    }
    if prediction_type == "v_prediction":
        meta["ss_v_parameterization"] = True
    out = {k: str(v) for k, v in meta.items() if v is not None}
    out.update({
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.architecture": f"{MODELSPEC_ARCH.get(arch, arch)}/lora",
        "modelspec.implementation": MODELSPEC_IMPL.get(arch, "diffusers"),
        "modelspec.title": output_name,
        "modelspec.resolution": f"{resolution[0]}x{resolution[1]}",
        "modelspec.date": datetime.fromtimestamp(int(now)).isoformat(),
        "modelspec.description": f"LoRA for {base_model_name}, trained with LoRA Factory",
        "modelspec.prediction_type": "v" if prediction_type == "v_prediction" else "epsilon",
    })
    if arch == "flux":
        out.pop("modelspec.prediction_type")
    if trigger:
        out["modelspec.trigger_phrase"] = trigger
    return out


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else float(value)


def save_kohya_file(path: Path, state_dict: dict[str, Any], metadata: dict[str, str], precision: str = "fp16") -> Path:
    """Write the kohya file (temp name, then renamed) in ``precision``, with kohya's model hashes."""
    import torch
    from safetensors.torch import save_file

    dtype = getattr(torch, _DTYPES.get(precision, "float16"))
    tensors = {k: (v.detach().to("cpu", dtype) if v.is_floating_point() else v.detach().cpu()).contiguous()
               for k, v in state_dict.items()}
    tensors = {k: (v.to(dtype) if k.endswith(".alpha") else v) for k, v in tensors.items()}
    metadata = dict(metadata)
    metadata["sshs_model_hash"], metadata["sshs_legacy_hash"] = _addnet_hashes(tensors, metadata)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(path)
    return path


def read_kohya_metadata(path: Path) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file (what A1111's LoRA card reads)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        return dict(fh.metadata() or {})
