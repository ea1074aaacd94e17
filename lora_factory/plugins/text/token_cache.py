"""Tokenized datasets cached on disk, so a re-run, a resume or an evaluation does not tokenize again.

Why: tokenizing (chat template + tokenizer + label mask) runs at a few thousand rows/s; a 1M-row set
is minutes before the first step, paid again on every re-run and resume. The samples of a dataset
depend only on the file's content, how it is read, the tokenizer, the chat template and the
encoding settings, so those make the key; the split and the packing plan are cheap and
deterministic and are recomputed from the cached samples.

Layout: ``datasets/<modality>/.cache/tokens/<key>/`` holding ``input_ids.npy``, ``trained.npy``,
``offsets.npy``, ``rows.npy`` and ``meta.json`` (written last: an entry without it is incomplete).
An entry is written in a temporary folder and renamed into place; the arrays are memory-mapped on
load, so a hit costs milliseconds whatever the size. The newest :data:`KEEP_ENTRIES` are kept.

Large sets are encoded by ``datasets.Dataset.map`` in several processes (rows go in as JSON text,
so tool-call arguments of any shape survive Arrow's typing).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from lora_factory.kit import LoRAFactoryError
from lora_factory.plugins.text.train_data import (
    EncodeConfig,
    EncodedSet,
    encode_batch,
    encode_in_process,
    finish_report,
)

ENCODER_VERSION = 2  # bump when the encoding code changes what a sample is
KEEP_ENTRIES = 8
PARALLEL_MIN_ROWS = 20_000  # below this, worker processes cost more than they save
PARALLEL_MIN_CPUS = 4
ARRAYS = ("input_ids", "trained", "offsets", "rows")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(4 * 1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """What makes two tokenizers give the same ids: the vocabulary and rules, the special tokens."""
    digest = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None
    if backend is not None:
        digest.update(backend.to_str().encode("utf-8"))
    else:
        digest.update(json.dumps(sorted(tokenizer.get_vocab().items()), ensure_ascii=False).encode("utf-8"))
    digest.update(json.dumps(tokenizer.special_tokens_map, sort_keys=True, default=str).encode("utf-8"))
    return digest.hexdigest()


def cache_key(dataset: Path, options: dict[str, Any], tokenizer: Any, cfg: EncodeConfig) -> tuple[str, dict[str, Any]]:
    """The entry's name and what went into it (kept in ``meta.json`` to explain a miss)."""
    material = {
        "encoder_version": ENCODER_VERSION,
        "dataset_sha256": file_sha256(dataset),
        "read_options": {k: options.get(k) for k in sorted(options) if k != "preview_rows"},
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "chat_template": hashlib.sha256(str(getattr(tokenizer, "chat_template", "") or "").encode()).hexdigest(),
        "encode": cfg.key(),
    }
    blob = json.dumps(material, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:24], material


def load_entry(folder: Path) -> EncodedSet | None:
    """The cached samples, memory-mapped; None when the entry is missing or incomplete."""
    meta_file = folder / "meta.json"
    if not meta_file.is_file():
        return None
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        # memory-mapped (a hit costs nothing whatever the size), seen as plain arrays: slicing a
        # np.memmap runs Python code per slice, five times slower than an ndarray view
        arrays = {name: np.asarray(np.load(folder / f"{name}.npy",
                                           mmap_mode="r" if name in ("input_ids", "trained") else None))
                  for name in ARRAYS}
    except (OSError, ValueError):
        return None
    data = EncodedSet(arrays["input_ids"], arrays["trained"], np.asarray(arrays["offsets"]),
                      np.asarray(arrays["rows"]), dict(meta.get("report") or {}))
    if len(data.offsets) < 1 or int(data.offsets[-1]) != len(data.input_ids) or len(data.rows) != len(data):
        return None
    try:
        os.utime(meta_file)  # recently used: kept by the pruning
    except OSError:
        pass
    return data


