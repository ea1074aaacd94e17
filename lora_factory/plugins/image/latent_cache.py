"""kohya's ``--cache_latents_to_disk``, without writing into the user's dataset: one file per image and setting.

sd-scripts writes ``<image>.npz`` beside each image. Here a dataset version is the user's (never written to), so
the latents go to ``models/image/.cache/latents/`` in the workspace (a dot-folder: no model scan lists it), one
``<key>.safetensors`` per image, where the key is a hash of everything the latents depend on: the image file's
content, the VAE (its config and weight files, and the dtype it runs in), the bucket size, the crop corner,
whether it is the flipped copy. Any change gives another key, so a stale file is never read; the next run on the
same data reads the files and encodes nothing. A file is written to a temporary name and renamed, so an
interrupted run or two ranks writing the same image leave no half file.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from lora_factory.plugins.image.hashes import file_sha256

CACHE_PARTS = ("models", "image", ".cache", "latents")
VERSION = 1  # bump when the stored layout or the encoding changes


def cache_folder(home: Path) -> Path:
    return Path(home).joinpath(*CACHE_PARTS)


def vae_identity(source: Path, dtype: str) -> str:
    """The VAE as the latents see it: its config and weight files (name, size, content hash of the config, the
    modification time of the weights: hashing gigabytes per run would cost more than encoding) and its dtype."""
    source = Path(source)
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    parts: list[Any] = [dtype]
    for path in files:
        stat = path.stat()
        if path.suffix == ".json":
            parts.append([path.name, file_sha256(path)])
        else:
            parts.append([path.name, stat.st_size, stat.st_mtime_ns])
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def example_key(image_sha: str, vae_id: str, bucket: tuple[int, int], crop_top_left: tuple[int, int],
                flipped: bool) -> str:
    """The cache key of one image's latents (the resized size follows from the image and its bucket)."""
    data = {"v": VERSION, "image": image_sha, "vae": vae_id, "bucket": list(bucket), "crop": list(crop_top_left),
            "flip": flipped}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def load(folder: Path, key: str) -> Any | None:
    """The cached latents for ``key``, or None (absent or unreadable: encode again)."""
    from safetensors.torch import load_file

    path = Path(folder) / f"{key}.safetensors"
    if not path.is_file():
        return None
    try:
        return load_file(str(path))["latents"]
    except Exception:  # a damaged file (disk full ...): encode again and rewrite it
        return None


def save(folder: Path, key: str, latents: Any) -> Path:
    """Write the latents to ``<key>.safetensors`` through a temporary name."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key}.safetensors"
    tmp = folder / f".tmp-{key}-{os.getpid()}.safetensors"
    save_file({"latents": latents.detach().cpu().contiguous()}, str(tmp))
    os.replace(tmp, path)
    return path


class LatentDiskCache:
    """The cache as a training run uses it: :meth:`get` reads an example's latents or encodes and writes them.

    ``hits`` / ``encoded`` count what this process did (each rank of a split cache counts its own share)."""

    def __init__(self, home: Path, vae_source: Path, vae_dtype: str) -> None:
        self.folder = cache_folder(home)
        self.vae_id = vae_identity(vae_source, vae_dtype)
        self.hits = 0
        self.encoded = 0
        self._image_sha: dict[Path, str] = {}

    def key(self, example: Any, flipped: bool) -> str:
        path = Path(example.item.path)
        if path not in self._image_sha:
            self._image_sha[path] = file_sha256(path)
        return example_key(self._image_sha[path], self.vae_id, tuple(example.bucket), tuple(example.crop_top_left),
                           flipped)

    def get(self, example: Any, flipped: bool, encode: Any) -> Any:
        """The latents of ``example`` (its flipped copy with ``flipped``); ``encode()`` makes them on a miss."""
        key = self.key(example, flipped)
        cached = load(self.folder, key)
        if cached is not None:
            self.hits += 1
            return cached
        latents = encode()
        save(self.folder, key, latents)
        self.encoded += 1
        return latents
