"""The models of an image LoRA run and the loss of one batch, per architecture.

SD1.x / SD2 / SDXL follow diffusers' ``train_text_to_image_lora(_sdxl).py``: DDPM noise schedule,
epsilon or v-prediction target, optional Min-SNR weighting and noise offset. Flux follows diffusers'
``flux_lora_quantization`` research recipe: flow matching (``noise - latents`` target), packed 2x2
latents, the transformer optionally in 4-bit NF4 (QLoRA, CUDA only).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lora_factory.kit import LoRAFactoryError

UNET_ATTENTION = ["to_q", "to_k", "to_v", "to_out.0"]
UNET_TRANSFORMER = UNET_ATTENTION + ["proj_in", "proj_out", "ff.net.0.proj", "ff.net.2"]
FLUX_ATTENTION = ["to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out"]
FLUX_TRANSFORMER = FLUX_ATTENTION + ["ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj", "ff_context.net.2",
                                     "proj_mlp", "proj_out"]
TEXT_ENCODER_ATTENTION = ["q_proj", "k_proj", "v_proj", "out_proj"]
TEXT_ENCODER_TRANSFORMER = TEXT_ENCODER_ATTENTION + ["fc1", "fc2"]


@dataclass
class Parts:
    """Everything the loop needs from the base model."""

    arch: str
    denoiser: Any  # UNet2DConditionModel or FluxTransformer2DModel
    vae: Any
    tokenizers: list[Any]
    text_encoders: list[Any]
    noise_scheduler: Any
    scheduler_config: Any
    vae_scale: int
    bucket_step: int
    native_resolution: int
    prediction_type: str
    trainable: dict[str, Any] = field(default_factory=dict)  # component name -> module with LoRA
    flux_helper: Any = None  # a FluxPipeline without transformer, for encode_prompt / packing
    clip_skip: int | None = None  # kohya --clip_skip (SD / SDXL text encoding)
    max_token_length: int | None = None  # kohya --max_token_length (75-token chunks)

    @property
    def denoiser_name(self) -> str:
        return "transformer" if self.arch == "flux" else "unet"


def _dtype_of(name: str) -> Any:
    import torch

    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(name, torch.float32)


def resolve_precision(mixed_precision: str, device: str) -> str:
    """``no`` on a CPU; ``auto`` on a GPU is bf16 where supported, else fp16."""
    if device != "cuda":
        return "no"
    if mixed_precision != "auto":
        return mixed_precision
    import torch

    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def vae_dtype_name(precision: str, no_half_vae: bool) -> str:
    """The VAE's dtype: fp32 under fp16 (SDXL's VAE overflows there) or with kohya's ``--no_half_vae``."""
    return "fp32" if precision == "fp16" or no_half_vae else precision


def load_vae(base: Path, vae_path: Path | None, dtype: Any) -> Any:
    """The base's VAE, or another one for training (``vae``: a diffusers folder, or one ``.safetensors`` from
    Civitai read with the base's VAE config), as sd-scripts' ``--vae``."""
    from diffusers import AutoencoderKL

    if vae_path is None:
        return AutoencoderKL.from_pretrained(base, subfolder="vae", torch_dtype=dtype)
    vae_path = Path(vae_path)
    if (vae_path / "config.json").is_file():
        return AutoencoderKL.from_pretrained(vae_path, torch_dtype=dtype)
    single = [vae_path] if vae_path.is_file() else sorted(vae_path.glob("*.safetensors"))
    if not single:
        raise LoRAFactoryError("MODEL_INVALID", f"VAE「{vae_path.name}」に重みがありません。",
                               f"The VAE '{vae_path.name}' has no weights.", 422, detail={"field": "vae"})
    return AutoencoderKL.from_single_file(str(single[0]), config=str(Path(base) / "vae"), torch_dtype=dtype)


