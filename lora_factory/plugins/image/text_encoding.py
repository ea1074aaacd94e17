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
