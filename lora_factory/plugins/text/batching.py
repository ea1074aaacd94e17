"""What the Trainer iterates: samples of an :class:`~train_data.EncodedSet`, one by one or packed
into blocks, the train / eval split, and the collator that pads a batch.

Why separate from the encoding: these run once per step inside the training loop, so they stay
small and cheap (numpy slices in, preallocated tensors out); the encoding runs once per dataset
(and is cached).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np

from lora_factory.plugins.text.train_data import IGNORE_INDEX, EncodedSet


def split_eval(items: list[Any], eval_ratio: float, seed: int) -> tuple[list[Any], list[Any]]:
    """A seeded split; at least one row stays for training, and an eval set only when asked for."""
    train_idx, eval_idx = split_indices(len(items), eval_ratio, seed)
    return [items[i] for i in train_idx], [items[i] for i in eval_idx]


def split_indices(n: int, eval_ratio: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``0..n-1`` split into train / eval, seeded (the same split on a re-run or a resume)."""
    if eval_ratio <= 0 or n < 2:
        return np.arange(n, dtype=np.int64), np.zeros(0, np.int64)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_eval = min(n - 1, max(1, round(n * eval_ratio)))
    is_eval = np.zeros(n, dtype=bool)
    is_eval[order[:n_eval]] = True
    return np.flatnonzero(~is_eval).astype(np.int64), np.flatnonzero(is_eval).astype(np.int64)


def pack(items: list[dict[str, list[int]]], max_length: int) -> list[dict[str, list[int]]]:
    """Best-fit decreasing packing of list items into blocks of at most ``max_length`` tokens, each
    with ``position_ids`` restarting at 0 per sample (see :mod:`packing`)."""
    from lora_factory.plugins.text.packing import best_fit_decreasing

    plan = best_fit_decreasing([len(it["input_ids"]) for it in items], max_length)
    blocks = []
    for b in range(plan.blocks):
        block: dict[str, list[int]] = {"input_ids": [], "labels": [], "position_ids": []}
        for i in plan.block(b).tolist():
            block["input_ids"].extend(items[i]["input_ids"])
            block["labels"].extend(items[i]["labels"])
            block["position_ids"].extend(range(len(items[i]["input_ids"])))
        blocks.append(block)
    return blocks


# -- what the Trainer iterates ---------------------------------------------------------------

class SampleDataset:
    """Samples of an :class:`EncodedSet` (a subset by index), one per item, as numpy arrays."""

    def __init__(self, data: EncodedSet, indices: np.ndarray) -> None:
        self.data = data
        self.indices = np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        ids, trained = self.data.sample(int(self.indices[i]))
        ids = ids.astype(np.int64)
        return {"input_ids": ids, "labels": np.where(trained == 1, ids, IGNORE_INDEX)}


class PackedDataset:
    """Blocks of several samples, each with ``position_ids`` restarting at 0 per sample."""

    def __init__(self, data: EncodedSet, order: np.ndarray, offsets: np.ndarray) -> None:
        self.data = data
        self.order = np.asarray(order, dtype=np.int64)  # sample indices into ``data``, block by block
        self.offsets = np.asarray(offsets, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def samples(self, b: int) -> np.ndarray:
        return self.order[self.offsets[b]:self.offsets[b + 1]]

    def __getitem__(self, b: int) -> dict[str, np.ndarray]:
        starts = self.data.offsets[self.samples(b)]
        ends = self.data.offsets[self.samples(b) + 1]
        ids = np.concatenate([self.data.input_ids[s:e] for s, e in zip(starts, ends, strict=True)]).astype(np.int64)
        trained = np.concatenate([self.data.trained[s:e] for s, e in zip(starts, ends, strict=True)])
        lengths = ends - starts
        # 0..len-1 for every sample: arange over the block minus each sample's start, repeated
        positions = np.arange(len(ids), dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        return {"input_ids": ids, "labels": np.where(trained == 1, ids, IGNORE_INDEX), "position_ids": positions}


class CausalCollator:
    """Pads a batch to its longest row. Packed rows (with ``position_ids``) get no attention mask,
    so transformers derives the per-sample mask from the positions; padding becomes its own segment.

    Rows may be lists or numpy arrays; the batch is filled into preallocated tensors (no Python
    list of lists per token, which cost more than the tiny model's forward pass)."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None) -> None:
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        lengths = [len(f["input_ids"]) for f in features]
        longest = max(lengths)
        if self.pad_to_multiple_of:
            m = self.pad_to_multiple_of
            longest = (longest + m - 1) // m * m
        packed = any("position_ids" in f for f in features)
        n = len(features)
        ids = torch.full((n, longest), self.pad_token_id, dtype=torch.long)
        labels = torch.full((n, longest), IGNORE_INDEX, dtype=torch.long)
        positions = torch.arange(longest, dtype=torch.long).repeat(n, 1) if packed else None
        mask = None if packed else torch.zeros((n, longest), dtype=torch.long)
        for r, (f, length) in enumerate(zip(features, lengths, strict=True)):
            ids[r, :length] = torch.as_tensor(np.asarray(f["input_ids"], dtype=np.int64))
            labels[r, :length] = torch.as_tensor(np.asarray(f["labels"], dtype=np.int64))
            if packed:
                if f.get("position_ids") is not None:
                    positions[r, :length] = torch.as_tensor(np.asarray(f["position_ids"], dtype=np.int64))
                positions[r, length:] = torch.arange(longest - length)  # padding: its own segment
            else:
                mask[r, :length] = 1
        batch: dict[str, Any] = {"input_ids": ids, "labels": labels}
        if packed:
            batch["position_ids"] = positions
        else:
            batch["attention_mask"] = mask
        return batch


def count_label_tokens(items: list[dict[str, list[int]]]) -> int:
    """Tokens that carry a loss (what "real tokens/s" counts)."""
    return sum(sum(1 for x in it["labels"] if x != IGNORE_INDEX) for it in items)