def load_parts(base: Path, arch: str, device: str, precision: str, params: Any, log: Any,
               vae_path: Path | None = None) -> Parts:
    """Load the base model's modules, frozen, on ``device`` (the VAE stays fp32 under fp16: SDXL's overflows)."""
    from diffusers import DDPMScheduler, FlowMatchEulerDiscreteScheduler
    from transformers import AutoTokenizer

    weight_dtype = _dtype_of(precision)
    base = Path(base)
    scheduler_config = json.loads((base / "scheduler" / "scheduler_config.json").read_text(encoding="utf-8"))
    vae = load_vae(base, vae_path, _dtype_of(vae_dtype_name(precision, getattr(params, "no_half_vae", False))))
    vae_scale = 2 ** (len(vae.config.block_out_channels) - 1)
    tokenizers = [AutoTokenizer.from_pretrained(base, subfolder="tokenizer")]
    if arch == "flux":
        from diffusers import FluxTransformer2DModel
        from transformers import CLIPTextModel, T5EncoderModel

        tokenizers.append(AutoTokenizer.from_pretrained(base, subfolder="tokenizer_2"))
        encoders = [CLIPTextModel.from_pretrained(base, subfolder="text_encoder", dtype=weight_dtype),
                    T5EncoderModel.from_pretrained(base, subfolder="text_encoder_2", dtype=weight_dtype)]
        quant = None
        if params.quantize_base == "nf4":
            if device != "cuda":
                log("nf4 は CUDA GPU でのみ使えます。量子化せずに学習します / nf4 needs a CUDA GPU: training unquantized")
            else:
                from diffusers import BitsAndBytesConfig

                quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                           bnb_4bit_compute_dtype=weight_dtype)
        denoiser = FluxTransformer2DModel.from_pretrained(base, subfolder="transformer", torch_dtype=weight_dtype,
                                                          quantization_config=quant)
        if quant is not None:
            from peft import prepare_model_for_kbit_training

            denoiser = prepare_model_for_kbit_training(denoiser, use_gradient_checkpointing=False)
            log("transformer: 4-bit NF4 (QLoRA)")
        noise_scheduler = FlowMatchEulerDiscreteScheduler.from_config(scheduler_config)
        bucket_step = vae_scale * 2
        prediction = "flow_matching"
    else:
        from diffusers import UNet2DConditionModel
        from transformers import CLIPTextModel

        encoders = [CLIPTextModel.from_pretrained(base, subfolder="text_encoder", dtype=weight_dtype)]
        if arch == "sdxl":
            from transformers import CLIPTextModelWithProjection

            tokenizers.append(AutoTokenizer.from_pretrained(base, subfolder="tokenizer_2"))
            encoders.append(CLIPTextModelWithProjection.from_pretrained(base, subfolder="text_encoder_2",
                                                                        dtype=weight_dtype))
        denoiser = UNet2DConditionModel.from_pretrained(base, subfolder="unet", torch_dtype=weight_dtype)
        noise_scheduler = DDPMScheduler.from_config(
            scheduler_config, **({"rescale_betas_zero_snr": True} if params.zero_terminal_snr else {}))
        bucket_step = vae_scale * 2 ** (len(denoiser.config.block_out_channels) - 1)
        prediction = scheduler_config.get("prediction_type", "epsilon") if params.prediction_type == "auto" \
            else params.prediction_type
        noise_scheduler.register_to_config(prediction_type=prediction)
    # the UNet's native latent size times the VAE factor (512 SD1.5, 768 SD2-v, 1024 SDXL); Flux: the VAE's
    sample_size = getattr(denoiser.config, "sample_size", None) if arch != "flux" else None
    native = int(sample_size * vae_scale) if isinstance(sample_size, int) else int(vae.config.sample_size or 1024)
    for module in [vae, denoiser, *encoders]:
        module.requires_grad_(False)
        module.eval()
    vae.to(device)
    if not getattr(denoiser, "is_quantized", False):
        denoiser.to(device)
    for encoder in encoders:
        encoder.to(device)
    parts = Parts(arch=arch, denoiser=denoiser, vae=vae, tokenizers=tokenizers, text_encoders=encoders,
                  noise_scheduler=noise_scheduler, scheduler_config=scheduler_config, vae_scale=vae_scale,
                  bucket_step=bucket_step, native_resolution=native, prediction_type=prediction,
                  clip_skip=getattr(params, "clip_skip", None), max_token_length=getattr(params, "max_token_length", None))
    if arch == "flux":
        from diffusers import FluxPipeline

        parts.flux_helper = FluxPipeline(scheduler=noise_scheduler, vae=vae, text_encoder=encoders[0],
                                         tokenizer=tokenizers[0], text_encoder_2=encoders[1],
                                         tokenizer_2=tokenizers[1], transformer=None)
    return parts


