"""The Llasa layout: a Llama causal LM whose vocabulary holds the codec's codes as ``<|s_N|>`` tokens.

Prompt (as Llasa's own inference and fine-tuning code build it, through the chat template)::

    user:      "Convert the text to speech:<|TEXT_UNDERSTANDING_START|>{text}<|TEXT_UNDERSTANDING_END|>"
    assistant: "[Speaker {name}]<|SPEECH_GENERATION_START|>" <|s_..|> ... <|SPEECH_GENERATION_END|>

Training is ordinary causal-LM training with the prompt masked out of the loss, which is why LoRA
on it is the text plugin's proven path. Speech ids are ``offset + code`` (the ``<|s_0|>`` id).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

TEXT_START = "<|TEXT_UNDERSTANDING_START|>"
TEXT_END = "<|TEXT_UNDERSTANDING_END|>"
SPEECH_START = "<|SPEECH_GENERATION_START|>"
SPEECH_END = "<|SPEECH_GENERATION_END|>"
LLASA_SPECIALS = [
    "<|TEXT_GENERATION_START|>", "<|TEXT_GENERATION_END|>", TEXT_START, TEXT_END,
    SPEECH_START, SPEECH_END, "<|SPEECH_UNDERSTANDING_START|>", "<|SPEECH_UNDERSTANDING_END|>",
]
INSTRUCTION = "Convert the text to speech:"
IGNORE_INDEX = -100


def speech_token(code: int) -> str:
    return f"<|s_{code}|>"


@dataclass
class LlasaLayout:
    """Token ids of the layout, read from a tokenizer (the real 193k one or our tiny one)."""

    offset: int
    codebook_size: int
    speech_start: int
    speech_end: int

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, codebook_size: int) -> LlasaLayout:
        ids = tokenizer.convert_tokens_to_ids([speech_token(0), speech_token(codebook_size - 1),
                                               SPEECH_START, SPEECH_END])
        unk = getattr(tokenizer, "unk_token_id", None)
        if any(i is None or i == unk for i in ids):
            raise ValueError("the tokenizer lacks the Llasa speech tokens (<|s_0|> ... or the markers)")
        if ids[1] - ids[0] != codebook_size - 1:
            raise ValueError(f"speech tokens are not contiguous for a codebook of {codebook_size}")
        return cls(offset=ids[0], codebook_size=codebook_size, speech_start=ids[2], speech_end=ids[3])

    def prompt_ids(self, tokenizer: Any, text: str, speaker: str | None = None,
                   reference: tuple[str, np.ndarray] | None = None) -> list[int]:
        """The prompt; with a ``reference`` (its transcript, its codes) the zero-shot cloning prompt of
        Llasa's own code: the reference transcript before the text, its codes after the speech marker,
        so the model continues in that voice."""
        if reference is not None:
            ref_text, ref_codes = reference
            return self.prompt_ids(tokenizer, ref_text + text, speaker) + self.code_ids(ref_codes)
        chat = [
            {"role": "user", "content": f"{INSTRUCTION}{TEXT_START}{text}{TEXT_END}"},
            {"role": "assistant", "content": (f"Speaker {speaker}" if speaker else "") + SPEECH_START},
        ]
        ids = tokenizer.apply_chat_template(chat, tokenize=True, continue_final_message=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return [int(i) for i in ids]

    def code_ids(self, codes: np.ndarray) -> list[int]:
        return [self.offset + int(c) for c in codes]

    def training_example(self, tokenizer: Any, text: str, codes: np.ndarray,
                         speaker: str | None = None) -> dict[str, list[int]]:
        prompt = self.prompt_ids(tokenizer, text, speaker)
        target = self.code_ids(codes) + [self.speech_end]
        return {"input_ids": prompt + target, "labels": [IGNORE_INDEX] * len(prompt) + target}

    def codes_from_ids(self, ids: list[int] | np.ndarray) -> np.ndarray:
        """The codes among generated ids (markers and stray text tokens dropped)."""
        arr = np.asarray(ids, dtype=np.int64)
        keep = (arr >= self.offset) & (arr < self.offset + self.codebook_size)
        return arr[keep] - self.offset

    def speech_mask_bias(self, vocab_size: int) -> np.ndarray:
        """Allowed tokens while generating speech: the codes and the end marker."""
        mask = np.zeros(vocab_size, dtype=bool)
        mask[self.offset: self.offset + self.codebook_size] = True
        mask[self.speech_end] = True
        return mask
