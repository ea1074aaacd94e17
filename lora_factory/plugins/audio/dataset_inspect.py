"""Validate and describe a voice dataset folder (server process: soundfile + numpy, no torch).

Every problem names its line or file, so a user with 600 clips finds the one bad line at once:
missing wav, unreadable audio, empty text, a clip too long or too short.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from lora_factory.plugins.audio.audio_io import AudioReadError, audio_info, check_decodable, read_excerpts
from lora_factory.plugins.audio.dataset_formats import Clip, ClipList, read_clip_list

DEFAULT_MIN_SECONDS = 0.3
DEFAULT_MAX_SECONDS = 30.0
MAX_RECORDING_SECONDS = 4 * 3600.0
LOUDNESS_SAMPLE = 60  # clips measured for the loudness figures (reading every clip would be slow)
MAX_ERRORS_SHOWN = 50
HISTOGRAM_EDGES = (0, 2, 4, 6, 8, 10, 12, 15, 20, 30)


def _histogram(durations: list[float]) -> dict[str, list[Any]]:
    edges = list(HISTOGRAM_EDGES) + [max(HISTOGRAM_EDGES[-1] + 1, max(durations, default=0) + 1)]
    counts, _ = np.histogram(durations, bins=edges)
    labels = [f"{a}-{b}s" for a, b in zip(HISTOGRAM_EDGES[:-1], HISTOGRAM_EDGES[1:])] + [f"{HISTOGRAM_EDGES[-1]}s+"]
    return {"label": labels, "counts": [int(c) for c in counts]}


def check_clips(root: Path, listing: ClipList, *, min_seconds: float, max_seconds: float,
                require_text: bool) -> tuple[list[Clip], list[dict[str, Any]], dict[str, Any]]:
    """Read every clip's header; return the good clips, the errors and the per-clip facts."""
    errors = list(listing.errors)
    good: list[Clip] = []
    facts: dict[str, dict[str, Any]] = {}
    where = listing.list_file
    for clip in listing.clips:
        ref = {"file": where, "line": clip.line} if where else {"file": clip.id}
        try:
            info = audio_info(clip.path_in(root))
            check_decodable(info, max_seconds=float("inf"))
        except AudioReadError as exc:
            why = str(exc).replace(str(clip.path_in(root)), clip.id).replace(str(root), ".")  # no (temp) path shown
            errors.append({**ref, "reason": f"unreadable audio '{clip.id}': {why[:160]}"})
            continue
        if require_text and not clip.text.strip():
            errors.append({**ref, "reason": f"empty text for '{clip.id}'"})
            continue
        if info.duration < min_seconds:
            errors.append({**ref, "reason": f"clip too short: '{clip.id}' is {info.duration:.2f} s (min {min_seconds} s)"})
            continue
        if info.duration > max_seconds:
            errors.append({**ref, "reason": f"clip too long: '{clip.id}' is {info.duration:.1f} s (max {max_seconds} s)"})
            continue
        facts[clip.id] = {"duration": round(info.duration, 3), "sample_rate": info.sample_rate,
                          "channels": info.channels}
        good.append(clip)
    return good, errors, facts


def loudness_summary(root: Path, clips: list[Clip]) -> dict[str, Any]:
    from lora_factory.plugins.audio.loudness import integrated_loudness

    step = max(1, len(clips) // LOUDNESS_SAMPLE)
    values = []
    for clip in clips[::step][:LOUDNESS_SAMPLE]:
        try:
            wave, sr = read_excerpts(clip.path_in(root))  # a long recording: a bounded sample of it
        except AudioReadError:
            continue
        values.append(integrated_loudness(wave, sr))
    if not values:
        return {}
    return {"lufs_median": round(float(np.median(values)), 1), "lufs_min": round(float(min(values)), 1),
            "lufs_max": round(float(max(values)), 1), "measured_clips": len(values)}


def inspect_audio_dataset(root: Path, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """``format``, ``rows``, ``stats`` and a page of ``preview`` rows with their audio.

    :raises DatasetProblems: with the list of errors when any line or file is bad.
    """
    options = options or {}
    listing = read_clip_list(root, options.get("format") or "auto")
    recordings = listing.format == "recordings"
    min_s = float(options.get("min_seconds", DEFAULT_MIN_SECONDS if not recordings else 0.3))
    max_s = float(options.get("max_seconds", DEFAULT_MAX_SECONDS if not recordings else MAX_RECORDING_SECONDS))
    good, errors, facts = check_clips(root, listing, min_seconds=min_s, max_seconds=max_s,
                                      require_text=not recordings)
    if not listing.clips and not errors:
        errors.append({"file": listing.list_file or ".", "reason": "no audio clips found (wavs/ + esd.list, "
                                                                    "metadata.jsonl, or audio files)"})
    if errors:
        raise DatasetProblems(errors)
    durations = [facts[c.id]["duration"] for c in good]
    stats = {
        "clips": len(good),
        "total_minutes": round(sum(durations) / 60.0, 2),
        "clip_seconds": {"min": round(min(durations), 2), "max": round(max(durations), 2),
                         "mean": round(float(np.mean(durations)), 2)},
        "length_histogram": _histogram(durations),
        "sample_rates": {str(k): v for k, v in sorted(Counter(facts[c.id]["sample_rate"] for c in good).items())},
        "speakers": dict(Counter(c.speaker or "-" for c in good).most_common(20)),
        "transcribed": sum(1 for c in good if c.text.strip()),
    }
    if options.get("loudness", True):
        stats["loudness"] = loudness_summary(root, good)
    offset = max(0, int(options.get("offset") or 0))
    count = max(0, min(500, int(options.get("preview_rows") or 20)))
    preview = [
        {"id": c.id, "text": c.text, "speaker": c.speaker, "language": c.language, "line": c.line,
         **facts[c.id], "media": [{"kind": "audio", "file": c.id}]}
        for c in good[offset: offset + count]
    ]
    return {"format": listing.format, "list_file": listing.list_file, "rows": len(good), "stats": stats,
            "preview": preview, "offset": offset}


class DatasetProblems(ValueError):
    """The dataset has bad lines or files; ``errors`` lists them (file, line, reason)."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(errors)} problem(s) in the dataset")
        self.errors = errors[:MAX_ERRORS_SHOWN]
        self.total = len(errors)