# kohya's LoCon targets: the convolutions of ResnetBlock2D, Downsample2D and Upsample2D (a peft regex)
UNET_CONV = r"resnets\.\d+\.(conv1|conv2|conv_shortcut)|(down|up)samplers\.\d+\.conv"


def network_config(params: Any, targets: list[str], conv: bool) -> Any:
    """The peft config of ``params.network_type``: LoRA (LoCon with ``conv``), LoHa or LoKr, same rank / alpha."""
    from peft import LoHaConfig, LoKrConfig, LoraConfig

    conv_dim = params.conv_dim or params.rank
    conv_alpha = params.conv_alpha or params.alpha
    target: Any = targets
    ranks: dict[str, Any] = {}
    if conv:
        names = "|".join(t.replace(".", "\\.") for t in targets)
        target = rf".*\.({names})$|.*\.({UNET_CONV})$"
        ranks = {"rank_pattern": {UNET_CONV: conv_dim}, "alpha_pattern": {UNET_CONV: conv_alpha}}
    if params.network_type == "loha":
        return LoHaConfig(r=params.rank, alpha=params.alpha, module_dropout=params.dropout, target_modules=target, **ranks)
    if params.network_type == "lokr":
        return LoKrConfig(r=params.rank, alpha=params.alpha, module_dropout=params.dropout, target_modules=target, **ranks)
    return LoraConfig(r=params.rank, lora_alpha=params.alpha, lora_dropout=params.dropout, init_lora_weights="gaussian",
                      target_modules=target, **ranks)


def add_lora(parts: Parts, params: Any) -> dict[str, Any]:
    """The network (LoRA, LoCon, LoHa, LoKr, DoRA) on the denoiser (and the text encoders when asked); trainable
    weights kept in fp32 (bf16 with ``full_bf16``)."""
    from diffusers.training_utils import cast_training_params

    if parts.arch == "flux":
        targets = FLUX_ATTENTION if params.unet_targets == "attention" else FLUX_TRANSFORMER
    else:
        targets = UNET_ATTENTION if params.unet_targets == "attention" else UNET_TRANSFORMER
    names = [name for name, _ in parts.denoiser.named_modules()]
    targets = [t for t in targets if any(n == t or n.endswith("." + t) for n in names)]
    conv = parts.arch != "flux" and (params.network_type == "locon" or params.conv_dim is not None)
    config = network_config(params, targets, conv)
    if params.network_type == "lora":
        parts.denoiser.add_adapter(config)
    else:  # diffusers' add_adapter knows LoRA only; peft injects the others the same way
        _inject(parts.denoiser, config)
    trainable = {parts.denoiser_name: parts.denoiser}
    if params.train_text_encoder:
        te_targets = TEXT_ENCODER_ATTENTION if params.unet_targets == "attention" else TEXT_ENCODER_TRANSFORMER
        for i, encoder in enumerate(parts.text_encoders):
            if parts.arch == "flux" and i == 1:
                continue  # T5 is far too large to adapt here; Flux trains the CLIP encoder only
            _inject(encoder, network_config(params, te_targets, False))
            encoder.train()
            trainable["text_encoder" if i == 0 else "text_encoder_2"] = encoder
    if params.dora:  # LyCORIS' dora_wd on every adapted layer (see dora.py)
        from lora_factory.plugins.image.dora import add_weight_decompose

        for module in trainable.values():
            add_weight_decompose(module)
    # kohya's --full_bf16: the network itself in bf16 (its gradients and optimizer state follow); else fp32
    cast_training_params(list(trainable.values()), dtype=_bfloat16() if params.full_bf16 else _float32())
    if params.gradient_checkpointing:
        parts.denoiser.enable_gradient_checkpointing()
        for name, module in trainable.items():
            if name.startswith("text_encoder"):
                module.gradient_checkpointing_enable()
    parts.denoiser.train()
    parts.trainable = trainable
    return trainable


def _inject(module: Any, config: Any) -> None:
    """peft's injection directly: transformers' ``add_adapter`` insists on a newer peft than diffusers needs,
    and diffusers' knows LoRA only; same result (layers named like peft's, ``peft_config["default"]`` for
    saving), only the adapter's parameters trainable."""
    from peft import inject_adapter_in_model

    inject_adapter_in_model(config, module, adapter_name="default")
    module.peft_config = {"default": config}
    for name, param in module.named_parameters():
        param.requires_grad_(any(tag in name for tag in ("lora_", "hada_", "lokr_")))


