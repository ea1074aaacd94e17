"""The slice review screen's server side: a recording's waveform envelope with the cut points the
slicer proposes under the chosen silence settings, and the check of an edited cut list.

The review saves through the ordinary refine job (``slice`` with ``cuts``), so the new dataset
version is written by the same slicing code and gets the host's lineage like any other refine run.
numpy, soundfile and webrtcvad only, imported when called: it runs in the server process, never torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

REVIEW_MAX_SECONDS = 3 * 3600.0  # the review decodes the whole recording in the server process


class PreviewBody(BaseModel):
    dataset: str = Field(min_length=1, max_length=200)
    recording: str | None = Field(None, max_length=500, description="a clip id of the dataset; its first when empty")
    min_seconds: float = Field(2.0, ge=0.2, le=60)
    max_seconds: float = Field(12.0, ge=1.0, le=120)
    min_silence_ms: int = Field(300, ge=50, le=5000)
    pad_ms: int = Field(100, ge=0, le=2000)
    method: str = Field("webrtc", pattern="^(webrtc|energy)$")
    aggressiveness: int = Field(2, ge=0, le=3)
    points: int = Field(1000, ge=50, le=8000, description="columns of the waveform envelope")


def envelope(wave: Any, points: int) -> list[list[float]]:
    """[min, max] of each of ``points`` equal slices of the wave (what a waveform view draws)."""
    import numpy as np

    if wave.size == 0:
        return []
    edges = np.linspace(0, wave.size, min(points, wave.size) + 1).astype(int)
    return [[round(float(wave[a:b].min()), 4), round(float(wave[a:b].max()), 4)]
            for a, b in zip(edges[:-1], edges[1:]) if b > a]


def preview(dataset: Path, body: PreviewBody) -> dict[str, Any]:
    """The recordings of ``dataset``, and for one of them its envelope and the proposed cuts (seconds)."""
    from lora_factory.plugins.audio.audio_io import read_audio
    from lora_factory.plugins.audio.dataset_formats import read_clip_list
    from lora_factory.plugins.audio.vad import SliceParams, slice_recording

    listing = read_clip_list(dataset)
    recordings = [c.id for c in listing.clips]
    if not recordings:
        raise ValueError("the dataset holds no audio")
    chosen = body.recording or recordings[0]
    if chosen not in recordings:
        raise ValueError(f"no recording '{chosen}' in the dataset")
    clip = next(c for c in listing.clips if c.id == chosen)
    wave, sr = read_audio(clip.path_in(dataset), max_seconds=REVIEW_MAX_SECONDS)
    params = SliceParams(min_seconds=body.min_seconds, max_seconds=body.max_seconds,
                         min_silence_ms=body.min_silence_ms, pad_ms=body.pad_ms, method=body.method,
                         aggressiveness=body.aggressiveness)
    result = slice_recording(wave, sr, params)
    seconds = [[round(s.start / sr, 3), round(s.end / sr, 3)] for s in result.segments]
    dropped = [[round(s.start / sr, 3), round(s.end / sr, 3)] for s in result.dropped]
    return {"recordings": recordings, "recording": chosen, "duration": round(wave.size / sr, 3), "sample_rate": sr,
            "envelope": envelope(wave, body.points), "cuts": seconds, "dropped": dropped}


def check_cuts(cuts: dict[str, list[list[float]]]) -> dict[str, list[list[float]]]:
    """Each recording's cuts as sorted [start, end] seconds, end after start, none overlapping."""
    out: dict[str, list[list[float]]] = {}
    for recording, spans in cuts.items():
        clean = sorted([float(a), float(b)] for a, b in spans)
        for i, (start, end) in enumerate(clean):
            if start < 0 or end <= start:
                raise ValueError(f"{recording}: cut {i + 1} ({start:g}-{end:g} s) must end after it starts, from 0 s")
            if i and start < clean[i - 1][1]:
                raise ValueError(f"{recording}: cut {i + 1} ({start:g} s) overlaps the one before "
                                 f"(ending at {clean[i - 1][1]:g} s)")
        out[recording] = clean
    return out
