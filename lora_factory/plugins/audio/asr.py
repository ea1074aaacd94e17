"""Whisper transcription (any Whisper checkpoint: openai/whisper-*, kotoba-whisper ...), with an
optional LoRA adapter, an optional prompt (punctuation style, names) and segment timestamps.

Long files are cut at pauses (the same VAD as the slicer) into pieces under Whisper's 30 s window;
each piece's segments are offset by where the piece starts, so timestamps refer to the whole file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lora_factory.plugins.audio.audio_io import resample

WHISPER_RATE = 16000
WINDOW_SECONDS = 28.0


@dataclass
class Transcript:
    text: str
    segments: list[dict[str, Any]] = field(default_factory=list)
    language: str | None = None
    duration: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "segments": self.segments, "language": self.language,
                "duration": round(self.duration, 3)}


@dataclass
class WhisperModel:
    model: Any
    processor: Any
    device: str

    @classmethod
    def load(cls, base: Path, adapter: Path | None = None, device: str = "cpu", dtype: Any = None) -> WhisperModel:
        import torch
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        processor = WhisperProcessor.from_pretrained(str(base))
        model = WhisperForConditionalGeneration.from_pretrained(str(base), dtype=dtype or torch.float32).to(device)
        if adapter is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(adapter))
        model.eval()
        return cls(model=model, processor=processor, device=device)

    def _generate(self, wave16k: np.ndarray, language: str | None, prompt: str | None, timestamps: bool,
                  max_new_tokens: int) -> tuple[str, list[dict[str, Any]]]:
        import torch

        features = self.processor(wave16k, sampling_rate=WHISPER_RATE, return_tensors="pt").input_features
        dtype = next(self.model.parameters()).dtype
        kwargs: dict[str, Any] = {"task": "transcribe", "max_new_tokens": max_new_tokens}
        if language:
            kwargs["language"] = language
        if prompt:
            kwargs["prompt_ids"] = torch.as_tensor(self.processor.get_prompt_ids(prompt, return_tensors="np"),
                                                   device=self.device)
        if timestamps:
            kwargs["return_timestamps"] = True
        with torch.inference_mode():
            out = self.model.generate(input_features=features.to(self.device, dtype), **kwargs)
        ids = out["sequences"] if isinstance(out, dict) else out
        tokenizer = self.processor.tokenizer
        if timestamps:
            decoded = tokenizer.decode(ids[0], skip_special_tokens=False, output_offsets=True, decode_with_timestamps=False)
            text = tokenizer.decode(ids[0], skip_special_tokens=True)
            segments = [{"start": float(o["timestamp"][0] or 0.0), "end": float(o["timestamp"][1] or 0.0),
                         "text": o["text"].strip()} for o in decoded.get("offsets", []) if o.get("text", "").strip()]
        else:
            text = tokenizer.decode(ids[0], skip_special_tokens=True)
            segments = []
        if prompt and text.startswith(prompt):  # some versions echo the prompt
            text = text[len(prompt):]
        return text.strip(), segments

    def transcribe(self, wave: np.ndarray, sr: int, *, language: str | None = "ja", prompt: str | None = None,
                   timestamps: bool = True, max_new_tokens: int | None = None) -> Transcript:
        from lora_factory.plugins.audio.vad import SliceParams, find_segments

        wave16k = resample(np.asarray(wave, dtype=np.float32), sr, WHISPER_RATE)
        duration = wave16k.size / WHISPER_RATE
        if duration <= WINDOW_SECONDS:
            pieces = [(0, wave16k.size)]
        else:
            found = find_segments(wave16k, WHISPER_RATE, SliceParams(min_seconds=0.2, max_seconds=WINDOW_SECONDS,
                                                                      method="energy"))
            pieces = [(s.start, s.end) for s in found] or [
                (i, min(wave16k.size, i + int(WINDOW_SECONDS * WHISPER_RATE)))
                for i in range(0, wave16k.size, int(WINDOW_SECONDS * WHISPER_RATE))]
        texts, segments = [], []
        for start, end in pieces:
            # fast speech is ~10 tokens a second: a cap from the length stops a hallucination loop early
            budget = max_new_tokens or min(440, 24 + int(14 * (end - start) / WHISPER_RATE))
            text, segs = self._generate(wave16k[start:end], language, prompt, timestamps, budget)
            offset = start / WHISPER_RATE
            if text:
                texts.append(text)
            piece_end = end / WHISPER_RATE
            if timestamps and not segs and text:
                segs = [{"start": 0.0, "end": piece_end - offset, "text": text}]
            for seg in segs:
                segments.append({"start": round(min(seg["start"] + offset, piece_end), 2),
                                 "end": round(min(max(seg["end"], seg["start"]) + offset, piece_end), 2),
                                 "text": seg["text"]})
        joiner = "" if (language or "").startswith(("ja", "zh")) else " "
        return Transcript(text=joiner.join(texts), segments=segments, language=language, duration=duration)
