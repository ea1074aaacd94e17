"""Perceptual hash (pHash) with numpy alone, for near-duplicate images and regression distances.

The classic recipe (imagehash's ``phash``): grey 32x32, 2-D DCT, the 8x8 lowest frequencies
compared with their median -> 64 bits. Two resaves, a resize or a light recompression of one
picture land within a few bits; different pictures differ in about half of them.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

HASH_SIZE = 8
SAMPLE = 32


@lru_cache(maxsize=4)
def _dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II basis: ``M @ x`` is the DCT of a column vector ``x``."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m


def phash_array(image: Any) -> np.ndarray:
    """64 booleans for a PIL image."""
    from PIL import Image

    grey = image.convert("L").resize((SAMPLE, SAMPLE), Image.Resampling.LANCZOS)
    pixels = np.asarray(grey, dtype=np.float64)
    m = _dct_matrix(SAMPLE)
    dct = m @ pixels @ m.T
    low = dct[:HASH_SIZE, :HASH_SIZE]
    return (low > np.median(low)).flatten()


def phash_file(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return phash_array(im)


def to_hex(bits: np.ndarray) -> str:
    return "".join(f"{int(''.join('1' if b else '0' for b in bits[i:i + 4]), 2):x}" for i in range(0, len(bits), 4))


def distance(a: np.ndarray, b: np.ndarray) -> int:
    """Hamming distance in bits (0 = same picture, about 32 = unrelated)."""
    return int(np.count_nonzero(a != b))


def near_duplicate_groups(hashes: list[np.ndarray], threshold: int) -> list[list[int]]:
    """Groups of indices whose hashes are within ``threshold`` bits of another member (union-find)."""
    parent = list(range(len(hashes)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    if hashes:
        stacked = np.stack(hashes)
        for i in range(len(hashes)):
            dists = np.count_nonzero(stacked[i + 1:] != stacked[i], axis=1)
            for j in np.nonzero(dists <= threshold)[0]:
                parent[find(i + 1 + int(j))] = find(i)
    groups: dict[int, list[int]] = {}
    for i in range(len(hashes)):
        groups.setdefault(find(i), []).append(i)
    return [g for g in groups.values() if len(g) > 1]
