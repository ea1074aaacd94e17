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


def token_count(tokenizer: Any, caption: str) -> int:
    """Tokens of ``caption`` without BOS / EOS (what kohya's 75 / 150 / 225 limit counts)."""
    return len(tokenizer(caption, truncation=False).input_ids) - 2


def tokenize_chunks(tokenizer: Any, captions: list[str], max_token_length: int | None) -> Any:
    """(B, n, 77) ids: kohya's ``get_input_ids``. With ``max_token_length`` 150 / 225 the caption is tokenized
    to that length and cut into 75-token pieces, each wrapped in its own ``<BOS> ... <EOS>``; SD2 / SDXL's
    second tokenizer (pad != eos) gets the same EOS fixes kohya applies."""
    import torch

    window = tokenizer.model_max_length
    if not max_token_length or max_token_length + 2 <= window:
        return tokenize(tokenizer, captions)[:, None]
    ids = tokenizer(captions, padding="max_length", max_length=max_token_length + 2, truncation=True,
                    return_tensors="pt").input_ids
    batches = []
    for row in ids:
        chunks = []
        for i in range(1, max_token_length + 2 - window + 2, window - 2):
            chunk = torch.cat((row[:1], row[i:i + window - 2], row[-1:]))
            if tokenizer.pad_token_id != tokenizer.eos_token_id:
                if chunk[-2] not in (tokenizer.eos_token_id, tokenizer.pad_token_id):
                    chunk[-1] = tokenizer.eos_token_id
                if chunk[1] == tokenizer.pad_token_id:
                    chunk[1] = tokenizer.eos_token_id
            chunks.append(chunk)
        batches.append(torch.stack(chunks))
    return torch.stack(batches)


def _join_chunks(hidden: Any, batch: int, window: int) -> Any:
    """(B*n, 77, D) -> (B, 1 + 75n + 1, D): the first BOS, each chunk's inside, the last EOS (kohya)."""
    import torch

    hidden = hidden.reshape(batch, -1, hidden.shape[-1])
    if hidden.shape[1] == window:
        return hidden
    parts = [hidden[:, :1]]
    parts += [hidden[:, i:i + window - 2] for i in range(1, hidden.shape[1], window)]
    parts.append(hidden[:, -1:])
    return torch.cat(parts, dim=1)


def encode_prompts(captions: list[str], tokenizers: list[Any], text_encoders: list[Any], device: Any,
                   clip_skip: int | None = None, max_token_length: int | None = None) -> tuple[Any, Any]:
    """(prompt_embeds, pooled or None) for a batch of captions; gradients flow when an encoder trains.

    ``clip_skip`` as in generation (:func:`clip_skip_embeds`): SD1 / SD2 take ``hidden_states[-N]`` through
    the final layer norm (kohya's ``get_hidden_states``); SDXL moves its penultimate layer N - 1 further back.
    ``max_token_length`` 150 / 225 encodes 75-token chunks and joins them as kohya does (the pooled output
    of SDXL is the first chunk's).
    """
    import torch

    skip = clip_skip or 1
    batch = len(captions)
    if len(text_encoders) == 1:
        tokenizer, encoder = tokenizers[0], text_encoders[0]
        ids = tokenize_chunks(tokenizer, captions, max_token_length).to(device)
        flat = ids.reshape(-1, ids.shape[-1])
        if skip == 1:
            hidden = encoder(flat, return_dict=True).last_hidden_state
        else:
            out = encoder(flat, output_hidden_states=True, return_dict=True)
            hidden = _final_norm(encoder)(out.hidden_states[-skip])
        return _join_chunks(hidden, batch, tokenizer.model_max_length), None
    hidden, pooled = [], None
    for tokenizer, encoder in zip(tokenizers, text_encoders):
        ids = tokenize_chunks(tokenizer, captions, max_token_length).to(device)
        chunks = ids.shape[1]
        out = encoder(ids.reshape(-1, ids.shape[-1]), output_hidden_states=True, return_dict=True)
        hidden.append(_join_chunks(out.hidden_states[-(skip + 1)], batch, tokenizer.model_max_length))
        pooled = out.text_embeds if hasattr(out, "text_embeds") else out[0]
        pooled = pooled[::chunks]
    return torch.cat(hidden, dim=-1), pooled


