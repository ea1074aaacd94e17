"""Tiny audio models, built once per test session (offline, random weights)."""

from __future__ import annotations

from pathlib import Path

import pytest

# The voice path's two tiny models as `lora-factory tiny-model` arguments: the session builds them once
# (``tiny_workspaces``); the end-to-end test, the conformance scenario and the fixtures below share them.
AUDIO_MODELS = (("audio", "--out", "models/audio/tiny-tts"),
                ("audio", "--out", "models/audio/tiny-whisper", "--kind", "asr"))


@pytest.fixture(scope="session")
def tiny_tts(tiny_workspaces) -> Path:  # noqa: ANN001
    """The tiny TTS model (Llasa layout + XCodec2), read-only: copy it to change it."""
    return tiny_workspaces.template(*AUDIO_MODELS) / "models" / "audio" / "tiny-tts"


@pytest.fixture(scope="session")
def tiny_asr(tiny_workspaces) -> Path:  # noqa: ANN001
    """The tiny Whisper, read-only: copy it to change it."""
    return tiny_workspaces.template(*AUDIO_MODELS) / "models" / "audio" / "tiny-whisper"