def _float32() -> Any:
    import torch

    return torch.float32


def _bfloat16() -> Any:
    import torch

    return torch.bfloat16


def encode_latents(parts: Parts, pixels: Any, generator: Any = None) -> Any:
    """Pixels (B, 3, H, W) in [-1, 1] -> scaled latents (Flux: shifted too), sampled from the VAE.

    :param generator: the draw's own generator (a cache split across ranks stays the same numbers as
        one process's); None draws from the global one."""
    import torch

    vae = parts.vae
    with torch.no_grad():
        dist = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist
        if generator is not None:
            noise = torch.randn(dist.mean.shape, generator=generator, dtype=dist.mean.dtype).to(dist.mean.device)
            latents = dist.mean + dist.std * noise
        else:
            latents = dist.sample()
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return ((latents - shift) * vae.config.scaling_factor).float()


def encode_text(parts: Parts, captions: list[str], device: str) -> dict[str, Any]:
    """The conditioning of a caption batch: ``prompt_embeds`` (+ ``pooled``, Flux ``text_ids``)."""
    if parts.arch == "flux":
        prompt_embeds, pooled, text_ids = parts.flux_helper.encode_prompt(
            prompt=captions, prompt_2=captions, device=device, max_sequence_length=_flux_max_length(parts))
        return {"prompt_embeds": prompt_embeds, "pooled": pooled, "text_ids": text_ids}
    from lora_factory.plugins.image.text_encoding import encode_prompts

    prompt_embeds, pooled = encode_prompts(captions, parts.tokenizers, parts.text_encoders, device,
                                           clip_skip=parts.clip_skip, max_token_length=parts.max_token_length)
    return {"prompt_embeds": prompt_embeds, "pooled": pooled}


def _flux_max_length(parts: Parts) -> int:
    return min(512, int(getattr(parts.tokenizers[1], "model_max_length", 512) or 512))


def batch_loss(parts: Parts, latents: Any, cond: dict[str, Any], time_ids: Any, params: Any, generator: Any,
               autocast: Any = None, sample_weights: Any = None, share: tuple[slice, int] | None = None) -> Any:
    """The training loss of one batch (scalar).

    :param autocast: a context for the denoiser's forward (a plain loop's ``torch.autocast``); none in a
        training run, whose accelerator-prepared denoiser runs its forward under autocast itself.
    :param sample_weights: (B,) factors of each image's loss before the batch mean (kohya's
        ``prior_loss_weight`` for regularisation images); None = all 1. With ``share``: this rank's rows only.
    :param share: ``(rows, global size)`` when ``latents`` are one rank's rows of a global batch: noise,
        offsets, pyramid noise and timesteps are drawn for the whole batch (the same numbers on every rank)
        and these rows kept, so N ranks see exactly the draws of one process training the whole batch.
    """
    import contextlib

    import torch
    import torch.nn.functional as F

    device = latents.device
    rows, bsz = share if share is not None else (slice(0, latents.shape[0]), latents.shape[0])
    from lora_factory.plugins.image import noise_loss

    # the whole (global) batch's noise, then this rank's rows: the pyramid's std is the whole batch's
    noise = torch.randn((bsz, *latents.shape[1:]), generator=generator, device="cpu").to(device)
    noise = noise_loss.offset_noise(latents, noise, params, generator, rows=rows)
    if params.multires_noise_iterations:
        noise = noise_loss.pyramid_noise(noise, params.multires_noise_iterations, params.multires_noise_discount, generator)
    noise = noise[rows]
    autocast = autocast if autocast is not None else contextlib.nullcontext()
    if parts.arch == "flux":
        return _flux_loss(parts, latents, noise, cond, generator, autocast, sample_weights, rows, bsz)
    scheduler = parts.noise_scheduler
    timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (bsz,), generator=generator)[rows]
    timesteps = timesteps.to(device).long()
    if params.ip_noise_gamma:  # input perturbation: the noisy latents get more noise than the target says
        extra = torch.randn((bsz, *latents.shape[1:]), generator=generator)[rows].to(device)
        noisy = scheduler.add_noise(latents, noise + params.ip_noise_gamma * extra, timesteps)
    else:
        noisy = scheduler.add_noise(latents, noise, timesteps)
    target = noise if parts.prediction_type == "epsilon" else scheduler.get_velocity(latents, noise, timesteps)
    added = None
    if parts.arch == "sdxl":
        added = {"text_embeds": cond["pooled"], "time_ids": time_ids}
    dtype = parts.denoiser.dtype
    with autocast:
        pred = parts.denoiser(noisy.to(dtype), timesteps, cond["prompt_embeds"].to(dtype),
                              added_cond_kwargs=added, return_dict=False)[0]
    if noise_loss.uses_kohya_extras(params):
        from diffusers.training_utils import compute_snr

        threshold = noise_loss.huber_c(params, timesteps, scheduler) if params.loss_type != "l2" else None
        loss = noise_loss.per_image_loss(pred, target, params, threshold)
        if sample_weights is not None:
            loss = loss * sample_weights
        v_prediction = parts.prediction_type != "epsilon"
        if params.min_snr_gamma or params.debiased_estimation_loss:
            snr = compute_snr(scheduler, timesteps)
        if params.min_snr_gamma:
            gamma = torch.minimum(snr, torch.full_like(snr, params.min_snr_gamma))
            loss = loss * (gamma / (snr + 1) if v_prediction else gamma / snr)
        if params.debiased_estimation_loss:
            loss = loss * noise_loss.debiased_weights(snr, v_prediction)
        return loss.mean()
    if params.min_snr_gamma:
        from diffusers.training_utils import compute_snr

        snr = compute_snr(scheduler, timesteps)
        weights = torch.stack([snr, params.min_snr_gamma * torch.ones_like(snr)], dim=1).min(dim=1)[0]
        weights = weights / snr if parts.prediction_type == "epsilon" else weights / (snr + 1)
        loss = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=(1, 2, 3)) * weights
        return (loss * sample_weights).mean() if sample_weights is not None else loss.mean()
    if sample_weights is not None:
        return (F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=(1, 2, 3)) * sample_weights).mean()
    return F.mse_loss(pred.float(), target.float(), reduction="mean")


