"""Tiny random-weight diffusers pipelines (SD1.5, SDXL, Flux layouts), built offline in seconds.

Why: the product must be usable and testable with no Hub. A tiny pipeline has every component of
the real one (UNet or transformer, VAE, one or two CLIP text encoders with their tokenizers, a
scheduler), so every code path (LoRA training, kohya export, generation, single-file import) runs
for real; its pictures are noise until a LoRA teaches it something.

The CLIP tokenizer is built here too: a byte-level vocabulary (the 256 byte symbols, the same with
``</w>``, the two special tokens) and no merges, exactly the file layout of a real CLIP tokenizer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ARCHES = ("sd15", "sdxl", "flux")
BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
MAX_LENGTH = 77
README = (
    "# Tiny random image model (LoRA Factory)\n\n"
    "このモデルは重みがランダムな動作確認用モデルです。生成される画像はノイズです。\n\n"
    "This model has RANDOM weights: it exists so the whole image workflow (dataset, training, kohya "
    "export, generation) can be tried offline. Its pictures are noise until a LoRA teaches it something.\n\n"
)


def _byte_symbols() -> list[str]:
    """GPT-2 / CLIP's printable stand-ins for the 256 byte values (the byte-level BPE alphabet)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    codes = keep[:]
    extra = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for _, c in sorted(zip(keep, codes))]


def build_clip_tokenizer(out_dir: Path, pad_token: str = EOS) -> Any:
    """Write ``vocab.json`` / ``merges.txt`` of a byte-level CLIP tokenizer and return it loaded."""
    from transformers import CLIPTokenizer

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    symbols = _byte_symbols()
    vocab: dict[str, int] = {}
    for token in symbols + [s + "</w>" for s in symbols] + [BOS, EOS]:
        vocab.setdefault(token, len(vocab))
    (out_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (out_dir / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], pad_token=pad_token, model_max_length=MAX_LENGTH)
    tokenizer.save_pretrained(out_dir)
    return CLIPTokenizer.from_pretrained(out_dir)


def _clip_text_config(tokenizer: Any, hidden: int, projection: int | None = None) -> Any:
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=MAX_LENGTH, projection_dim=projection or hidden,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, hidden_act="gelu",
    )


def _vae(latent_channels: int = 4, **extra: Any) -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=(16, 32, 32), in_channels=3, out_channels=3, latent_channels=latent_channels,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3, layers_per_block=1,
        norm_num_groups=8, sample_size=64, **extra,
    )


def _scheduler(prediction_type: str = "epsilon") -> Any:
    from diffusers import DDIMScheduler

    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                         set_alpha_to_one=False, steps_offset=1, prediction_type=prediction_type)


def build_tiny_sd15(out_dir: Path, seed: int = 0) -> dict[str, Any]:
    """A StableDiffusionPipeline layout: UNet (32, 64), a 2-layer CLIP of width 32, a tiny VAE."""
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    out_dir = Path(out_dir)
    torch.manual_seed(seed)
    tokenizer = build_clip_tokenizer(out_dir / "tokenizer")
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=16,
    )
    pipe = StableDiffusionPipeline(
        unet=unet, vae=_vae(), text_encoder=CLIPTextModel(_clip_text_config(tokenizer, 32)), tokenizer=tokenizer,
        scheduler=_scheduler(), safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(out_dir, safe_serialization=True)
    return _summary(out_dir, "sd15", pipe, seed)


def build_tiny_sdxl(out_dir: Path, seed: int = 0) -> dict[str, Any]:
    """A StableDiffusionXLPipeline layout: two CLIP encoders (the second wider, with projection), time ids."""
    import torch
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    out_dir = Path(out_dir)
    torch.manual_seed(seed)
    tokenizer = build_clip_tokenizer(out_dir / "tokenizer")
    tokenizer_2 = build_clip_tokenizer(out_dir / "tokenizer_2", pad_token="!")
    time_dim, pooled = 8, 32
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=time_dim, transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=6 * time_dim + pooled, cross_attention_dim=64, norm_num_groups=16,
    )
    pipe = StableDiffusionXLPipeline(
        # widths 24 + 40 = the UNet's 64, different as CLIP-L's 768 and bigG's 1280 are: diffusers' single-file
        # loader tells SDXL's two encoders apart by width, so equal widths would not survive a checkpoint round trip
        unet=unet, vae=_vae(), text_encoder=CLIPTextModel(_clip_text_config(tokenizer, 24)),
        text_encoder_2=CLIPTextModelWithProjection(_clip_text_config(tokenizer_2, 40, pooled)),
        tokenizer=tokenizer, tokenizer_2=tokenizer_2, scheduler=_scheduler(), force_zeros_for_empty_prompt=True,
    )
    pipe.save_pretrained(out_dir, safe_serialization=True)
    return _summary(out_dir, "sdxl", pipe, seed)


