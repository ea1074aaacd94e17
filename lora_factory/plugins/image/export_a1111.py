"""An image LoRA merged into its base and written as one A1111 / Forge / ComfyUI checkpoint.

Why diffusers' own ``fuse_lora`` and not a hand-written merge: it is the same code that applies the
LoRA at generation time (``set_adapters`` with a weight), so the merged checkpoint makes the picture the
base with the LoRA at that weight makes; the LDM key layout then comes from :mod:`ldm_export`, the
inverse of the single-file import. SD1.5 and SDXL; other architectures are refused with the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lora_factory.kit.files import write_text_atomic

LDM_ARCHES = ("sd15", "sdxl")
DTYPES = {"fp16": "float16", "fp32": "float32", "bf16": "bfloat16"}


def adapter_weights_file(adapter: Path) -> str:
    """The file diffusers loads: our diffusers-keyed weights, else the (kohya) ``.safetensors`` of the folder."""
    from lora_factory.plugins.image.export import DIFFUSERS_WEIGHT_NAME

    if (adapter / DIFFUSERS_WEIGHT_NAME).is_file():
        return DIFFUSERS_WEIGHT_NAME
    found = sorted(p.name for p in adapter.glob("*.safetensors"))
    if not found:
        raise FileNotFoundError(f"no .safetensors in {adapter}")
    return found[0]


def merged_pipeline(base: Path, adapter: Path, weight: float) -> Any:
    """The base pipeline (fp32, CPU) with the LoRA fused at ``weight`` and its LoRA layers removed."""
    import torch
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(str(base), torch_dtype=torch.float32)
    pipe.load_lora_weights(str(adapter), weight_name=adapter_weights_file(adapter), adapter_name="export")
    pipe.fuse_lora(lora_scale=float(weight), adapter_names=["export"])
    pipe.unload_lora_weights()
    return pipe


def write_checkpoint(pipe: Any, arch: str, path: Path, precision: str, metadata: dict[str, str]) -> dict[str, Any]:
    """The LDM state dict in ``precision``, written under a temporary name then renamed."""
    import torch
    from safetensors.torch import save_file

    from lora_factory.plugins.image.ldm_export import pipeline_to_ldm

    dtype = getattr(torch, DTYPES[precision])
    tensors = {k: (v.detach().to("cpu", dtype) if v.is_floating_point() else v.detach().cpu()).contiguous()
               for k, v in pipeline_to_ldm(pipe, arch).items()}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(path)
    return {"tensors": len(tensors), "dtype": precision, "size_bytes": path.stat().st_size}


def run_a1111(spec: dict[str, Any], ctx: Any) -> dict[str, Any]:
    base, adapter, name = Path(spec["base_model"]), Path(spec["adapter"]), spec["output_name"]
    params, arch = spec["params"], spec["architecture"]
    weight, precision = float(params["weight"]), params["precision"]
    out = Path(ctx.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    ctx.log(f"fuse {adapter.name} into {base.name} at weight {weight} ({arch})")
    pipe = merged_pipeline(base, adapter, weight)
    ctx.progress(1, 2)
    if ctx.should_stop():
        return {"stopped": True}
    file_name = f"{name}.safetensors"
    metadata = {"modelspec.sai_model_spec": "1.0.0", "modelspec.title": name,
                "modelspec.architecture": {"sd15": "stable-diffusion-v1", "sdxl": "stable-diffusion-xl-v1-base"}[arch],
                "modelspec.description": f"{spec.get('base_model_ref')} + {spec.get('adapter_ref')} at {weight}, "
                                         "merged by LoRA Factory",
                "lora_factory.merged_lora": str(spec.get("adapter_ref")), "lora_factory.lora_weight": str(weight)}
    ctx.log(f"write {file_name} in the LDM layout ({precision})")
    written = write_checkpoint(pipe, arch, out / file_name, precision, metadata)
    ctx.progress(2, 2)
    folder = "models/Stable-diffusion"
    commands = [f"cp {file_name} <stable-diffusion-webui>/{folder}/",
                f"cp {file_name} <ComfyUI>/models/checkpoints/",
                f"StableDiffusion{'XL' if arch == 'sdxl' else ''}Pipeline.from_single_file('{file_name}')"]
    write_text_atomic(out / "README.md", "\n".join([
        f"# {name}", "",
        f"`{spec.get('base_model_ref')}` に LoRA `{spec.get('adapter_ref')}` を重み {weight} でマージした"
        f"単一ファイルのチェックポイント ({arch}, {precision}) です。",
        f"A single-file checkpoint ({arch}, {precision}): `{spec.get('base_model_ref')}` with the LoRA "
        f"`{spec.get('adapter_ref')}` merged at weight {weight}.", "",
        "## 使い方 / use", "", "A1111 / Forge / SD.Next: `models/Stable-diffusion/`; ComfyUI: `models/checkpoints/`.",
        "", "```", *commands, "```", ""]))
    return {"files": [file_name, "README.md"], "primary": file_name,
            "opens_in": ["AUTOMATIC1111", "Forge", "SD.Next", "ComfyUI", "diffusers (from_single_file)"],
            "commands": commands, "checks": {"architecture": arch, "weight": weight, **written}, "warnings": []}
