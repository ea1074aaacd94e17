"""A1111's long prompts: a prompt cut into 75-token chunks, each wrapped in ``<BOS> ... <EOS>`` and padded to 77.

Why: CLIP reads 77 tokens; diffusers cuts a prompt there, A1111 / Forge / ComfyUI do not. This is A1111's
``FrozenCLIPEmbedderWithCustomWordsBase.tokenize_line`` (``modules/sd_hijack_clip.py``) without emphasis
weights and embeddings: ``BREAK`` (a word of its own, in capitals) closes the chunk; when a chunk is full and a
comma lies within the last 20 tokens (``comma_padding_backtrack``), what follows the comma moves to the next
chunk; a chunk is padded with EOS, and with the tokenizer's pad id after the first EOS when pad != EOS
(OpenCLIP, SDXL's second encoder). A prompt of 75 tokens or fewer without ``BREAK`` gives exactly the ids
diffusers' own tokenizer call gives.
"""

from __future__ import annotations

import re
from typing import Any

CHUNK = 75  # tokens inside one chunk (77 with BOS / EOS)
COMMA_BACKTRACK = 20  # A1111's default opts.comma_padding_backtrack
_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)  # A1111's prompt_parser.re_break


def chunk_ids(tokenizer: Any, text: str) -> list[list[int]]:
    """The prompt's chunks, each a list of 77 token ids (at least one chunk, even for an empty prompt)."""
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    comma = tokenizer.get_vocab().get(",</w>")
    chunks: list[list[int]] = []
    current: list[int] = []

    def close() -> None:
        nonlocal current
        body = current + [eos] * (CHUNK - len(current))
        ids = [bos] + body + [eos]
        if pad != eos:  # A1111: everything after the first EOS becomes the pad id
            first = ids.index(eos)
            ids = ids[:first + 1] + [pad] * (len(ids) - first - 1)
        chunks.append(ids)
        current = []

    pieces = _BREAK.split(text)
    for n, piece in enumerate(pieces):
        if n > 0:
            close()
        last_comma = -1
        for token in tokenizer(piece, truncation=False, add_special_tokens=False).input_ids:
            if token == comma:
                last_comma = len(current)
            elif len(current) == CHUNK and last_comma != -1 and len(current) - last_comma <= COMMA_BACKTRACK:
                moved = current[last_comma + 1:]
                current = current[:last_comma + 1]
                close()
                current = moved
                last_comma = -1
            if len(current) == CHUNK:
                close()
                last_comma = -1
            current.append(token)
    if current or not chunks:
        close()
    return chunks


def needs_chunks(tokenizer: Any, text: str) -> bool:
    """Whether ``text`` is more than one chunk (over 75 tokens, or a ``BREAK``): diffusers would cut it."""
    return bool(text) and len(chunk_ids(tokenizer, text)) > 1