def _build_t5_tokenizer(out_dir: Path) -> Any:
    """A byte-level tokenizer for the tiny Flux T5 encoder (real Flux uses T5's sentencepiece)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    symbols = _byte_symbols()
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for s in symbols:
        vocab.setdefault(s, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
                                                 pre_tokenizers.Split("", "isolated")])
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   model_max_length=512)
    fast.save_pretrained(out_dir)
    return fast


def build_tiny_flux(out_dir: Path, seed: int = 0) -> dict[str, Any]:
    """A FluxPipeline layout (transformer, CLIP + T5 encoders, flow-matching scheduler), all tiny."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel, T5Config, T5EncoderModel

    out_dir = Path(out_dir)
    torch.manual_seed(seed)
    tokenizer = build_clip_tokenizer(out_dir / "tokenizer")
    tokenizer_2 = _build_t5_tokenizer(out_dir / "tokenizer_2")
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=(4, 4, 8),
    )
    t5 = T5EncoderModel(T5Config(vocab_size=len(tokenizer_2), d_model=32, d_kv=16, d_ff=64, num_layers=2,
                                 num_heads=2, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0))
    pipe = FluxPipeline(
        transformer=transformer, vae=_vae(latent_channels=4, use_quant_conv=False, use_post_quant_conv=False,
                                          shift_factor=0.0609, scaling_factor=1.5035),
        text_encoder=CLIPTextModel(_clip_text_config(tokenizer, 32)), tokenizer=tokenizer,
        text_encoder_2=t5, tokenizer_2=tokenizer_2, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
    )
    pipe.save_pretrained(out_dir, safe_serialization=True)
    return _summary(out_dir, "flux", pipe, seed)


BUILDERS = {"sd15": build_tiny_sd15, "sdxl": build_tiny_sdxl, "flux": build_tiny_flux}


def build_tiny_image_model(out_dir: Path, arch: str = "sd15", seed: int = 0) -> dict[str, Any]:
    """Build the tiny pipeline of ``arch`` (sd15 / sdxl / flux) into ``out_dir``."""
    if arch not in BUILDERS:
        raise ValueError(f"unknown architecture {arch!r}; one of {', '.join(ARCHES)}")
    return BUILDERS[arch](Path(out_dir), seed)


def _summary(out_dir: Path, arch: str, pipe: Any, seed: int) -> dict[str, Any]:
    parameters = 0
    for name in ("unet", "transformer", "vae", "text_encoder", "text_encoder_2"):
        module = getattr(pipe, name, None)
        if module is not None:
            parameters += sum(p.numel() for p in module.parameters())
    (out_dir / "README.md").write_text(
        README + f"- architecture: {arch}\n- pipeline: {type(pipe).__name__}\n- parameters: {parameters}\n"
        f"- seed: {seed}\n", encoding="utf-8")
    return {"path": str(out_dir), "architecture": arch, "pipeline": type(pipe).__name__, "parameters": int(parameters)}
