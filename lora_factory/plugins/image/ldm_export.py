"""Write a diffusers SD1.x / SDXL pipeline as one original-layout (LDM) ``.safetensors`` checkpoint, the
single-file kind A1111 / Forge / ComfyUI load from ``models/Stable-diffusion`` (and Civitai hosts).

The mapping is the inverse of diffusers' ``single_file_utils`` (UNet ``input_blocks`` / ``middle_block``
/ ``output_blocks``, VAE ``encoder.down.N.block.M``, CLIP under ``cond_stage_model.transformer``; SDXL's
``label_emb`` and its two text encoders under ``conditioner.embedders.0.transformer`` (CLIP-L, HF layout)
and ``conditioner.embedders.1.model`` (OpenCLIP bigG: fused ``in_proj``, transposed ``text_projection``),
as diffusers' ``convert_diffusers_to_original_sdxl.py`` writes them), for any block count, so the tiny
pipelines convert too: the tests and the conformance scenario use it to make checkpoints that the
single-file import must turn back into the same pipeline.
"""

from __future__ import annotations

from pathlib import Path

RESNET = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"), ("conv2", "out_layers.3"),
          ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection")]
UNET_TOP = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
            "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2",
            "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2"}  # SDXL


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


def clip_to_ldm(state: dict, prefix: str) -> dict:
    """A CLIP text model in the HF layout (SD1's encoder, SDXL's first) under ``prefix``."""
    out = {}
    for key, value in state.items():
        canonical = key if key.startswith(("text_model.", "text_projection")) else f"text_model.{key}"
        out[f"{prefix}{canonical}"] = value
    return out


_OPEN_CLIP_TOP = {"text_model.embeddings.position_embedding.weight": "positional_embedding",
                  "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
                  "text_model.final_layer_norm.weight": "ln_final.weight",
                  "text_model.final_layer_norm.bias": "ln_final.bias"}
_OPEN_CLIP_LAYER = (("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"), ("mlp.fc1", "mlp.c_fc"),
                    ("mlp.fc2", "mlp.c_proj"), ("self_attn.out_proj", "attn.out_proj"))


def open_clip_to_ldm(state: dict, prefix: str = "conditioner.embedders.1.model.") -> dict:
    """SDXL's second text encoder (``CLIPTextModelWithProjection``) in OpenCLIP's layout: q / k / v fused
    into ``attn.in_proj_*``, ``text_projection`` transposed (a matrix, not a Linear)."""
    import torch

    state = {(k if k.startswith(("text_model.", "text_projection")) else f"text_model.{k}"): v for k, v in state.items()}
    out: dict = {}
    fused: dict[str, dict[str, object]] = {}
    for key, value in state.items():
        if key in _OPEN_CLIP_TOP:
            out[prefix + _OPEN_CLIP_TOP[key]] = value
        elif key == "text_projection.weight":
            out[prefix + "text_projection"] = value.T.contiguous()
        elif key.startswith("text_model.encoder.layers."):
            rest = key[len("text_model.encoder.layers."):]
            layer, _, inner = rest.partition(".")
            for proj in ("q", "k", "v"):
                if inner.startswith(f"self_attn.{proj}_proj."):
                    kind = inner.rsplit(".", 1)[1]  # weight / bias
                    fused.setdefault(f"{layer}.{kind}", {})[proj] = value
                    break
            else:
                for new, old in _OPEN_CLIP_LAYER:
                    inner = inner.replace(new, old)
                out[f"{prefix}transformer.resblocks.{layer}.{inner}"] = value
        elif not key.endswith("position_ids"):
            raise KeyError(key)
    for name, parts in fused.items():
        layer, kind = name.split(".")
        out[f"{prefix}transformer.resblocks.{layer}.attn.in_proj_{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out


def pipeline_to_ldm(pipe: object, arch: str) -> dict:
    """The loaded pipeline's UNet, VAE and text encoder(s) as one LDM state dict (SD1.x or SDXL)."""
    unet, vae = pipe.unet, pipe.vae  # type: ignore[attr-defined]
    tensors = unet_to_ldm(unet.state_dict(), unet.config)
    tensors.update(vae_to_ldm(vae.state_dict(), vae.config))
    if arch == "sdxl":
        tensors.update(clip_to_ldm(pipe.text_encoder.state_dict(), "conditioner.embedders.0.transformer."))  # type: ignore[attr-defined]
        tensors.update(open_clip_to_ldm(pipe.text_encoder_2.state_dict()))  # type: ignore[attr-defined]
    elif arch == "sd15":
        tensors.update(clip_to_ldm(pipe.text_encoder.state_dict(), "cond_stage_model.transformer."))  # type: ignore[attr-defined]
    else:
        raise ValueError(f"no LDM layout for {arch}")
    return {k: v for k, v in tensors.items() if not k.endswith("position_ids")}


def save_sd15_single_file(pipeline_dir: Path, out_file: Path) -> Path:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextModel

    unet = UNet2DConditionModel.from_pretrained(pipeline_dir, subfolder="unet")
    vae = AutoencoderKL.from_pretrained(pipeline_dir, subfolder="vae")
    text = CLIPTextModel.from_pretrained(pipeline_dir, subfolder="text_encoder")
    tensors = unet_to_ldm(unet.state_dict(), unet.config)
    tensors.update(vae_to_ldm(vae.state_dict(), vae.config))
    tensors.update(clip_to_ldm(text.state_dict(), "cond_stage_model.transformer."))
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(out_file))
    return out_file
