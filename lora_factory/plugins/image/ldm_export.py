"""Write a diffusers SD1.x pipeline as one original-layout (LDM) ``.safetensors`` checkpoint, the
single-file kind A1111 / Forge / ComfyUI load from ``models/Stable-diffusion`` (and Civitai hosts).

The mapping is the inverse of diffusers' ``single_file_utils`` (UNet ``input_blocks`` / ``middle_block``
/ ``output_blocks``, VAE ``encoder.down.N.block.M``, CLIP under ``cond_stage_model.transformer``),
written for any block count, so the tiny pipeline converts too: the tests and the conformance scenario
use it to make a checkpoint that the single-file import must turn back into the same pipeline.
"""

from __future__ import annotations

from pathlib import Path

RESNET = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"), ("conv2", "out_layers.3"),
          ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection")]
UNET_TOP = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
            "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}


def _resnet(key: str) -> str:
    for new, old in RESNET:
        key = key.replace(f".{new}.", f".{old}.")
    return key


def unet_to_ldm(state: dict, config: dict) -> dict:
    per = config["layers_per_block"]
    n = len(config["block_out_channels"])
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        top = ".".join(parts[:-1])
        if top in UNET_TOP:
            out[f"{UNET_TOP[top]}.{parts[-1]}"] = value
            continue
        if parts[0] == "down_blocks":
            b, kind, j = int(parts[1]), parts[2], int(parts[3])
            rest = ".".join(parts[4:])
            if kind == "resnets":
                out[_resnet(f"input_blocks.{b * (per + 1) + j + 1}.0.{rest}")] = value
            elif kind == "attentions":
                out[f"input_blocks.{b * (per + 1) + j + 1}.1.{rest}"] = value
            else:  # downsamplers.0.conv
                out[f"input_blocks.{(b + 1) * (per + 1)}.0.op.{parts[-1]}"] = value
        elif parts[0] == "mid_block":
            kind, j, rest = parts[1], int(parts[2]), ".".join(parts[3:])
            out[_resnet(f"middle_block.{2 * j}.{rest}") if kind == "resnets" else f"middle_block.1.{rest}"] = value
        elif parts[0] == "up_blocks":
            b, kind, j = int(parts[1]), parts[2], int(parts[3])
            rest = ".".join(parts[4:])
            if kind == "resnets":
                out[_resnet(f"output_blocks.{b * (per + 1) + j}.0.{rest}")] = value
            elif kind == "attentions":
                out[f"output_blocks.{b * (per + 1) + j}.1.{rest}"] = value
            else:  # upsamplers.0.conv: after the attention when the block has one
                has_attention = any(k.startswith(f"up_blocks.{b}.attentions.") for k in state)
                out[f"output_blocks.{b * (per + 1) + per}.{2 if has_attention else 1}.conv.{parts[-1]}"] = value
        else:
            raise KeyError(key)
    assert n >= 1
    return {f"model.diffusion_model.{k}": v for k, v in out.items()}


def vae_to_ldm(state: dict, config: dict) -> dict:
    n = len(config["block_out_channels"])
    out = {}
    for key, value in state.items():
        new = key.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
        parts = new.split(".")
        if parts[1] == "down_blocks":
            i = parts[2]
            new = (f"encoder.down.{i}.block.{'.'.join(parts[4:])}" if parts[3] == "resnets"
                   else f"encoder.down.{i}.downsample.{'.'.join(parts[5:])}")
        elif parts[1] == "up_blocks":
            i = n - 1 - int(parts[2])
            new = (f"decoder.up.{i}.block.{'.'.join(parts[4:])}" if parts[3] == "resnets"
                   else f"decoder.up.{i}.upsample.{'.'.join(parts[5:])}")
        elif parts[1] == "mid_block" and parts[2] == "resnets":
            new = f"{parts[0]}.mid.block_{int(parts[3]) + 1}.{'.'.join(parts[4:])}"
        elif parts[1] == "mid_block" and parts[2] == "attentions":
            inner = ".".join(parts[4:])
            inner = {"group_norm.weight": "norm.weight", "group_norm.bias": "norm.bias", "to_q.weight": "q.weight",
                     "to_q.bias": "q.bias", "to_k.weight": "k.weight", "to_k.bias": "k.bias", "to_v.weight": "v.weight",
                     "to_v.bias": "v.bias", "to_out.0.weight": "proj_out.weight", "to_out.0.bias": "proj_out.bias"}[inner]
            new = f"{parts[0]}.mid.attn_1.{inner}"
            if value.ndim == 2:
                value = value[:, :, None, None]  # LDM's attention is a 1x1 convolution
        out[new] = value
    return {f"first_stage_model.{k}": v for k, v in out.items()}


def save_sd15_single_file(pipeline_dir: Path, out_file: Path) -> Path:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextModel

    unet = UNet2DConditionModel.from_pretrained(pipeline_dir, subfolder="unet")
    vae = AutoencoderKL.from_pretrained(pipeline_dir, subfolder="vae")
    text = CLIPTextModel.from_pretrained(pipeline_dir, subfolder="text_encoder")
    tensors = unet_to_ldm(unet.state_dict(), unet.config)
    tensors.update(vae_to_ldm(vae.state_dict(), vae.config))
    for key, value in text.state_dict().items():
        canonical = key if key.startswith("text_model.") else f"text_model.{key}"
        tensors[f"cond_stage_model.transformer.{canonical}"] = value
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(out_file))
    return out_file
