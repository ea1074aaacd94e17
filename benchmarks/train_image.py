"""Throughput of LoRA Factory's image training against a plain diffusers LoRA loop, in one run.

The plain loop is diffusers' ``train_text_to_image_lora.py`` recipe written out: every step loads the
batch's pictures, encodes them with the VAE and the captions with the text encoder, adds noise at
random timesteps, predicts it with the UNet (LoRA on to_q/k/v/out), Min-SNR-weighted MSE, AdamW.
Ours is ``train_image_adapter`` (a real train job's code) on the same tiny pipeline, pictures,
captions and hyper-parameters, once as shipped (latents and text-encoder outputs cached) and once
with the caches off (the same work per step as the plain loop).

Prints steps/s of each and the ratios; the loop time only (set-up, caching and the final sample
images are outside it), then end-to-end wall time. Default run: about a minute on a 2-core CPU.

    .venv/bin/python benchmarks/train_image.py [--steps 30] [--batch-size 2] [--images 8] [--resolution 64]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_dataset(root: Path, images: int, resolution: int) -> Path:
    from PIL import Image, ImageDraw

    folder = root / "1_bench"
    folder.mkdir(parents=True)
    rng = random.Random(0)
    for i in range(images):
        im = Image.new("RGB", (resolution, resolution), tuple(rng.randrange(256) for _ in range(3)))
        draw = ImageDraw.Draw(im)
        for _ in range(6):
            x, y = rng.randrange(resolution), rng.randrange(resolution)
            draw.ellipse((x, y, x + resolution // 4, y + resolution // 4), fill=tuple(rng.randrange(256) for _ in range(3)))
        im.save(folder / f"{i:03d}.png")
        (folder / f"{i:03d}.txt").write_text(f"bench, shape{i % 3}, colour{i % 4}", encoding="utf-8")
    return root


def run_ours(base: Path, data: Path, home: Path, job: str, params: dict) -> dict:
    from lora_factory.core.jobs.context import JobContext
    from lora_factory.core.storage.workspace import Workspace
    from lora_factory.plugins import image as plugin
    from lora_factory.plugins.image.train import train_image_adapter

    ws = Workspace(home)
    ctx = JobContext(job, ws, ws.run_dir(job), ws.log_path("train", job))
    spec = plugin.resolve_train_spec(modality="image", spec={"preset": "quick", "params": params})
    start = time.perf_counter()
    result = train_image_adapter(dict(spec, base_model=str(base), dataset=str(data), output_name=job), ctx)
    result["wall_s"] = time.perf_counter() - start
    return result


def run_plain(base: Path, data: Path, params: dict) -> dict:
    """train_text_to_image_lora.py's inner loop, on the CPU, fp32."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from diffusers.training_utils import cast_training_params, compute_snr
    from peft import LoraConfig
    from PIL import Image
    from transformers import CLIPTextModel, CLIPTokenizer

    wall = time.perf_counter()
    torch.manual_seed(params["seed"])
    scheduler = DDPMScheduler.from_pretrained(base, subfolder="scheduler")
    tokenizer = CLIPTokenizer.from_pretrained(base, subfolder="tokenizer")
    text_encoder = CLIPTextModel.from_pretrained(base, subfolder="text_encoder")
    vae = AutoencoderKL.from_pretrained(base, subfolder="vae")
    unet = UNet2DConditionModel.from_pretrained(base, subfolder="unet")
    for module in (unet, vae, text_encoder):
        module.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=params["rank"], lora_alpha=params["alpha"], init_lora_weights="gaussian",
                                target_modules=["to_k", "to_q", "to_v", "to_out.0"]))
    cast_training_params(unet, dtype=torch.float32)
    lora = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(lora, lr=params["learning_rate"], betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8)
    files = sorted(Path(data).rglob("*.png"))
    captions = [f.with_suffix(".txt").read_text(encoding="utf-8") for f in files]
    res, bs = params["resolution"], params["batch_size"]

    def pixels(path: Path) -> torch.Tensor:  # Resize + CenterCrop + ToTensor + Normalize([0.5], [0.5])
        with Image.open(path) as im:
            im = im.convert("RGB").resize((res, res), Image.Resampling.BILINEAR)
            return torch.from_numpy(np.asarray(im, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)

    order = list(range(len(files)))
    random.Random(params["seed"]).shuffle(order)
    unet.train()
    start = time.perf_counter()
    for step in range(params["max_steps"]):
        idx = [order[(step * bs + i) % len(order)] for i in range(bs)]
        batch = torch.stack([pixels(files[i]) for i in idx])
        ids = tokenizer([captions[i] for i in idx], max_length=tokenizer.model_max_length, padding="max_length",
                        truncation=True, return_tensors="pt").input_ids
        latents = vae.encode(batch).latent_dist.sample() * vae.config.scaling_factor
        noise = torch.randn_like(latents)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (bs,)).long()
        noisy = scheduler.add_noise(latents, noise, timesteps)
        hidden = text_encoder(ids, return_dict=False)[0]
        pred = unet(noisy, timesteps, hidden, return_dict=False)[0]
        snr = compute_snr(scheduler, timesteps)
        weights = torch.stack([snr, params["min_snr_gamma"] * torch.ones_like(timesteps)], dim=1).min(dim=1)[0] / snr
        loss = (F.mse_loss(pred.float(), noise.float(), reduction="none").mean(dim=(1, 2, 3)) * weights).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(lora, 1.0)
        optimizer.step()
        optimizer.zero_grad()
    elapsed = time.perf_counter() - start
    return {"steps_per_s": params["max_steps"] / elapsed, "final_loss": float(loss.detach()), "wall_s": time.perf_counter() - wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--arch", default="sd15", choices=["sd15"])
    args = parser.parse_args()

    from lora_factory.plugins.image.tiny_model import build_tiny_image_model

    tmp = Path(tempfile.mkdtemp(prefix="lf_bench_image_"))
    base = tmp / "tiny-sd15"
    build_tiny_image_model(base, args.arch)
    data = make_dataset(tmp / "data", args.images, args.resolution)
    params = {"max_steps": args.steps, "batch_size": args.batch_size, "rank": 8, "alpha": 8, "learning_rate": 1e-4,
              "resolution": args.resolution, "unet_targets": "attention", "min_snr_gamma": 5.0, "seed": 0,
              "sample_every_n_steps": 0, "sample_steps": 1, "save_every_n_steps": 0, "shuffle_caption": False,
              "caption_dropout_rate": 0.0, "noise_offset": 0.0, "enable_bucket": False, "optimizer": "adamw"}

    run_plain(base, data, {**params, "max_steps": 3})  # warm-up: one-time kernel / allocator costs
    plain = run_plain(base, data, params)
    ours = run_ours(base, data, tmp / "ws", "cached", params)
    uncached = run_ours(base, data, tmp / "ws", "uncached", {**params, "cache_latents": False,
                                                             "cache_text_encoder_outputs": False})
    print(f"tiny {args.arch} pipeline, {args.images} images at {args.resolution}px, batch {args.batch_size}, "
          f"{args.steps} steps, LoRA r8 on attention, fp32 CPU")
    print(f"plain diffusers loop (train_text_to_image_lora) : {plain['steps_per_s']:7.2f} steps/s  wall {plain['wall_s']:6.1f} s")
    print(f"ours, caches on (as shipped)                    : {ours['steps_per_s']:7.2f} steps/s  wall {ours['wall_s']:6.1f} s")
    print(f"ours, caches off (same work per step)           : {uncached['steps_per_s']:7.2f} steps/s  wall {uncached['wall_s']:6.1f} s")
    print(f"ours / plain (caches on)                        : {ours['steps_per_s'] / plain['steps_per_s']:.2f}")
    print(f"ours / plain (caches off)                       : {uncached['steps_per_s'] / plain['steps_per_s']:.2f}")


if __name__ == "__main__":
    main()
