"""The events an ``infer`` hook yields for media, built the same way by every plugin.

The host relays them to HTTP clients: a ``path`` (a file the plugin wrote into
``session.outputs_dir``) becomes a ``url``; an audio ``chunk`` is relayed as it is, so a client plays
the first sentence while the next one is still being synthesised.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any


def pcm16_bytes(samples: Any) -> bytes:
    """float samples in [-1, 1] (numpy array or list, mono) -> 16-bit little-endian PCM bytes."""
    import numpy as np

    wave = np.asarray(samples, dtype=np.float32).reshape(-1)
    return (np.clip(wave, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()


def audio_chunk_event(samples: Any, sample_rate: int, index: int, **meta: Any) -> dict[str, Any]:
    """One streamed piece of speech: base64 PCM16 mono, as soon as it is made."""
    return {"type": "audio", "chunk": base64.b64encode(pcm16_bytes(samples)).decode("ascii"),
            "format": "pcm16", "sample_rate": int(sample_rate), "index": int(index), **meta}


def decode_chunk(event: dict[str, Any]) -> bytes:
    """The PCM16 bytes of an audio chunk event (what a client or a test does with it)."""
    return base64.b64decode(event["chunk"])


def audio_event(path: Path | str, sample_rate: int, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """The finished audio file (WAV / FLAC ...) written into ``session.outputs_dir``."""
    return {"type": "audio", "path": str(path), "sample_rate": int(sample_rate), "meta": meta or {}}


def image_event(path: Path | str, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """A finished image (PNG with its settings inside) written into ``session.outputs_dir``."""
    return {"type": "image", "path": str(path), "meta": meta or {}}


def token_event(text: str) -> dict[str, Any]:
    return {"type": "token", "text": text}


def done_event(**fields: Any) -> dict[str, Any]:
    return {"type": "done", **fields}
