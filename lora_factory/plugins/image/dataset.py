"""Folder image datasets as kohya's sd-scripts reads them, validated and described (no torch).

Layout: images (``.png`` / ``.jpg`` / ``.jpeg`` / ``.webp``) with a same-stem ``.txt`` caption
beside each (``.caption`` is read too). A sub-folder named ``<repeats>_<concept>`` (``10_mychar``)
repeats its images that many times per epoch, as in kohya's DreamBooth-style folders; an image
without a caption file is captioned with its folder's concept words (kohya's class tokens), or gets
an empty caption at the top level. Dot-folders (``.cache``, ``.meta``) are ours and never read.

Validation names every bad file: an image that does not decode, a caption that is not text, an
image smaller than ``min_size`` on its short side. Nothing here imports torch: the server calls it.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lora_factory.kit import LoRAFactoryError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
CAPTION_SUFFIXES = (".txt", ".caption")
MAX_CAPTION_BYTES = 64 * 1024  # long natural-language captions are a few KB; tags far less
PREVIEW_TEXT_CHARS = 2000  # what one preview row shows of a caption
DATASET_FORMAT = "image_folder"
DEFAULT_MIN_SIZE = 32  # refused outright below this; the min_resolution refine op filters stricter
MAX_REPORTED_ERRORS = 50
_REPEATS_FOLDER = re.compile(r"^(\d+)_(.*)$")


@dataclass
class ImageItem:
    """One training image: where it is, its caption, and how often an epoch shows it."""

    rel: str  # path inside the dataset, POSIX separators (the item id)
    path: Path
    caption: str
    caption_file: str | None
    repeats: int
    concept: str
    subset: str  # the folder kohya calls the subset ("" for the top level)
    width: int = 0
    height: int = 0
    errors: list[str] = field(default_factory=list)


def split_tags(caption: str) -> list[str]:
    """Comma-separated tags (booru style); a plain sentence is one tag."""
    return [t.strip() for t in caption.replace("\n", ",").split(",") if t.strip()]


def _subset_of(rel_parts: tuple[str, ...]) -> tuple[str, int, str]:
    """The nearest ``<n>_<concept>`` ancestor folder: (subset folder, repeats, concept words)."""
    for depth in range(len(rel_parts) - 1, 0, -1):
        match = _REPEATS_FOLDER.match(rel_parts[depth - 1])
        if match:
            return "/".join(rel_parts[:depth]), max(1, int(match.group(1))), match.group(2).replace("_", " ").strip()
    subset = "/".join(rel_parts[:-1])
    return subset, 1, ""


def _read_caption(path: Path) -> str:
    size = path.stat().st_size
    if size > MAX_CAPTION_BYTES:  # a 100 MB "caption" once filled the server's memory and the page's JSON
        raise ValueError(f"the caption is too long ({size} bytes; at most {MAX_CAPTION_BYTES})")
    raw = path.read_bytes()
    if b"\x00" in raw:
        raise ValueError("binary data in a caption file")
    for encoding in ("utf-8-sig", "cp932"):  # Japanese Windows tools still write Shift-JIS
        try:
            return raw.decode(encoding).strip()
        except UnicodeDecodeError:
            continue
    raise ValueError("the caption is neither UTF-8 nor Shift-JIS text")


def _caption_for(image: Path) -> Path | None:
    for suffix in CAPTION_SUFFIXES:
        candidate = image.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    return None


def _probe_image(path: Path, decode: bool) -> tuple[int, int]:
    """(width, height); with ``decode`` the pixels are decoded too, so a truncated file is caught."""
    from PIL import Image

    with Image.open(path) as im:
        width, height = im.size
        if decode:
            im.draft("RGB", (max(64, width // 8), max(64, height // 8)))  # JPEG: decode at 1/8 scale, fast
            im.load()
    return int(width), int(height)


def iter_image_files(root: Path) -> list[Path]:
    """Every image under ``root`` (not in dot-folders), sorted for a stable order."""
    root = Path(root)
    found = []
    for path in root.rglob("*"):
        rel = path.relative_to(root).parts
        if any(part.startswith(".") for part in rel) or path.is_symlink():
            continue
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            found.append(path)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def scan_dataset(root: Path, *, decode: bool = True, min_size: int = DEFAULT_MIN_SIZE) -> tuple[list[ImageItem], list[dict[str, Any]]]:
    """Read every item; return (items, problems) where a problem is ``{"file", "reason"}``."""
    root = Path(root)
    items: list[ImageItem] = []
    problems: list[dict[str, Any]] = []
    for path in iter_image_files(root):
        rel_parts = path.relative_to(root).parts
        rel = "/".join(rel_parts)
        subset, repeats, concept = _subset_of(rel_parts)
        caption_path = _caption_for(path)
        caption = concept
        item = ImageItem(rel=rel, path=path, caption=caption, caption_file=None, repeats=repeats,
                         concept=concept, subset=subset)
        if caption_path is not None:
            item.caption_file = caption_path.relative_to(root).as_posix()
            try:
                item.caption = _read_caption(caption_path)
            except (OSError, ValueError) as exc:
                too_long = "too long" in str(exc)
                problems.append({"file": item.caption_file, "reason": f"unreadable caption: {exc}",
                                 "reason_ja": "キャプションが長すぎます" if too_long
                                 else "キャプションを読めません(テキストではありません)"})
        try:
            item.width, item.height = _probe_image(path, decode)
        except Exception as exc:  # PIL raises many types for a damaged file
            why = str(exc).replace(str(path), rel).replace(str(root), ".")  # no absolute (temp) path shown
            problems.append({"file": rel, "reason": f"corrupt image: {type(exc).__name__}: {why}",
                             "reason_ja": "画像が壊れているか、画像ではありません"})
            continue
        if min(item.width, item.height) < min_size:
            problems.append({"file": rel, "reason": f"image too small: {item.width}x{item.height} "
                             f"(the short side must be at least {min_size} px)",
                             "reason_ja": f"画像が小さすぎます: {item.width}x{item.height}(短辺 {min_size} px 以上が必要)"})
            continue
        items.append(item)
    return items, problems


def load_items(root: Path, *, min_size: int = DEFAULT_MIN_SIZE, decode: bool = False) -> list[ImageItem]:
    """The dataset's items, refusing it (``DATASET_INVALID``) when any file is bad or none is there."""
    items, problems = scan_dataset(root, decode=decode, min_size=min_size)
    if problems:
        raise dataset_invalid(problems)
    if not items:
        raise LoRAFactoryError(
            "DATASET_EMPTY", "画像が1枚もありません(png / jpg / webp と同名の .txt キャプションを入れてください)。",
            "The dataset has no images (put png / jpg / webp files with same-name .txt captions in it).", 422,
            detail={"errors": [{"file": ".", "reason": "no images"}], "extensions": list(IMAGE_SUFFIXES)})
    return items


