"""kohya's noise and loss options for SD / SDXL training (sd-scripts ``library/custom_train_functions.py`` and
``train_util.get_noise_noisy_latents_and_timesteps`` / ``conditional_loss``), drawn from the run's generator so a
run stays reproducible and resumable.

- ``adaptive_noise_scale``: the noise offset grows with each latent channel's absolute mean;
- ``multires_noise_iterations`` / ``discount``: pyramid (multi-resolution) noise, rescaled to unit std;
- ``ip_noise_gamma``: input perturbation, extra noise in the noisy latents only (the target keeps the noise);
- ``zero_terminal_snr``: the DDPM betas rescaled so the last step is pure noise (diffusers'
  ``rescale_betas_zero_snr``, the same formula as sd-scripts');
- ``debiased_estimation_loss``: each image's loss times ``1 / sqrt(SNR)`` (``1 / (SNR + 1)`` for v-prediction),
  SNR capped at 1000;
- ``loss_type`` ``l1`` / ``huber`` / ``smooth_l1`` with ``huber_c`` on a ``constant`` / ``exponential`` / ``snr``
  schedule of the timestep.
"""

from __future__ import annotations

import math
from typing import Any


def offset_noise(latents: Any, noise: Any, params: Any, generator: Any, rows: slice | None = None) -> Any:
    """``noise`` plus the (adaptive) noise offset, per image and channel.

    ``rows``: ``latents`` are these rows of ``noise``'s (global) batch, one rank's share: the offsets are drawn for
    the whole batch. The adaptive part needs each image's latents, so rows of other ranks get the plain offset
    (only their pyramid std, which mixes the whole batch, can then differ slightly from one process's).
    """
    import torch

    if not params.noise_offset:
        return noise
    bsz, channels = noise.shape[:2]
    offset: Any = params.noise_offset
    if params.adaptive_noise_scale is not None:
        mine = (offset + params.adaptive_noise_scale * latents.mean(dim=(2, 3), keepdim=True).abs()).clamp(min=0.0)
        if rows is None or mine.shape[0] == bsz:
            offset = mine
        else:
            offset = torch.full((bsz, channels, 1, 1), float(max(offset, 0.0)), dtype=mine.dtype, device=mine.device)
            offset[rows] = mine
    return noise + offset * torch.randn((bsz, channels, 1, 1), generator=generator).to(noise.device)


def pyramid_noise(noise: Any, iterations: int, discount: float, generator: Any) -> Any:
    """Multi-resolution noise: coarser random fields upsampled and added with weight ``discount ** i``."""
    import torch

    bsz, channels, height, width = noise.shape
    upsample = torch.nn.Upsample(size=(height, width), mode="bilinear")
    for i in range(iterations):
        r = float(torch.rand(1, generator=generator)) * 2 + 2  # not always 2x, as sd-scripts
        h, w = max(1, int(height / (r**i))), max(1, int(width / (r**i)))
        noise = noise + upsample(torch.randn((bsz, channels, h, w), generator=generator).to(noise.device)) * discount**i
        if h == 1 or w == 1:
            break
    return noise / noise.std()


def huber_c(params: Any, timesteps: Any, scheduler: Any) -> Any:
    """The Huber threshold of each image's timestep (sd-scripts' ``get_huber_threshold_if_needed``)."""
    import torch

    if params.huber_schedule == "exponential":
        alpha = -math.log(params.huber_c) / scheduler.config.num_train_timesteps
        return torch.exp(-alpha * timesteps.float()) * params.huber_scale
    if params.huber_schedule == "snr":
        alphas_cumprod = scheduler.alphas_cumprod.to(timesteps.device)[timesteps]
        sigmas = ((1.0 - alphas_cumprod) / alphas_cumprod) ** 0.5
        return (1 - params.huber_c) / (1 + sigmas) ** 2 + params.huber_c
    return torch.full(timesteps.shape, params.huber_c * params.huber_scale, device=timesteps.device)


def per_image_loss(pred: Any, target: Any, params: Any, threshold: Any) -> Any:
    """(B,) mean loss of each image for ``params.loss_type`` (sd-scripts' ``conditional_loss``)."""
    import torch
    import torch.nn.functional as F

    pred, target = pred.float(), target.float()
    if params.loss_type == "l1":
        loss = F.l1_loss(pred, target, reduction="none")
    elif params.loss_type in ("huber", "smooth_l1"):
        c = threshold.view(-1, *([1] * (pred.ndim - 1)))
        loss = 2 * (torch.sqrt((pred - target) ** 2 + c**2) - c)
        if params.loss_type == "huber":
            loss = c * loss
    else:
        loss = F.mse_loss(pred, target, reduction="none")
    return loss.mean(dim=tuple(range(1, pred.ndim)))


def debiased_weights(snr: Any, v_prediction: bool) -> Any:
    import torch

    snr = torch.minimum(snr, torch.full_like(snr, 1000.0))
    return 1 / (snr + 1) if v_prediction else 1 / torch.sqrt(snr)


def uses_kohya_extras(params: Any) -> bool:
    """Whether anything beyond plain MSE with Min-SNR is asked (the plain path stays bit-for-bit as before)."""
    return bool(params.multires_noise_iterations or params.ip_noise_gamma or params.debiased_estimation_loss
                or params.loss_type != "l2" or params.adaptive_noise_scale is not None)
