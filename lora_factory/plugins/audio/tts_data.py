"""Training data of the codec LM: normalised text + the clip's codec codes, encoded once per
dataset version and codec and cached (``<dataset>/.cache/codes-<fingerprint>.npz``).

Why cache: encoding runs the codec's encoder (a w2v-BERT + a conv stack) over every clip, which on
Llasa's real codec costs far more than a LoRA step; dataset versions never change in place, so the
codes of a version are computed once and every later run (another preset, a resume) reuses them.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from lora_factory.plugins.audio.audio_io import read_audio
from lora_factory.plugins.audio.codec import SpeechCodec
from lora_factory.plugins.audio.dataset_formats import Clip, canonical_language
from lora_factory.plugins.audio.llasa import LlasaLayout
from lora_factory.plugins.audio.text_norm import NormalizationOptions, normalize_text

CACHE_FOLDER = ".cache"


def folder_fingerprint(folder: Path, names: list[str] | None = None) -> str:
    """Sizes and modification times of the files (cheap; a changed file changes it)."""
    digest = hashlib.sha256()
    files = [folder / n for n in names] if names else sorted(p for p in folder.rglob("*") if p.is_file())
    for path in files:
        if path.is_file():
            stat = path.stat()
            digest.update(f"{path.relative_to(folder).as_posix()}|{stat.st_size}|{int(stat.st_mtime)}\n".encode())
    return digest.hexdigest()[:16]


def codes_cache_path(root: Path, clips: list[Clip], codec_folder: Path) -> Path:
    digest = hashlib.sha256()
    digest.update(folder_fingerprint(codec_folder).encode())
    for clip in clips:
        stat = clip.path_in(root).stat()
        digest.update(f"{clip.id}|{stat.st_size}|{int(stat.st_mtime)}\n".encode())
    return root / CACHE_FOLDER / f"codes-{digest.hexdigest()[:16]}.npz"


def encode_clips(root: Path, clips: list[Clip], codec: SpeechCodec, codec_folder: Path, *,
                 log: Callable[[str], None] = print, should_stop: Callable[[], bool] = lambda: False,
                 progress: Callable[[int, int], None] | None = None) -> dict[str, np.ndarray]:
    """Codes of every clip, from the cache when present; the cache is written atomically."""
    cache = codes_cache_path(root, clips, codec_folder)
    if cache.is_file():
        with np.load(cache) as data:
            codes = {clip.id: data[f"c{i}"] for i, clip in enumerate(clips) if f"c{i}" in data}
        if len(codes) == len(clips):
            log(f"コーデックトークンをキャッシュから読み込みました / codec tokens from cache ({cache.name})")
            return codes
    codes = {}
    for i, clip in enumerate(clips):
        if should_stop():
            raise InterruptedError("stopped while encoding")
        wave, sr = read_audio(clip.path_in(root))
        codes[clip.id] = codec.encode(wave, sr).astype(np.int32)
        if progress:
            progress(i + 1, len(clips))
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f".tmp-{os.getpid()}-{cache.name}")
        with open(tmp, "wb") as handle:
            np.savez(handle, **{f"c{i}": codes[clip.id] for i, clip in enumerate(clips)})
        os.replace(tmp, cache)
        log(f"コーデックトークンを保存しました / codec tokens cached ({cache.name}, {len(clips)} clips)")
    except OSError as exc:  # a read-only dataset still trains, only without the cache
        log(f"codec token cache not written: {exc}")
    return codes


def build_examples(layout: LlasaLayout, tokenizer: Any, clips: list[Clip], codes: dict[str, np.ndarray],
                   norm: NormalizationOptions, *, speaker_prompt: bool, max_tokens: int) -> tuple[list[dict], int]:
    """One causal-LM example per clip (prompt masked); clips over ``max_tokens`` are skipped."""
    examples = []
    skipped = 0
    for clip in clips:
        text = normalize_text(clip.text, replace(norm, language=canonical_language(clip.language)))
        example = layout.training_example(tokenizer, text, codes[clip.id],
                                          speaker=clip.speaker if speaker_prompt and clip.speaker else None)
        if len(example["input_ids"]) > max_tokens or not text:
            skipped += 1
            continue
        examples.append(example)
    return examples, skipped


def collate(examples: list[dict[str, list[int]]], pad_id: int) -> dict[str, Any]:
    import torch

    width = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example["input_ids"])
        ids[row, :n] = torch.tensor(example["input_ids"])
        labels[row, :n] = torch.tensor(example["labels"])
        mask[row, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}
