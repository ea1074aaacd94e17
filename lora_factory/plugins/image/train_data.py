"""Training examples for an image LoRA: bucketed pixels, cached latents, and the batch plan per epoch.

kohya's behaviour: an image is shown ``repeats`` times per epoch, each batch holds images of one
bucket only, buckets and batches are shuffled every epoch. The plan is a pure function of
(seed, epoch), so a resumed run replays exactly the batches it would have seen.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from lora_factory.plugins.image.buckets import Bucket, assign_bucket, crop_box, make_buckets
from lora_factory.plugins.image.dataset import ImageItem


@dataclass
class Example:
    """One image ready for training (pixels or latents at its bucket size)."""

    index: int
    item: ImageItem
    bucket: Bucket
    original_size: tuple[int, int]  # (height, width), SDXL's micro-conditioning
    crop_top_left: tuple[int, int]  # (top, left) in the resized image
    pixels: Any = None  # (3, H, W) float in [-1, 1], dropped once latents are cached
    latents: Any = None  # (C, h, w), scaled, on the CPU
    latents_flipped: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


def bucket_set(resolution: int, step: int, enable: bool, min_reso: int | None, max_reso: int | None) -> list[Bucket]:
    if not enable:
        side = max(step, resolution // step * step)
        return [(side, side)]
    return make_buckets(resolution, step, min_reso, max_reso)


def load_pixels(item: ImageItem, bucket: Bucket, random_crop: bool, rng: random.Random) -> tuple[Any, tuple[int, int]]:
    """The image resized to cover its bucket and cropped to it, as a (3, H, W) tensor in [-1, 1]."""
    import numpy as np
    import torch
    from PIL import Image, ImageOps

    with Image.open(item.path) as im:
        im = ImageOps.exif_transpose(im)
        if im.mode in ("RGBA", "LA", "P"):  # transparent areas on white, as the taggers see them too
            rgba = im.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            background.alpha_composite(rgba)
            im = background
        im = im.convert("RGB")
        (rw, rh), (left, top, right, bottom) = crop_box(im.width, im.height, bucket, center=not random_crop, rng=rng)
        im = im.resize((rw, rh), Image.Resampling.LANCZOS).crop((left, top, right, bottom))
        array = np.asarray(im, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous(), (top, left)


def no_upscale_bucket(width: int, height: int, resolution: int, step: int) -> Bucket | None:
    """kohya's ``--bucket_no_upscale``: an image no larger than resolution² gets a bucket of its own size cut down
    to the step (None: a larger image, which takes the usual bucket)."""
    if width * height > resolution * resolution:
        return None
    return max(step, width - width % step), max(step, height - height % step)


def prepare_examples(items: list[ImageItem], buckets: list[Bucket], random_crop: bool, seed: int,
                     first_index: int = 0, reg: bool = False, no_upscale: tuple[int, int] | None = None) -> list[Example]:
    """Examples of ``items`` (indices from ``first_index``); ``reg`` marks regularisation images;
    ``no_upscale`` = (resolution, step) for kohya's ``--bucket_no_upscale``."""
    rng = random.Random(seed + (7919 if reg else 0))
    examples = []
    for index, item in enumerate(items, start=first_index):
        own = no_upscale_bucket(item.width, item.height, *no_upscale) if no_upscale else None
        bucket = own or assign_bucket(item.width, item.height, buckets)
        pixels, top_left = load_pixels(item, bucket, random_crop, rng)
        examples.append(Example(index=index, item=item, bucket=bucket, original_size=(item.height, item.width),
                                crop_top_left=top_left, pixels=pixels, extra={"reg": True} if reg else {}))
    return examples


def repeats_of(ex: Example) -> int:
    """How often ``ex`` is shown per epoch: its folder's repeats, or a regularisation image's balanced count."""
    return int(ex.extra.get("repeats", ex.item.repeats))


def balance_reg_repeats(train_total: int, reg: list[Example]) -> None:
    """kohya's ``DreamBoothDataset``: regularisation images are shown as often as the training images (with
    repeats) in all: each keeps its folder's repeats, then the first ones get one more until the counts meet."""
    if not reg:
        return
    n, first = 0, True
    while n < train_total:
        for ex in reg:
            if first:
                ex.extra["repeats"] = ex.item.repeats
                n += ex.item.repeats
            else:
                ex.extra["repeats"] += 1
                n += 1
            if n >= train_total:
                break
        first = False


def plan_epoch(examples: list[Example], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Batches of example indices for one epoch: repeats expanded, one bucket per batch, shuffled."""
    rng = random.Random(seed * 100003 + epoch)
    by_bucket: dict[Bucket, list[int]] = {}
    for ex in examples:
        by_bucket.setdefault(ex.bucket, []).extend([ex.index] * repeats_of(ex))
    batches: list[list[int]] = []
    for bucket in sorted(by_bucket):
        members = by_bucket[bucket]
        rng.shuffle(members)
        batches.extend(members[i:i + batch_size] for i in range(0, len(members), batch_size))
    rng.shuffle(batches)
    return batches


def bucket_info(examples: list[Example]) -> dict[str, Any]:
    """kohya's ``ss_bucket_info``: each bucket's resolution and image count (with repeats)."""
    counts: dict[Bucket, int] = {}
    for ex in examples:
        counts[ex.bucket] = counts.get(ex.bucket, 0) + repeats_of(ex)
    errors = [abs(ex.bucket[0] / ex.bucket[1] - ex.item.width / ex.item.height) for ex in examples]
    return {
        "buckets": {str(i): {"resolution": list(b), "count": c} for i, (b, c) in enumerate(sorted(counts.items()))},
        "mean_img_ar_error": sum(errors) / max(1, len(errors)),
    }


HUE_SHIFT_LIMIT = 8  # sd-scripts' color_aug: a hue shift of up to 8 on OpenCV's 0-179 hue scale


def draw_hue_shift(rng: random.Random) -> int:
    """One image's ``color_aug`` hue shift on PIL's 0-255 scale (drawn apart from the pixels, so every rank of a
    multi-device job draws the shifts of the whole batch and applies only its rows')."""
    return round(rng.randint(-HUE_SHIFT_LIMIT, HUE_SHIFT_LIMIT) * 256 / 180)  # PIL's hue is 0-255


def color_aug(pixels: Any, rng: random.Random | None = None, *, shift: int | None = None) -> Any:
    """kohya's ``--color_aug``: the image's hue shifted by a random amount (saturation and value kept);
    ``shift`` from :func:`draw_hue_shift`, or drawn from ``rng``."""
    import numpy as np
    import torch
    from PIL import Image

    if shift is None:
        if rng is None:
            raise ValueError("color_aug needs rng or shift")
        shift = draw_hue_shift(rng)
    array = ((pixels.permute(1, 2, 0).numpy() + 1.0) * 127.5).clip(0, 255).astype(np.uint8)
    hsv = np.asarray(Image.fromarray(array).convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(np.int16) + shift) % 256
    rgb = np.asarray(Image.fromarray(hsv, mode="HSV").convert("RGB"), dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(rgb).permute(2, 0, 1).contiguous()