def _flux_loss(parts: Parts, latents: Any, noise: Any, cond: dict[str, Any], generator: Any, autocast: Any,
               sample_weights: Any = None, rows: slice | None = None, global_bsz: int | None = None) -> Any:
    import torch
    from diffusers import FluxPipeline

    scheduler = parts.noise_scheduler
    bsz, channels, height, width = latents.shape
    device = latents.device
    u = torch.rand((global_bsz or bsz,), generator=generator)[rows if rows is not None else slice(None)]
    indices = (u * scheduler.config.num_train_timesteps).long().clamp(max=len(scheduler.timesteps) - 1)
    timesteps = scheduler.timesteps[indices].to(device)
    sigmas = scheduler.sigmas[indices].to(device, latents.dtype).view(bsz, 1, 1, 1)
    noisy = (1.0 - sigmas) * latents + sigmas * noise
    packed = FluxPipeline._pack_latents(noisy, bsz, channels, height, width)
    image_ids = FluxPipeline._prepare_latent_image_ids(bsz, height // 2, width // 2, device, latents.dtype)
    transformer = parts.denoiser
    guidance = torch.full((bsz,), 1.0, device=device) if transformer.config.guidance_embeds else None
    dtype = parts.text_encoders[0].dtype
    with autocast:
        pred = transformer(hidden_states=packed.to(dtype), timestep=timesteps / 1000, guidance=guidance,
                           pooled_projections=cond["pooled"].to(dtype), encoder_hidden_states=cond["prompt_embeds"].to(dtype),
                           txt_ids=cond["text_ids"], img_ids=image_ids, return_dict=False)[0]
    pred = FluxPipeline._unpack_latents(pred, height=height * parts.vae_scale, width=width * parts.vae_scale,
                                        vae_scale_factor=parts.vae_scale)
    target = noise - latents
    per_image = torch.mean(((pred.float() - target.float()) ** 2).reshape(bsz, -1), 1)
    return (per_image * sample_weights).mean() if sample_weights is not None else per_image.mean()


def check_base(base: Path) -> None:
    if not (Path(base) / "model_index.json").is_file():
        raise LoRAFactoryError("MODEL_INVALID", f"ベースモデル「{Path(base).name}」は diffusers 形式ではありません(model_index.json がありません)。",
                               f"The base model '{Path(base).name}' is not a diffusers pipeline (no model_index.json).",
                               422, detail={"field": "base_model", "path": str(base)})
