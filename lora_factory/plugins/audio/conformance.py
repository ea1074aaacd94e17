"""The audio modality's conformance scenario: a four-clip esd.list voice (synthetic tones), a text
normalisation refine, two TTS LoRA steps with a sample, a streamed speech request, a regression
suite with the loudness and pace checks, the evaluate hook and a faster-whisper (ct2) export of a Whisper LoRA."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lora_factory.kit.conformance import Scenario

TEXTS = ["こんにちは。", "今日は1,100円です。", "東京に行きます。", "ありがとう。"]


def write_voice_folder(folder: Path, texts: list[str] = TEXTS, seconds: float = 0.6, sr: int = 16000) -> Path:
    """``wavs/`` + ``esd.list``: one short voiced clip per text (a modulated tone with breath noise)."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    (folder / "wavs").mkdir(parents=True, exist_ok=True)
    lines = []
    for i, text in enumerate(texts):
        t = np.arange(int(seconds * sr)) / sr
        wave = 0.3 * np.sin(2 * np.pi * (110 + 15 * i) * t) * (0.55 + 0.45 * np.sin(2 * np.pi * 4 * t))
        sf.write(folder / "wavs" / f"clip{i:03d}.wav", (wave + 0.03 * rng.standard_normal(t.size)).astype(np.float32), sr)
        lines.append(f"wavs/clip{i:03d}.wav|speaker|JP|{text}")
    (folder / "esd.list").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def write_whisper_adapter(home: Path) -> None:
    """A tiny Whisper base and a LoRA on it, in the workspace: the TTS adapter the scenario trains is not
    what the ``ct2`` export (faster-whisper) takes."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import WhisperForConditionalGeneration

    from lora_factory.plugins.audio.tiny_model import build_tiny_whisper

    base = home / "models" / "audio" / "conformance-asr-base"
    build_tiny_whisper(base)
    torch.manual_seed(0)
    model = get_peft_model(WhisperForConditionalGeneration.from_pretrained(str(base)),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    model.save_pretrained(str(home / "lora_adapters" / "audio" / "conformance-asr"))


def scenario() -> Scenario:
    quick = {"max_seconds_per_sentence": 0.4, "seed": 0}
    return Scenario(
        modality="audio",
        make_dataset=lambda folder: write_voice_folder(folder / "voice"),
        train_params={"max_steps": 2, "sample_every": 0, "sample_max_seconds": 0.4, "save_every": 0},
        infer={"task": "speech", "input": {"text": "こんにちは。"}, "params": quick},
        suite=[{"input": {"text": "はい。"}, "params": quick,
                "checks": [{"type": "loudness", "min": -40, "max": 0}, {"type": "duration_per_char", "min": 0, "max": 60}]}],
        refine_operations=[{"op": "normalize_text", "params": {}}],
        eval_dataset=True,
        export={"target": "ct2", "adapter": "conformance-asr", "base_model": "conformance-asr-base"},
        make_export_adapter=write_whisper_adapter,
        timeout_s=600,
    )
