"""From a dataset file to what the Trainer iterates: read, encode (cached), split, pack, and say
what happened to the data.

Why one function for training, evaluation and the benchmark: the cache key, the split and the
report must be the same everywhere, and a user must be able to read, in every job's log and result,
how many rows were truncated or dropped and how full the packed blocks are.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lora_factory.plugins.text.batching import PackedDataset, SampleDataset, split_indices
from lora_factory.plugins.text.packing import best_fit_decreasing
from lora_factory.plugins.text.train_data import EncodeConfig, EncodedSet, load_rows, nothing_to_train


@dataclass
class PreparedData:
    """Train / eval datasets and the report (``data``, ``packing``, ``token_cache``)."""

    train: SampleDataset | PackedDataset
    eval: SampleDataset | PackedDataset | None
    encoded: EncodedSet
    report: dict[str, Any] = field(default_factory=dict)


def token_cache_root(ctx: Any) -> Path | None:
    """``datasets/text/.cache/tokens`` of the job's workspace (None outside a workspace)."""
    workspace = ctx.workspace if ctx is not None else None  # an evaluation called outside a job has no workspace
    return Path(workspace.datasets_dir("text")) / ".cache" / "tokens" if workspace is not None else None


def encode_config(params: Any) -> EncodeConfig:
    return EncodeConfig(max_length=int(params.max_length), assistant_only=bool(params.assistant_only_loss),
                        overlong=str(getattr(params, "overlong_rows", "truncate")),
                        text_stride=int(getattr(params, "text_stride", 0)))


def encoded_dataset(tokenizer: Any, dataset: Path, options: dict[str, Any], cfg: EncodeConfig,
                    cache_root: Path | None, log: Any = None) -> tuple[EncodedSet, dict[str, Any]]:
    """The samples of ``dataset``: from the token cache when an entry matches, else encoded (and stored).

    :return: the samples and ``{"status": "hit" | "miss" | "off", "key", "seconds", "processes"}``.
    """
    from lora_factory.plugins.text.token_cache import cache_key, encode_dataset, load_entry, save_entry

    started = time.perf_counter()
    key = material = None
    if cache_root is not None:
        key, material = cache_key(dataset, options, tokenizer, cfg)
        hit = load_entry(cache_root / key)
        if hit is not None:
            info = {"status": "hit", "key": key, "seconds": round(time.perf_counter() - started, 3), "processes": 0}
            if log:
                log(f"tokenized data: cache hit {key} ({len(hit)} samples, {info['seconds']} s)")
            return hit, info
    rows = load_rows(dataset, options)
    work_dir = cache_root / f".tmp-build-{key}" if cache_root is not None else None
    data, processes = encode_dataset(rows, tokenizer, cfg, work_dir)
    if cache_root is not None and len(data):
        save_entry(cache_root, key, data, material)
    seconds = round(time.perf_counter() - started, 3)
    status = "miss" if cache_root is not None else "off"
    if log:
        rate = len(rows) / max(seconds, 1e-9)
        log(f"tokenized data: cache {status}{' ' + key if key else ''}: {len(rows)} rows encoded in {seconds} s "
            f"({rate:.0f} rows/s, {processes} process{'es' if processes > 1 else ''})")
    return data, {"status": status, "key": key, "seconds": seconds, "processes": processes}


def _subset(data: EncodedSet, indices: np.ndarray, packing: bool, max_length: int
            ) -> tuple[SampleDataset | PackedDataset, dict[str, Any] | None]:
    if not packing:
        return SampleDataset(data, indices), None
    plan = best_fit_decreasing(data.lengths[indices], max_length)
    return PackedDataset(data, indices[plan.order], plan.offsets), plan.summary()


def prepare_training_data(tokenizer: Any, dataset: Path, options: dict[str, Any], params: Any,
                          cache_root: Path | None = None, log: Any = None) -> PreparedData:
    """Samples split by source row (a long document's blocks stay on one side), packed when asked."""
    cfg = encode_config(params)
    data, cache = encoded_dataset(tokenizer, Path(dataset), options, cfg, cache_root, log)
    if not len(data):
        raise nothing_to_train(cfg.max_length)
    source_rows = np.unique(data.rows)
    train_rows, eval_rows = split_indices(len(source_rows), float(params.eval_ratio), int(params.seed))
    is_eval = np.isin(data.rows, source_rows[eval_rows])
    train_idx, eval_idx = np.flatnonzero(~is_eval), np.flatnonzero(is_eval)
    started = time.perf_counter()
    train, train_pack = _subset(data, train_idx, bool(params.packing), cfg.max_length)
    evaluation, eval_pack = _subset(data, eval_idx, bool(params.packing), cfg.max_length) if len(eval_idx) \
        else (None, None)
    report = {
        "data": dict(data.report),
        "train_samples": int(len(train_idx)),
        "eval_samples": int(len(eval_idx)),
        "packing": None if train_pack is None else {**train_pack, "seconds": round(time.perf_counter() - started, 3),
                                                    "eval_blocks": eval_pack["blocks"] if eval_pack else 0},
        "token_cache": cache,
    }
    if log:
        for line in describe(report):
            log(line)
    return PreparedData(train, evaluation, data, report)


def describe(report: dict[str, Any]) -> list[str]:
    """The report as log lines a user reads: what was cut, what was left out, how full the blocks are."""
    d = report["data"]
    lines = [f"data: {d['rows']} rows -> {d['samples']} samples ({d['tokens']} tokens, {d['label_tokens']} trained)"
             f"; train {report['train_samples']} / eval {report['eval_samples']} samples"]
    if d["documents_split"]:
        lines.append(f"long documents: {d['documents_split']} split into max_length blocks "
                     f"({d['text_blocks']} blocks from {d['text_rows']} documents, none truncated)")
    lines.append(f"truncated: {d['rows_truncated']} rows ({d['tokens_truncated']} tokens cut); "
                 f"dropped: {d['rows_dropped']} rows ({d['rows_dropped_too_long']} over max_length = "
                 f"{d['tokens_dropped_too_long']} tokens, {d['rows_dropped_no_target']} with nothing to train)")
    pack = report.get("packing")
    if pack:
        lines.append(f"packing: {pack['samples']} samples -> {pack['blocks']} blocks of {pack['capacity']} tokens, "
                     f"fill rate {pack['fill_rate'] * 100:.1f}% ({pack['seconds']} s)")
    return lines


def result_fields(report: dict[str, Any]) -> dict[str, Any]:
    """The flat numbers a job's result carries (the full report goes in ``data_report``)."""
    d = report["data"]
    pack = report.get("packing") or {}
    return {
        "rows_truncated": d["rows_truncated"], "tokens_truncated": d["tokens_truncated"],
        "rows_dropped": d["rows_dropped"], "tokens_dropped": d["tokens_dropped_too_long"],
        "documents_split": d["documents_split"],
        "pack_fill_rate": pack.get("fill_rate"),
        "token_cache": (report.get("token_cache") or {}).get("status"),
        "data_report": report,
    }
