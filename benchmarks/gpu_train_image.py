"""GPU throughput and peak memory of an image LoRA training step at real SD1.5 / SDXL size.

The UNet is built with the real architecture (SD1.5: 860M parameters, SDXL: 2.6B) and random weights
(nothing is downloaded), LoRA is added and each step runs through the same code as a train job
(``train_parts.add_lora`` / ``train_parts.batch_loss``: noise, timesteps, Min-SNR, mixed precision),
on latents and text-encoder outputs as the job has them cached. It prints steps/s, images/s and the
peak GPU memory for the chosen memory options, so the VRAM presets can be checked on a real card.

    python benchmarks/gpu_train_image.py --size sd15 [--batch-size 4] [--resolution 512] [--rank 16]
    python benchmarks/gpu_train_image.py --size sdxl --resolution 1024 --batch-size 1 --gradient-checkpointing
    python benchmarks/gpu_train_image.py --size tiny        # CPU smoke test of the script itself
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SD15 = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=768, attention_head_dim=8)
SDXL = dict(sample_size=128, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20), cross_attention_dim=2048,
            use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=2816)
TINY = dict(sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=32, attention_head_dim=8, norm_num_groups=16)
SIZES = {"sd15": ("sd15", SD15, 8, 77, 512), "sdxl": ("sdxl", SDXL, 8, 77, 1024), "tiny": ("sd15", TINY, 4, 77, 64)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="sd15")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--resolution", type=int, default=None, help="default: the model's native size")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--targets", choices=["attention", "transformer"], default="transformer")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--precision", choices=["auto", "no", "fp16", "bf16"], default="auto")
    parser.add_argument("--optimizer", choices=["auto", "adamw", "adamw8bit"], default="auto")
    args = parser.parse_args()

    import torch
    from diffusers import DDPMScheduler, UNet2DConditionModel

    from lora_factory.kit import devices
    from lora_factory.plugins.image import optimizers
    from lora_factory.plugins.image.presets import ImageTrainParams
    from lora_factory.plugins.image.train_parts import Parts, _dtype_of, add_lora, batch_loss, resolve_precision

    arch, config, vae_scale, tokens, native = SIZES[args.size]
    device = devices.pick_device()
    if args.size != "tiny" and device != "cuda":
        sys.exit("no CUDA GPU here: use --size tiny for a CPU smoke test")
    precision = resolve_precision(args.precision, device)
    resolution = args.resolution or native
    params = ImageTrainParams(rank=args.rank, alpha=args.rank / 2, unet_targets=args.targets,
                              gradient_checkpointing=args.gradient_checkpointing, mixed_precision=args.precision,
                              optimizer=args.optimizer, min_snr_gamma=5.0, noise_offset=0.05)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**config).to(device, _dtype_of(precision))
    unet.requires_grad_(False)
    parts = Parts(arch=arch, denoiser=unet, vae=None, tokenizers=[], text_encoders=[],
                  noise_scheduler=DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear"),
                  scheduler_config={}, vae_scale=vae_scale, bucket_step=64, native_resolution=native,
                  prediction_type="epsilon")
    add_lora(parts, params)
    lora = [p for p in unet.parameters() if p.requires_grad]
    # the train job's own choice: auto / adamw8bit fall back to AdamW without bitsandbytes (logged), never a crash
    optimizer_name = optimizers.resolve_name(args.optimizer, device, print)
    optimizer, _ = optimizers.build_optimizer(optimizer_name, [{"params": lora, "lr": 1e-4}], 1e-4, {}, print)
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    side = resolution // vae_scale
    bs = args.batch_size
    latents = torch.randn(bs, 4, side, side, device=device)
    cond = {"prompt_embeds": torch.randn(bs, tokens, config["cross_attention_dim"], device=device),
            "pooled": torch.randn(bs, 1280, device=device) if arch == "sdxl" else None}
    time_ids = torch.tensor([[resolution, resolution, 0, 0, resolution, resolution]] * bs, dtype=torch.float32, device=device)
    generator = torch.Generator().manual_seed(0)

    def step() -> float:
        loss = batch_loss(parts, latents, cond, time_ids, params, generator,
                          torch.autocast("cuda", dtype=_dtype_of(precision), enabled=precision in ("fp16", "bf16")))
        (scaler.scale(loss) if scaler else loss).backward()
        if scaler:
            scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(lora, 1.0)
        if scaler:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    for _ in range(args.warmup):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(args.steps):
        last = step()
    if device == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    report = {
        "size": args.size, "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
        "unet_parameters_m": round(sum(p.numel() for p in unet.parameters()) / 1e6, 1),
        "lora_parameters_m": round(sum(p.numel() for p in lora) / 1e6, 2), "resolution": resolution, "batch_size": bs,
        "precision": precision, "optimizer": optimizer_name, "gradient_checkpointing": args.gradient_checkpointing,
        "targets": args.targets, "rank": args.rank, "steps_per_s": round(args.steps / elapsed, 3),
        "images_per_s": round(args.steps * bs / elapsed, 3), "peak_vram_mb": devices.peak_memory_mb(), "last_loss": round(last, 4),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
