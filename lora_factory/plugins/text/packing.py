"""Packing samples into blocks of at most ``max_length`` tokens: best-fit decreasing in O(n log n).

Why best-fit decreasing: it fills blocks as well as first-fit decreasing (both within 11/9 of the
optimum) and, unlike first-fit over every open block, it does not need to look at every block: the
open blocks are kept by remaining capacity, and "the fullest block this sample still fits in" is a
binary search over the sorted distinct capacities. 1M samples pack in about a second here, where the
old first-fit loop was quadratic (100k rows took 35 s).

A plan is only indices: ``order`` (sample indices, block by block) and ``offsets`` (block b holds
``order[offsets[b]:offsets[b + 1]]``). The tokens stay where they are (see :mod:`train_data`), so a
plan for a million samples is a few megabytes and can be cached beside the tokens.

No attention across samples: each block carries ``position_ids`` that restart at 0 for every sample;
with no ``attention_mask``, transformers derives a block-diagonal causal mask from them.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class PackPlan:
    """Which samples go into which block. ``fill_rate`` = tokens / (blocks x capacity)."""

    order: np.ndarray  # int64 sample indices, block by block
    offsets: np.ndarray  # int64, len = blocks + 1
    capacity: int
    tokens: int

    @property
    def blocks(self) -> int:
        return len(self.offsets) - 1

    @property
    def fill_rate(self) -> float:
        return self.tokens / (self.blocks * self.capacity) if self.blocks else 0.0

    def block(self, b: int) -> np.ndarray:
        return self.order[self.offsets[b]:self.offsets[b + 1]]

    def summary(self) -> dict[str, Any]:
        return {"samples": int(len(self.order)), "blocks": self.blocks, "capacity": self.capacity,
                "tokens": int(self.tokens), "fill_rate": round(self.fill_rate, 4)}


def best_fit_decreasing(lengths: Any, capacity: int) -> PackPlan:
    """Pack items of ``lengths`` (each 1..capacity) into as few blocks of ``capacity`` as BFD finds.

    Longest first; each item goes into the open block with the least remaining room that still
    holds it, else into a new block. Blocks whose room is below the shortest item left are closed
    (items only get shorter, so nothing could go there any more), which keeps the search small.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    n = len(lengths)
    if n == 0:
        return PackPlan(np.zeros(0, np.int64), np.zeros(1, np.int64), capacity, 0)
    if int(lengths.max()) > capacity or int(lengths.min()) < 1:
        raise ValueError(f"every length must be within 1..{capacity}")
    by_length = np.argsort(-lengths, kind="stable")
    sorted_lengths = lengths[by_length].tolist()
    block_of = [0] * n  # in placement order
    room_keys: list[int] = []  # sorted distinct remaining capacities that have an open block
    blocks_with_room: dict[int, list[int]] = {}
    n_blocks = 0
    for position, length in enumerate(sorted_lengths):
        i = bisect_left(room_keys, length)
        if i < len(room_keys):
            room = room_keys[i]
            stack = blocks_with_room[room]
            block = stack.pop()
            if not stack:
                del room_keys[i]
                del blocks_with_room[room]
        else:
            room, block = capacity, n_blocks
            n_blocks += 1
        block_of[position] = block
        left = room - length
        # the shortest item still to come is the last one (decreasing order)
        if left >= sorted_lengths[-1]:
            stack = blocks_with_room.get(left)
            if stack is None:
                blocks_with_room[left] = [block]
                insort(room_keys, left)
            else:
                stack.append(block)
    blocks = np.asarray(block_of, dtype=np.int64)
    grouped = np.argsort(blocks, kind="stable")
    order = by_length[grouped]
    counts = np.bincount(blocks, minlength=n_blocks)
    offsets = np.zeros(n_blocks + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return PackPlan(order.astype(np.int64), offsets, capacity, int(lengths.sum()))


def first_fit_reference(lengths: list[int], capacity: int) -> list[list[int]]:
    """The old quadratic first-fit decreasing, kept only as the benchmark's and tests' reference."""
    blocks: list[list[int]] = []
    used: list[int] = []
    for index in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        for b, u in enumerate(used):
            if u + lengths[index] <= capacity:
                blocks[b].append(index)
                used[b] += lengths[index]
                break
        else:
            blocks.append([index])
            used.append(lengths[index])
    return blocks
