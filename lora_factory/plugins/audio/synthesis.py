"""Speech synthesis with the codec LM: sentence by sentence, so audio streams while the rest is made.

Each sentence is normalised, generated (codes only: the logits outside the codebook are masked),
decoded by the codec, shaped (speed, pitch, volume), loudness-normalised to the target with a
true-peak ceiling, faded at its edges, followed by the pause, and handed out at once. Normalising
each sentence to the same target keeps the whole utterance at the target too (BS.1770 gating skips
the pauses), so the stream and the saved file sound the same.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from lora_factory.plugins.audio import dsp
from lora_factory.plugins.audio.audio_io import resample
from lora_factory.plugins.audio.codec import SpeechCodec, codec_folder_of, load_codec
from lora_factory.plugins.audio.llasa import LlasaLayout
from lora_factory.plugins.audio.loudness import limit_true_peak, normalize_loudness
from lora_factory.plugins.audio.speech_params import SpeechParams
from lora_factory.plugins.audio.text_norm import NormalizationOptions, UserDictionary, normalize_text

SECONDS_PER_CHAR_CAP = 0.4  # slow Japanese speech is ~0.25 s per character
_SENTENCE_END = re.compile(r"(?<=[。！？!?\n])")


def split_sentences(text: str, max_chars: int = 80) -> list[str]:
    """At 。！？ (and line breaks); a sentence longer than ``max_chars`` is cut again at 、 or spaces."""
    out: list[str] = []
    for piece in _SENTENCE_END.split(text):
        piece = piece.strip()
        if not piece:
            continue
        while len(piece) > max_chars:
            cut = max(piece.rfind("、", 0, max_chars), piece.rfind(",", 0, max_chars), piece.rfind(" ", 0, max_chars))
            cut = cut + 1 if cut > 0 else max_chars
            out.append(piece[:cut].strip())
            piece = piece[cut:].strip()
        if piece:
            out.append(piece)
    return out


@dataclass
class TTSModel:
    """A loaded codec LM (base, or base + adapter) with its tokenizer, layout and codec."""

    model: Any
    tokenizer: Any
    layout: LlasaLayout
    codec: SpeechCodec
    device: str

    @classmethod
    def load(cls, base: Path, adapter: Path | None = None, device: str = "cpu", dtype: Any = None,
             codec_folder: Path | None = None) -> TTSModel:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        codec = load_codec(codec_folder_of(base, codec_folder), device=device)
        tokenizer = AutoTokenizer.from_pretrained(str(base))
        model = AutoModelForCausalLM.from_pretrained(str(base), dtype=dtype or torch.float32).to(device)
        if adapter is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(adapter))
        model.eval()
        layout = LlasaLayout.from_tokenizer(tokenizer, codec.codebook_size)
        return cls(model=model, tokenizer=tokenizer, layout=layout, codec=codec, device=device)

    def generate_codes(self, text: str, params: SpeechParams, seed: int | None = None,
                       reference: tuple[str, np.ndarray] | None = None) -> np.ndarray:
        """Codes for ``text``; ``reference`` = (normalised transcript, codes) of a voice to clone."""
        return self.generate_batch([text], params, seed=seed, reference=reference)[0]

    def generate_batch(self, texts: list[str], params: SpeechParams, seed: int | None = None,
                       reference: tuple[str, np.ndarray] | None = None) -> list[np.ndarray]:
        """Codes for each of ``texts``, generated as one left-padded batch with the KV cache on.

        Each sentence keeps its own length cap (the batch runs to the longest and each row is cut
        back), so greedy decoding gives what one-by-one generation gives; sampling draws from one
        generator for the whole batch."""
        import torch

        prompts = [self.layout.prompt_ids(self.tokenizer, text, params.speaker, reference) for text in texts]
        width = max(len(p) for p in prompts)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=self.device)
        attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.device)
        # a codec LM can loop instead of stopping: no sentence may run past a generous reading time
        caps = [max(4, int(min(params.max_seconds_per_sentence, 2.0 + SECONDS_PER_CHAR_CAP * len(text))
                           * self.codec.frame_rate)) for text in texts]
        allowed = torch.from_numpy(self.layout.speech_mask_bias(self.model.config.vocab_size)).to(self.device)
        if seed is not None:
            torch.manual_seed(seed)
        sampling = params.temperature > 0
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=input_ids, attention_mask=attention, max_new_tokens=max(caps), use_cache=True,
                do_sample=sampling, temperature=params.temperature if sampling else None,
                top_p=params.top_p if sampling else None, top_k=None,
                eos_token_id=self.layout.speech_end, pad_token_id=pad,
                logits_processor=[_OnlySpeech(allowed)])
        return [self.layout.codes_from_ids(_until_end(row[width:].tolist(), self.layout.speech_end)[:cap])
                for row, cap in zip(out, caps)]

    def int8(self) -> TTSModel:
        """A copy whose LM (with its active adapter merged) runs int8 dynamic quantised linear layers."""
        from lora_factory.plugins.audio.quantize import int8_copy

        return replace(self, model=int8_copy(self.model))


def _until_end(ids: list[int], end: int) -> list[int]:
    """The generated ids up to the end marker (a finished row of a batch is padded after it)."""
    return ids[: ids.index(end)] if end in ids else ids


class _OnlySpeech:
    """Logits processor: while speaking, only codes and the end marker may come out."""

    def __init__(self, allowed: Any) -> None:
        self.allowed = allowed

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        return scores.masked_fill(~self.allowed[: scores.shape[-1]], float("-inf"))


def shape_sentence(wave: np.ndarray, sr: int, params: SpeechParams) -> np.ndarray:
    """Speed, pitch, loudness target + ceiling, volume, fades (one sentence)."""
    wave = dsp.time_stretch(wave, sr, params.speed)
    wave = dsp.pitch_shift(wave, sr, params.pitch)
    # the volume is part of the loudness target and the true-peak ceiling comes last: +12 dB must
    # not push peaks past the ceiling (it used to be applied after it and clipped)
    if params.target_lufs is not None:
        wave = normalize_loudness(wave, sr, params.target_lufs + params.volume_db, params.true_peak_db)
    else:
        wave = limit_true_peak(dsp.gain_db(wave, params.volume_db) if params.volume_db else wave, sr,
                               params.true_peak_db)
    return dsp.fade(wave, sr, params.fade_ms, params.fade_ms)


@dataclass
class SpeechChunk:
    index: int
    text: str  # the sentence as read
    wave: np.ndarray  # at the output rate, pause included
    sample_rate: int
    seconds_to_make: float


MAX_REFERENCE_SECONDS = 20.0  # a few seconds clone a voice; more only lengthens every prompt


def reference_prompt(tts: TTSModel, wave: np.ndarray, sr: int, transcript: str,
                     norm: NormalizationOptions) -> tuple[str, np.ndarray]:
    """A reference recording as the cloning prefix: its normalised transcript and its codec codes."""
    wave = np.asarray(wave, dtype=np.float32)[: int(MAX_REFERENCE_SECONDS * sr)]
    return normalize_text(transcript, norm), np.asarray(tts.codec.encode(wave, sr))


def synthesize(tts: TTSModel, text: str, params: SpeechParams, dictionary: UserDictionary | None = None,
               reference: tuple[np.ndarray, int, str] | None = None) -> Iterator[SpeechChunk]:
    """Yield one chunk per sentence as soon as it is made (pause appended, except after the last).

    ``reference`` (wave, rate, transcript) clones that voice zero-shot: each sentence is generated
    as the continuation of the reference (Llasa's prompt-prefix cloning), with or without a LoRA."""
    norm = NormalizationOptions(latin=params.latin, user_dictionary=dictionary or UserDictionary(),
                                accent_marks=params.accent_marks)
    prefix = reference_prompt(tts, reference[0], reference[1], reference[2], norm) if reference else None
    sentences = [s for s in (normalize_text(x, norm) for x in split_sentences(text, params.max_sentence_chars)) if s]
    out_rate = params.sample_rate or tts.codec.sample_rate
    for batch in sentence_batches(len(sentences), params.batch_sentences):
        started = time.perf_counter()
        seed = None if params.seed is None else params.seed + batch[0]
        texts = [sentences[i] for i in batch]
        if len(batch) == 1:
            all_codes = [tts.generate_codes(texts[0], params, seed=seed, reference=prefix)]
        else:
            all_codes = tts.generate_batch(texts, params, seed=seed, reference=prefix)
        for index, codes in zip(batch, all_codes):
            wave = tts.codec.decode(codes) if len(codes) else np.zeros(int(0.1 * tts.codec.sample_rate), np.float32)
            wave = shape_sentence(wave, tts.codec.sample_rate, params)
            wave = resample(wave, tts.codec.sample_rate, out_rate)
            if index < len(sentences) - 1:
                wave = np.concatenate([wave, dsp.silence(out_rate, params.pause_ms)])
            yield SpeechChunk(index, sentences[index], wave, out_rate, time.perf_counter() - started)
            started = time.perf_counter()


def sentence_batches(count: int, size: int) -> list[list[int]]:
    """Sentence indices grouped for generation: the first alone (time to first audio), then ``size`` at a
    time, in order."""
    if count == 0:
        return []
    rest = list(range(1, count))
    return [[0]] + [rest[i:i + size] for i in range(0, len(rest), max(1, size))]
