"""Synthetic recordings for the audio tests: syllable-like tones and noise bursts with planted pauses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf


def voiced(seconds: float, sr: int, rng: np.random.Generator, f0: float = 150.0) -> np.ndarray:
    """A tone with 4 Hz syllable-rate amplitude modulation plus breath noise (WebRTC calls it speech)."""
    t = np.arange(int(seconds * sr)) / sr
    tone = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.1 * np.sin(2 * np.pi * 2.5 * f0 * t)
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * t)
    return (tone * envelope + 0.04 * rng.standard_normal(t.size)).astype(np.float32)


def pause(seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    return (0.0005 * rng.standard_normal(int(seconds * sr))).astype(np.float32)


def recording_with_pauses(sr: int = 22050, seed: int = 0) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """A long recording and the (start, end) seconds of each planted voiced segment."""
    rng = np.random.default_rng(seed)
    layout = [("p", 0.5), ("v", 3.0), ("p", 0.8), ("v", 4.5), ("p", 1.0), ("v", 2.5), ("p", 0.6), ("v", 5.0),
              ("p", 0.7)]
    parts, spans, t = [], [], 0.0
    for kind, seconds in layout:
        parts.append(voiced(seconds, sr, rng, f0=120 + 30 * len(spans)) if kind == "v" else pause(seconds, sr, rng))
        if kind == "v":
            spans.append((t, t + seconds))
        t += seconds
    return np.concatenate(parts), spans


def write_clip_dataset(root: Path, texts: list[str], sr: int = 16000, seconds: float = 1.2,
                       speaker: str = "alice") -> Path:
    """``wavs/`` + ``esd.list`` with one short voiced clip per text."""
    rng = np.random.default_rng(1)
    (root / "wavs").mkdir(parents=True, exist_ok=True)
    lines = []
    for i, text in enumerate(texts):
        wave = voiced(seconds + 0.1 * (i % 3), sr, rng, f0=110 + 10 * i)
        sf.write(root / "wavs" / f"clip{i:03d}.wav", wave, sr)
        lines.append(f"wavs/clip{i:03d}.wav|{speaker}|JP|{text}")
    (root / "esd.list").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root