def dataset_invalid(problems: list[dict[str, Any]]) -> LoRAFactoryError:
    names = ", ".join(p["file"] for p in problems[:5]) + (" ..." if len(problems) > 5 else "")
    return LoRAFactoryError(
        "DATASET_INVALID",
        f"データセットに問題のあるファイルが {len(problems)} 件あります: {names}",
        f"{len(problems)} file(s) in the dataset have problems: {names}",
        422, detail={"errors": problems[:MAX_REPORTED_ERRORS], "error_count": len(problems)})


def _histogram(values: list[float], edges: list[float], fmt: str = "{:g}") -> dict[str, list]:
    labels, counts = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        labels.append(f"{fmt.format(lo)}-{fmt.format(hi)}" if hi != float("inf") else f"{fmt.format(lo)}+")
        counts.append(sum(1 for v in values if lo <= v < hi))
    return {"label": labels, "counts": counts}


def tag_frequency(items: list[ImageItem], top_level: str = ".") -> dict[str, dict[str, int]]:
    """kohya's ``ss_tag_frequency``: per subset folder, how many captions carry each tag
    (``top_level`` names the images that lie directly in the dataset folder)."""
    out: dict[str, Counter] = {}
    for item in items:
        key = Path(item.subset).name if item.subset else top_level
        out.setdefault(key, Counter()).update(set(split_tags(item.caption)))
    return {key: dict(sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))) for key, counter in out.items()}


