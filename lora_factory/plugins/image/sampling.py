"""Sample images during training: fixed prompts and seed, so step 100 and step 500 compare fairly.

The pipeline is assembled from the live training modules (the UNet / transformer with its LoRA
layers active), so a sample shows exactly what the adapter has learned so far, with nothing saved
or reloaded. Each PNG carries its settings like any generated image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lora_factory.plugins.image.png_info import save_png


def sampling_pipeline(arch: str, parts: dict[str, Any], base_scheduler_config: Any) -> Any:
    """A diffusers pipeline over the training modules (nothing copied)."""
    if arch == "flux":
        from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline

        return FluxPipeline(transformer=parts["transformer"], vae=parts["vae"], text_encoder=parts["text_encoder"],
                            text_encoder_2=parts["text_encoder_2"], tokenizer=parts["tokenizer"],
                            tokenizer_2=parts["tokenizer_2"],
                            scheduler=FlowMatchEulerDiscreteScheduler.from_config(base_scheduler_config))
    from diffusers import DPMSolverMultistepScheduler

    scheduler = DPMSolverMultistepScheduler.from_config(base_scheduler_config)
    if arch == "sdxl":
        from diffusers import StableDiffusionXLPipeline

        return StableDiffusionXLPipeline(vae=parts["vae"], text_encoder=parts["text_encoder"],
                                         text_encoder_2=parts["text_encoder_2"], tokenizer=parts["tokenizer"],
                                         tokenizer_2=parts["tokenizer_2"], unet=parts["unet"], scheduler=scheduler)
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(vae=parts["vae"], text_encoder=parts["text_encoder"], tokenizer=parts["tokenizer"],
                                   unet=parts["unet"], scheduler=scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)


def render_samples(pipe: Any, prompts: list[str], *, step: int, out_dir: Path, seed: int, steps: int,
                   guidance: float, size: tuple[int, int], device: str, base_name: str, adapter_name: str,
                   arch: str, clip_skip: int | None = None) -> list[Path]:
    """One PNG per prompt into ``out_dir`` (``step000100-0.png``); returns the paths."""
    import torch

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    width, height = size
    paths = []
    for i, prompt in enumerate(prompts):
        generator = torch.Generator(device="cpu").manual_seed(seed + i)
        kwargs: dict[str, Any] = {"num_inference_steps": steps, "guidance_scale": guidance, "width": width,
                                  "height": height, "generator": generator}
        if arch == "flux":
            kwargs["max_sequence_length"] = 256
        elif clip_skip and clip_skip > 1:  # the run's clip skip, encoded as generation does
            from lora_factory.plugins.image.text_encoding import clip_skip_embeds

            kwargs.update(clip_skip_embeds(pipe, arch, prompt, "", clip_skip, guidance > 1.0))
        else:
            kwargs["negative_prompt"] = ""
        with torch.inference_mode(), torch.autocast(device_type="cuda", enabled=device == "cuda"):
            image = pipe(**({} if "prompt_embeds" in kwargs else {"prompt": prompt}), **kwargs).images[0]
        path = out_dir / f"step{step:06d}-{i}.png"
        save_png(image, path, {
            "prompt": prompt, "seed": seed + i, "steps": steps, "guidance_scale": guidance, "width": width,
            "height": height, "scheduler": "flow_euler" if arch == "flux" else "dpmpp_2m", "mode": "txt2img",
            "base_model_name": base_name, "adapters": [{"name": adapter_name, "weight": 1.0}], "training_step": step,
            "clip_skip": clip_skip,
        })
        paths.append(path)
    return paths