def save_entry(root: Path, key: str, data: EncodedSet, material: dict[str, Any]) -> Path:
    """Write an entry (temp folder, then rename); a concurrent writer of the same key wins harmlessly."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / key
    tmp = root / f".tmp-{key}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        for name in ARRAYS:
            np.save(tmp / f"{name}.npy", np.ascontiguousarray(getattr(data, name)))
        meta = {"key": key, "material": material, "report": data.report, "samples": len(data),
                "tokens": int(len(data.input_ids)), "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        (tmp / "meta.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")
        try:
            os.replace(tmp, final) if not final.exists() else None
        except OSError:
            pass  # another job wrote the same entry first
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    prune(root)
    return final


def prune(root: Path, keep: int = KEEP_ENTRIES) -> None:
    """Remove all but the ``keep`` most recently used entries (and stale temporary folders)."""
    entries = []
    for folder in root.iterdir() if root.is_dir() else []:
        if folder.name.startswith(".tmp-"):
            if time.time() - folder.stat().st_mtime > 24 * 3600:
                shutil.rmtree(folder, ignore_errors=True)
            continue
        meta = folder / "meta.json"
        entries.append((meta.stat().st_mtime if meta.exists() else 0.0, folder))
    for _, folder in sorted(entries, reverse=True)[keep:]:
        shutil.rmtree(folder, ignore_errors=True)  # a memory-mapped entry in use on Windows stays; fine


def _encode_map(batch: dict[str, list[Any]], indices: list[int], tokenizer: Any,
                cfg: dict[str, Any]) -> dict[str, list[Any]]:
    """``datasets.map`` function: one output per sample, plus one trailing record with the counts."""
    rows = [json.loads(text) for text in batch["row"]]
    try:
        ids, trained, sources, stats = encode_batch(rows, tokenizer, EncodeConfig(**cfg), first_row=0)
    except LoRAFactoryError as exc:  # carried back as data: the parent raises it with its words intact
        return {"input_ids": [[]], "trained": [[]], "source": [-1],
                "stats": [json.dumps({"error": {**exc.to_dict()["error"], "http_status": exc.http_status}})]}
    return {"input_ids": ids + [np.zeros(0, np.int32)],
            "trained": trained + [np.zeros(0, np.uint8)],
            "source": [indices[r] for r in sources] + [-1],
            "stats": [""] * len(ids) + [json.dumps(dict(stats))]}


def encode_parallel(rows: list[dict[str, Any]], tokenizer: Any, cfg: EncodeConfig, num_proc: int,
                    work_dir: Path) -> EncodedSet:
    """:func:`~train_data.encode_in_process` spread over ``num_proc`` processes with ``datasets``."""
    import pyarrow as pa
    from datasets import Dataset, Features, Sequence, Value, disable_progress_bars

    disable_progress_bars()
    # the parent used the tokenizer's own threads already; each worker process is one thread
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    work_dir.mkdir(parents=True, exist_ok=True)
    source = Dataset.from_dict({"row": [json.dumps(r, ensure_ascii=False) for r in rows]})
    features = Features({"input_ids": Sequence(Value("int32")), "trained": Sequence(Value("uint8")),
                         "source": Value("int64"), "stats": Value("string")})
    mapped = source.map(_encode_map, batched=True, batch_size=1000, with_indices=True, remove_columns=["row"],
                        fn_kwargs={"tokenizer": tokenizer, "cfg": cfg.key()}, num_proc=num_proc,
                        features=features, cache_file_name=str(work_dir / "encoded.arrow"),
                        load_from_cache_file=False, new_fingerprint=uuid.uuid4().hex)
    table = mapped.data.table
    sources = table.column("source").to_numpy()
    keep = sources >= 0
    stats: Counter = Counter()
    for text in table.column("stats").to_pylist():
        if text:
            counts = json.loads(text)
            if "error" in counts:
                raise LoRAFactoryError.from_dict(counts, http_status=int(counts["error"].get("http_status", 422)))
            stats.update(counts)
    ids_column = table.column("input_ids").combine_chunks()
    trained_column = table.column("trained").combine_chunks()
    lengths = pa.compute.list_value_length(ids_column).to_numpy(zero_copy_only=False)
    offsets = np.zeros(int(keep.sum()) + 1, dtype=np.int64)
    np.cumsum(lengths[keep], out=offsets[1:])
    data = EncodedSet(np.asarray(ids_column.flatten().to_numpy(zero_copy_only=False), dtype=np.int32),
                      np.asarray(trained_column.flatten().to_numpy(zero_copy_only=False), dtype=np.uint8),
                      offsets, sources[keep].astype(np.int64), finish_report(stats))
    del mapped, table, source
    return data


def encode_dataset(rows: list[dict[str, Any]], tokenizer: Any, cfg: EncodeConfig, work_dir: Path | None,
                   num_proc: int | None = None) -> tuple[EncodedSet, int]:
    """Encode in this process, or in several when the set is large; returns (samples, processes used)."""
    if num_proc is None:
        cpus = os.cpu_count() or 1
        # with 2-3 cores the tokenizer's own threads already use them; processes then only add copying
        num_proc = min(cpus, 8, max(1, len(rows) // (PARALLEL_MIN_ROWS // 2))) if cpus >= PARALLEL_MIN_CPUS else 1
    if num_proc > 1 and len(rows) >= PARALLEL_MIN_ROWS and work_dir is not None:
        try:
            return encode_parallel(rows, tokenizer, cfg, num_proc, work_dir), num_proc
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)
    return encode_in_process(rows, tokenizer, cfg), 1