def sdxl_time_ids(original_size: tuple[int, int], crop_top_left: tuple[int, int], target_size: tuple[int, int]) -> list[int]:
    """SDXL's micro-conditioning, in its order: (orig_h, orig_w, crop_top, crop_left, target_h, target_w)."""
    return [*original_size, *crop_top_left, *target_size]


def _final_norm(encoder: Any) -> Any:
    """The encoder's final layer norm: transformers 5 puts it on ``CLIPTextModel`` itself, older
    versions (and ``CLIPTextModelWithProjection``) under ``.text_model``."""
    return getattr(encoder, "text_model", encoder).final_layer_norm


def clip_skip_embeds(pipe: Any, arch: str, prompt: str, negative: str, clip_skip: int | None, guided: bool) -> dict[str, Any]:
    """Pipeline keyword arguments (``prompt_embeds`` ...) that encode ``prompt`` as A1111 does: clip skip and
    prompts of any length (:mod:`prompt_chunks`: 75-token chunks, ``BREAK``), each chunk encoded on its own and
    the hidden states concatenated; the negative prompt padded with empty chunks to the same length (A1111's
    ``pad_cond``); SDXL's pooled embedding from the first chunk.

    Why not diffusers' own encoding: it cuts at 77 tokens, and its ``clip_skip`` reaches for
    ``text_encoder.text_model``, which transformers 5's ``CLIPTextModel`` no longer has. A1111 semantics: clip
    skip N takes ``hidden_states[-N]`` and applies the final layer norm (SD1 / SD2). SDXL already uses the
    penultimate layer without the norm; clip skip N moves that one further back (``hidden_states[-(N + 1)]``),
    as diffusers' SDXL pipeline does. A prompt of one chunk encodes exactly as diffusers does.
    """
    import torch

    from lora_factory.plugins.image.prompt_chunks import chunk_ids

    device = pipe.device
    skip = clip_skip or 1
    pairs = [(pipe.tokenizer, pipe.text_encoder)]
    if arch == "sdxl":
        pairs.append((pipe.tokenizer_2, pipe.text_encoder_2))
    pairs = [(t, e) for t, e in pairs if e is not None]

    def encode(text: str, chunks: int) -> tuple[Any, Any]:
        """(1, 77 * chunks, D) and the pooled output of the first chunk (SDXL); padded to ``chunks``."""
        hidden, pooled = [], None
        for tokenizer, encoder in pairs:
            ids = chunk_ids(tokenizer, text)
            ids += chunk_ids(tokenizer, "") * (chunks - len(ids))
            out = encoder(torch.tensor(ids, device=device), output_hidden_states=True, return_dict=True)
            if arch != "sdxl":
                states = out.last_hidden_state if skip == 1 else _final_norm(encoder)(out.hidden_states[-skip])
            else:
                states = out.hidden_states[-(skip + 1)]
                pooled = (out.text_embeds if hasattr(out, "text_embeds") else out[0])[:1]
            hidden.append(states.reshape(1, -1, states.shape[-1]))
        return torch.cat(hidden, dim=-1), pooled

    def count(text: str) -> int:
        return max(len(chunk_ids(tokenizer, text)) for tokenizer, _ in pairs)

    with torch.inference_mode():
        use_negative = guided and (arch != "sdxl" or bool(negative)
                                   or not getattr(pipe.config, "force_zeros_for_empty_prompt", False))
        chunks = max(count(prompt), count(negative) if use_negative else 1)
        embeds, pooled = encode(prompt, chunks)
        kwargs = {"prompt_embeds": embeds}
        if arch == "sdxl":
            kwargs["pooled_prompt_embeds"] = pooled
        if use_negative:
            neg, neg_pooled = encode(negative, chunks)
            kwargs["negative_prompt_embeds"] = neg
            if arch == "sdxl":
                kwargs["negative_pooled_prompt_embeds"] = neg_pooled
        return kwargs


def needs_own_encoding(pipe: Any, prompt: str, negative: str, clip_skip: int | None) -> bool:
    """Clip skip, or a prompt / negative prompt longer than one chunk: :func:`clip_skip_embeds` encodes it
    (otherwise the pipeline's own encoding, which is the same for one chunk)."""
    from lora_factory.plugins.image.prompt_chunks import needs_chunks

    return bool(clip_skip and clip_skip > 1) or any(needs_chunks(pipe.tokenizer, t) for t in (prompt, negative or ""))
