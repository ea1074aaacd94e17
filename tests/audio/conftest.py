"""Tiny audio models, built once per test session (offline, random weights)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_tts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lora_factory.plugins.audio.tiny_model import build_tiny_tts_model

    out = tmp_path_factory.mktemp("audio-models") / "tiny-tts"
    build_tiny_tts_model(out)
    return out


@pytest.fixture(scope="session")
def tiny_asr(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lora_factory.plugins.audio.tiny_model import build_tiny_whisper

    out = tmp_path_factory.mktemp("audio-models") / "tiny-whisper"
    build_tiny_whisper(out)
    return out
