"""Sample images during training: fixed prompts and seed, so step 100 and step 500 compare fairly.

The pipeline is assembled from the live training modules (the UNet / transformer with its LoRA
layers active), so a sample shows exactly what the adapter has learned so far, with nothing saved
or reloaded. Each PNG carries its settings like any generated image.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from lora_factory.plugins.image.png_info import save_png

# kohya's per-prompt options (sd-scripts train_util.line_to_prompt_dict): --n --w --h --s --l --d
_OPTIONS = {"n": ("negative_prompt", str), "w": ("width", int), "h": ("height", int), "s": ("steps", int),
            "l": ("guidance_scale", float), "d": ("seed", int)}


def parse_prompt_line(line: str) -> dict[str, Any]:
    """``"1girl, solo --n lowres --w 512 --h 768 --s 28 --l 7 --d 1"`` -> the prompt and its overrides.

    As sd-scripts: the line is split on ``" --"``; the first piece is the prompt; unknown or malformed options
    are ignored (sd-scripts logs and skips them too). Sizes and steps are clamped to what a sample can use.
    """
    pieces = line.split(" --")
    out: dict[str, Any] = {"prompt": pieces[0].strip()}
    for piece in pieces[1:]:
        match = re.match(r"(\w+)\s+(.+)", piece.strip())
        if not match or match.group(1).lower() not in _OPTIONS:
            continue
        key, cast = _OPTIONS[match.group(1).lower()]
        try:
            value = cast(match.group(2).strip())
        except ValueError:
            continue
        if key in ("width", "height"):
            value = max(16, min(4096, value))
        elif key == "steps":
            value = max(1, min(1000, value))
        elif key == "seed":  # torch's generator takes 64 bits; a larger one crashed the run at its first sample
            value %= 2**32
        elif key == "guidance_scale":
            if not math.isfinite(value):
                continue
            value = max(0.0, min(50.0, value))
        out[key] = value
    return out


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
                   arch: str, clip_skip: int | None = None, sampler: str | None = None) -> list[Path]:
    """One PNG per prompt line into ``out_dir`` (``step000100-0.png``); returns the paths. A line's kohya
    options (:func:`parse_prompt_line`) override the run's size, steps, CFG and seed for that prompt."""
    import torch

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if sampler and arch != "flux":
        from lora_factory.plugins.image.generate import make_scheduler

        pipe.scheduler = make_scheduler(sampler, pipe.scheduler.config)
    multiple = 16 if arch == "flux" else 8
    paths = []
    for i, line in enumerate(prompts):
        opts = parse_prompt_line(line)
        prompt, negative = opts["prompt"], opts.get("negative_prompt", "")
        width = max(multiple, opts.get("width", size[0]) // multiple * multiple)
        height = max(multiple, opts.get("height", size[1]) // multiple * multiple)
        image_seed, image_steps = opts.get("seed", seed + i), opts.get("steps", steps)
        scale = opts.get("guidance_scale", guidance)
        generator = torch.Generator(device="cpu").manual_seed(image_seed)
        kwargs: dict[str, Any] = {"num_inference_steps": image_steps, "guidance_scale": scale, "width": width,
                                  "height": height, "generator": generator}
        if arch == "flux":
            kwargs["max_sequence_length"] = 256
        elif clip_skip and clip_skip > 1:  # the run's clip skip, encoded as generation does
            from lora_factory.plugins.image.text_encoding import clip_skip_embeds

            kwargs.update(clip_skip_embeds(pipe, arch, prompt, negative, clip_skip, scale > 1.0))
        else:
            kwargs["negative_prompt"] = negative
        with torch.inference_mode(), torch.autocast(device_type="cuda", enabled=device == "cuda"):
            image = pipe(**({} if "prompt_embeds" in kwargs else {"prompt": prompt}), **kwargs).images[0]
        path = out_dir / f"step{step:06d}-{i}.png"
        save_png(image, path, {
            "prompt": prompt, "negative_prompt": negative, "seed": image_seed, "steps": image_steps,
            "guidance_scale": scale, "width": width, "height": height,
            "scheduler": "flow_euler" if arch == "flux" else (sampler or "dpmpp_2m"), "mode": "txt2img",
            "base_model_name": base_name, "adapters": [{"name": adapter_name, "weight": 1.0}], "training_step": step,
            "clip_skip": clip_skip,
        })
        paths.append(path)
    return paths
