"""Aspect-ratio buckets, as kohya's ``--enable_bucket`` makes them (no torch).

Why buckets: cropping every picture to a square throws away the parts of portraits and landscapes
that make a character or a style; bucketing trains each image at the (width, height) closest to its
own aspect ratio with about the same pixel count, and batches only images of the same bucket.
"""

from __future__ import annotations

import math

Bucket = tuple[int, int]  # (width, height)


def make_buckets(resolution: int, step: int = 64, min_size: int | None = None, max_size: int | None = None) -> list[Bucket]:
    """Every (w, h) with sides in ``[min_size, max_size]``, multiples of ``step``, area <= resolution².

    The defaults follow kohya (256 / 1024 for 512 px): half and twice the resolution.
    """
    min_size = min_size or max(step, resolution // 2)
    max_size = max_size or resolution * 2
    max_area = resolution * resolution
    side = int(math.sqrt(max_area) // step) * step
    found = {(side, side)}
    width = min_size
    while width <= max_size:
        height = min(max_size, int((max_area // width) // step) * step)
        if height >= min_size:
            found.add((width, height))
            found.add((height, width))
        width += step
    return sorted(found)


def assign_bucket(width: int, height: int, buckets: list[Bucket]) -> Bucket:
    """The bucket whose aspect ratio is nearest the image's (kohya compares ratios, not areas)."""
    aspect = width / max(1, height)
    return min(buckets, key=lambda b: (abs(b[0] / b[1] - aspect), -b[0] * b[1]))


def crop_box(width: int, height: int, bucket: Bucket, center: bool = True, rng: object | None = None) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """How to fit an image into its bucket: the resized size that covers it and the crop inside it.

    :return: ``((resized_w, resized_h), (left, top, right, bottom))``; ``rng`` (random.Random) gives
        a random crop instead of the centre one.
    """
    bw, bh = bucket
    scale = max(bw / width, bh / height)
    rw, rh = max(bw, round(width * scale)), max(bh, round(height * scale))
    if center or rng is None:
        left, top = (rw - bw) // 2, (rh - bh) // 2
    else:
        left, top = rng.randint(0, rw - bw), rng.randint(0, rh - bh)  # type: ignore[attr-defined]
    return (rw, rh), (left, top, left + bw, top + bh)
