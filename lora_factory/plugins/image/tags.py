"""Caption edits on comma-separated tags (booru style) and the caption augmentations of training.

Tags compare case-insensitively and with ``_`` equal to a space (``long_hair`` is ``long hair``),
because taggers write one form and people type the other; the text written keeps the first form seen.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from lora_factory.plugins.image.dataset import split_tags


def tag_key(tag: str) -> str:
    return " ".join(tag.replace("_", " ").lower().split())


def join_tags(tags: Iterable[str]) -> str:
    return ", ".join(tags)


def dedupe(tags: list[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for tag in tags:
        key = tag_key(tag)
        if key and key not in seen:
            seen.add(key)
            out.append(tag)
    return out


def add_trigger(tags: list[str], trigger: str) -> list[str]:
    """The trigger word in front (moved there when the caption already has it)."""
    trigger = trigger.strip()
    if not trigger:
        return tags
    return [trigger] + [t for t in tags if tag_key(t) != tag_key(trigger)]


def remove_tags(tags: list[str], remove: Iterable[str]) -> list[str]:
    drop = {tag_key(t) for t in remove}
    return [t for t in tags if tag_key(t) not in drop]


def replace_tags(tags: list[str], mapping: dict[str, str]) -> list[str]:
    table = {tag_key(k): v.strip() for k, v in mapping.items()}
    out = []
    for tag in tags:
        new = table.get(tag_key(tag), tag)
        if new:  # replacing with "" removes the tag
            out.append(new)
    return dedupe(out)


def edit_caption(caption: str, *, trigger: str = "", remove: Iterable[str] = (), replace: dict[str, str] | None = None,
                 deduplicate: bool = True, max_tags: int = 0) -> str:
    """Apply the tag edits in a fixed order: replace, remove, dedupe, trigger in front, cap the count."""
    tags = split_tags(caption)
    if replace:
        tags = replace_tags(tags, replace)
    if remove:
        tags = remove_tags(tags, remove)
    if deduplicate:
        tags = dedupe(tags)
    if trigger:
        tags = add_trigger(tags, trigger)
    if max_tags > 0:
        tags = tags[:max_tags]
    return join_tags(tags)


def augment_caption(caption: str, rng: random.Random, *, shuffle: bool, keep_tokens: int, dropout: float,
                    tag_dropout: float = 0.0, separator: str = "") -> str:
    """A training-time caption: dropped whole (``dropout``), tags dropped, shuffled after the first N.

    As kohya's ``--shuffle_caption --keep_tokens N --caption_dropout_rate --caption_tag_dropout_rate``:
    the first ``keep_tokens`` tags (the trigger word) stay in front and are never dropped. With
    ``--keep_tokens_separator`` (``separator``) in the caption, what comes before it is kept instead of N tags,
    and a part after a second separator stays fixed at the end (kohya's fixed suffix).
    """
    if dropout > 0 and rng.random() < dropout:
        return ""
    if separator and separator in caption:
        parts = caption.split(separator, 2)
        head, tail = split_tags(parts[0]), split_tags(parts[1])
        suffix = split_tags(parts[2]) if len(parts) > 2 else []
    else:
        tags = split_tags(caption)
        if len(tags) <= 1 and not shuffle:
            return caption
        head, tail, suffix = tags[:keep_tokens], tags[keep_tokens:], []
    if tag_dropout > 0:
        tail = [t for t in tail if rng.random() >= tag_dropout]
    if shuffle:
        rng.shuffle(tail)
    return join_tags(head + tail + suffix)
