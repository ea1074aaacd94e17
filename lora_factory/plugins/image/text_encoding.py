"""Prompt embeddings for SD1.x / SD2 (one CLIP) and SDXL (two CLIPs, pooled output, time ids).

The same computation as diffusers' training scripts: SD1 takes the last hidden state of its text
encoder; SDXL concatenates the penultimate hidden states of both encoders and uses the second one's
projected pooled output, plus six "time ids" (original size, crop corner, target size).
"""

from __future__ import annotations

from typing import Any


def tokenize(tokenizer: Any, captions: list[str]) -> Any:
    return tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids


def encode_prompts(captions: list[str], tokenizers: list[Any], text_encoders: list[Any], device: Any) -> tuple[Any, Any]:
    """(prompt_embeds, pooled or None) for a batch of captions; gradients flow when an encoder trains."""
    import torch

    if len(text_encoders) == 1:
        ids = tokenize(tokenizers[0], captions).to(device)
        return text_encoders[0](ids, return_dict=True).last_hidden_state, None
    hidden, pooled = [], None
    for tokenizer, encoder in zip(tokenizers, text_encoders):
        ids = tokenize(tokenizer, captions).to(device)
        out = encoder(ids, output_hidden_states=True, return_dict=True)
        hidden.append(out.hidden_states[-2])
        pooled = out.text_embeds if hasattr(out, "text_embeds") else out[0]
    return torch.cat(hidden, dim=-1), pooled


def sdxl_time_ids(original_size: tuple[int, int], crop_top_left: tuple[int, int], target_size: tuple[int, int]) -> list[int]:
    """SDXL's micro-conditioning, in its order: (orig_h, orig_w, crop_top, crop_left, target_h, target_w)."""
    return [*original_size, *crop_top_left, *target_size]


def _final_norm(encoder: Any) -> Any:
    """The encoder's final layer norm: transformers 5 puts it on ``CLIPTextModel`` itself, older
    versions (and ``CLIPTextModelWithProjection``) under ``.text_model``."""
    return getattr(encoder, "text_model", encoder).final_layer_norm


def clip_skip_embeds(pipe: Any, arch: str, prompt: str, negative: str, clip_skip: int, guided: bool) -> dict[str, Any]:
    """Pipeline keyword arguments (``prompt_embeds`` ...) that encode ``prompt`` with A1111's clip skip.

    Why not diffusers' own ``clip_skip``: it reaches for ``text_encoder.text_model``, which transformers 5's
    ``CLIPTextModel`` no longer has. A1111 semantics: clip skip N takes ``hidden_states[-N]`` and applies the
    final layer norm (SD1 / SD2). SDXL already uses the penultimate layer without the norm; clip skip N moves
    that one further back (``hidden_states[-(N + 1)]``), as diffusers' SDXL pipeline does. The negative prompt
    is encoded the same way, as A1111 does.
    """
    import torch

    device = pipe.device

    def sd1(text: str) -> Any:
        encoder = pipe.text_encoder
        ids = tokenize(pipe.tokenizer, [text]).to(device)
        hidden = encoder(ids, output_hidden_states=True, return_dict=True).hidden_states[-clip_skip]
        return _final_norm(encoder)(hidden)

    def sdxl(text: str) -> tuple[Any, Any]:
        hidden, pooled = [], None
        for tokenizer, encoder in ((pipe.tokenizer, pipe.text_encoder), (pipe.tokenizer_2, pipe.text_encoder_2)):
            if encoder is None:
                continue
            ids = tokenize(tokenizer, [text]).to(device)
            out = encoder(ids, output_hidden_states=True, return_dict=True)
            hidden.append(out.hidden_states[-(clip_skip + 1)])
            pooled = out.text_embeds if hasattr(out, "text_embeds") else out[0]
        return torch.cat(hidden, dim=-1), pooled

    with torch.inference_mode():
        if arch != "sdxl":
            kwargs = {"prompt_embeds": sd1(prompt)}
            if guided:
                kwargs["negative_prompt_embeds"] = sd1(negative)
            return kwargs
        embeds, pooled = sdxl(prompt)
        kwargs = {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}
        if guided and (negative or not getattr(pipe.config, "force_zeros_for_empty_prompt", False)):
            neg, neg_pooled = sdxl(negative)
            kwargs.update(negative_prompt_embeds=neg, negative_pooled_prompt_embeds=neg_pooled)
        return kwargs