def compute_stats(items: list[ImageItem], resolution: int = 512, bucket_step: int = 64) -> dict[str, Any]:
    """Resolution and aspect histograms, buckets at ``resolution``, caption lengths, tag frequency."""
    from lora_factory.plugins.image.buckets import assign_bucket, make_buckets

    short_sides = [min(i.width, i.height) for i in items]
    aspects = [i.width / i.height for i in items if i.height]
    caption_tags = [len(split_tags(i.caption)) for i in items]
    buckets = make_buckets(resolution, bucket_step)
    bucket_counts: Counter = Counter()
    for item in items:
        bucket_counts[assign_bucket(item.width, item.height, buckets)] += item.repeats
    tags: Counter = Counter()
    for item in items:
        tags.update(set(split_tags(item.caption)))
    top_tags = sorted(tags.items(), key=lambda kv: (-kv[1], kv[0]))[:50]  # ties in a stable order
    concepts: dict[str, dict[str, Any]] = {}
    for item in items:
        entry = concepts.setdefault(item.subset or ".", {"concept": item.concept, "repeats": item.repeats, "images": 0})
        entry["images"] += 1
    return {
        "images": len(items),
        "images_with_repeats": sum(i.repeats for i in items),
        "captioned": sum(1 for i in items if i.caption_file),
        "uncaptioned": [i.rel for i in items if not i.caption_file][:50],
        "resolution_histogram": _histogram(short_sides, [0, 256, 512, 768, 1024, 1536, float("inf")]),
        "aspect_histogram": _histogram(aspects, [0, 0.6, 0.8, 0.95, 1.05, 1.25, 1.7, float("inf")], "{:.2f}"),
        "buckets": {"resolution": resolution, "label": [f"{w}x{h}" for (w, h), _ in sorted(bucket_counts.items())],
                    "counts": [c for _, c in sorted(bucket_counts.items())]},
        "caption_length_histogram": _histogram([float(n) for n in caption_tags], [0, 1, 5, 10, 20, 40, float("inf")]),
        "tag_frequency": {"label": [t for t, _ in top_tags], "counts": [c for _, c in top_tags]},
        "distinct_tags": len(tags),
        "concepts": concepts,
    }


def item_row(item: ImageItem) -> dict[str, Any]:
    """A preview row as the host shows it (the host adds the media URL; other keys appear as small text)."""
    text = item.caption if len(item.caption) <= PREVIEW_TEXT_CHARS else item.caption[:PREVIEW_TEXT_CHARS] + "…"
    row = {"id": item.rel, "text": text, "media": [{"kind": "image", "file": item.rel}],
           "size": f"{item.width}x{item.height}", "repeats": item.repeats}
    if not item.caption_file:
        row["caption"] = "class tokens" if item.caption else "none"  # no .txt beside the image
    return row


def inspect_image_folder(root: Path, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``inspect_dataset`` answer for a folder: refuses a bad dataset with every bad file named."""
    options = options or {}
    min_size = int(options.get("min_size") or DEFAULT_MIN_SIZE)
    items = load_items(Path(root), min_size=min_size, decode=bool(options.get("decode", True)))
    offset = max(0, int(options.get("offset") or 0))
    count = max(0, int(options.get("preview_rows", 24) if options.get("preview_rows") is not None else 24))
    resolution = int(options.get("resolution") or 512)
    return {
        "format": DATASET_FORMAT,
        "rows": len(items),
        "stats": compute_stats(items, resolution, int(options.get("bucket_step") or 64)),
        "preview": [item_row(i) for i in items[offset: offset + count]],
        "offset": offset,
    }
