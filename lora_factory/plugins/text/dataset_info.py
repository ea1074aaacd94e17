"""Import the local datasets described by a LLaMA-Factory ``dataset_info.json``.

Why: many Japanese users arrive with a LLaMA-Factory ``data/`` folder. Its ``dataset_info.json``
maps a dataset name to ``file_name``, ``formatting`` (``alpaca`` | ``sharegpt``), ``columns``
(``prompt``, ``query``, ``response``, ``history``, ``messages``, ``system``, ...) and, for ShareGPT,
``tags`` (``role_tag``, ``content_tag``, ``user_tag``, ``assistant_tag``, ``system_tag``, ...).
We translate that into our own ``{format, mapping}`` options, validate each file with the same
parser an upload goes through, and copy it into the workspace under a safe name.

Entries we cannot use (hub / script datasets, missing files, ranking/KTO sets, folders) are
reported as ``skipped`` with the reason rather than failing the whole import.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from lora_factory.kit import LoRAFactoryError
from lora_factory.kit.files import write_bytes_atomic
from lora_factory.plugins.text.formats import inspect_dataset_file
from lora_factory.plugins.text.readers import SUPPORTED_EXTENSIONS

_COLUMN_KEYS = {
    "prompt": "instruction", "query": "input", "response": "output", "history": "history",
    "messages": "messages", "system": "system",
}
_TAG_KEYS = ("role_tag", "content_tag", "user_tag", "assistant_tag", "system_tag", "observation_tag", "function_tag")


def _safe_stem(name: str) -> str:
    stem = re.sub(r"[^\w\-.@+]+", "_", name, flags=re.UNICODE).strip("._") or "dataset"
    return stem[:100]


def entry_options(entry: dict[str, Any]) -> dict[str, Any]:
    """One ``dataset_info.json`` entry -> our ``{"format", "mapping"}`` options."""
    formatting = str(entry.get("formatting") or "alpaca").lower()
    columns = entry.get("columns") or {}
    tags = entry.get("tags") or {}
    mapping: dict[str, str] = {}
    for key, canonical in _COLUMN_KEYS.items():
        if columns.get(key):
            mapping[canonical] = str(columns[key])
    for key in _TAG_KEYS:
        if tags.get(key):
            mapping[key] = str(tags[key])
    if formatting == "alpaca":
        # A pre-training set is declared as alpaca with only ``prompt`` (usually "text").
        if set(columns) == {"prompt"}:
            return {"format": "text", "mapping": {"text": str(columns["prompt"])}}
        return {"format": "alpaca", "mapping": mapping}
    role_tag = mapping.get("role_tag", "from")
    fmt = "openai" if role_tag == "role" and mapping.get("content_tag", "content") == "content" else "sharegpt"
    if fmt == "openai":
        mapping = {k: v for k, v in mapping.items() if k in ("messages", "system")}
    return {"format": fmt, "mapping": mapping}


def import_dataset_info(info_path: Path, datasets_dir: Path) -> list[dict[str, Any]]:
    """Validate and copy every usable local dataset of ``info_path`` into ``datasets_dir``.

    :return: one dict per imported entry: ``{"name", "file": Path (the copy), "format", "mapping",
        "rows", "source"}``. :func:`import_dataset_info_report` also lists the skipped entries.
    :raises LoRAFactoryError: ``DATASET_INDEX_NOTHING_IMPORTED`` (422) when every entry was skipped,
        with each entry's reason: an empty answer would leave the user guessing.
    """
    report = import_dataset_info_report(info_path, datasets_dir)
    if not report["imported"]:
        skipped = report["skipped"]
        reasons = "; ".join(f"{s['name']}: {s['reason']}" for s in skipped[:10]) or "the file lists no dataset"
        raise LoRAFactoryError(
            "DATASET_INDEX_NOTHING_IMPORTED",
            f"「{Path(info_path).name}」から取り込めるデータセットがありませんでした: {reasons}",
            f"Nothing in '{Path(info_path).name}' could be imported: {reasons}",
            http_status=422, detail={"file": Path(info_path).name, "skipped": skipped})
    return report["imported"]


def import_dataset_info_report(info_path: Path, datasets_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Like :func:`import_dataset_info`, returning ``{"imported": [...], "skipped": [{"name", "reason"}]}``.

    :raises LoRAFactoryError: ``DATASET_INFO_INVALID`` (unreadable JSON), ``OUTPUT_EXISTS`` (a copy
        would overwrite an existing dataset; nothing is written then), ``DATASET_INVALID`` for a
        listed file that does not parse.
    """
    info_path = Path(info_path)
    datasets_dir = Path(datasets_dir)
    try:
        info = json.loads(info_path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LoRAFactoryError(
            "DATASET_INFO_INVALID",
            f"「{info_path.name}」を読めません: {exc}",
            f"Cannot read '{info_path.name}': {exc}",
            http_status=422,
            detail={"file": info_path.name},
        ) from exc
    if not isinstance(info, dict):
        raise LoRAFactoryError(
            "DATASET_INFO_INVALID",
            f"「{info_path.name}」はデータセット名をキーとするオブジェクトである必要があります。",
            f"'{info_path.name}' must be an object keyed by dataset name.",
            http_status=422,
            detail={"file": info_path.name},
        )

    base = info_path.parent
    planned: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for name, entry in info.items():
        reason = _skip_reason(entry, base)
        if reason:
            skipped.append({"name": name, "reason": reason})
            continue
        source = base / entry["file_name"]
        options = entry_options(entry)
        summary = inspect_dataset_file(source, {**options, "preview_rows": 0})
        target = datasets_dir / f"{_safe_stem(name)}{source.suffix.lower()}"
        planned.append({"name": name, "source": source, "target": target, "options": options,
                        "format": summary["format"], "rows": summary["rows"]})

    # Refuse every collision before writing anything: an import is all or nothing.
    targets = [p["target"] for p in planned]
    for item in planned:
        if item["target"].exists() or targets.count(item["target"]) > 1:
            raise LoRAFactoryError(
                "OUTPUT_EXISTS",
                f"「{item['target'].name}」は既に存在します。既存のデータセットを削除するか名前を変えてください。",
                f"'{item['target'].name}' already exists; delete it or rename the dataset entry.",
                http_status=409,
                detail={"name": item["name"], "file": item["target"].name},
            )
    for item in planned:
        write_bytes_atomic(item["target"], item["source"].read_bytes())
        results.append({
            "name": item["name"], "file": item["target"], "format": item["format"],
            "mapping": item["options"]["mapping"], "rows": item["rows"], "source": str(item["source"]),
        })
    return {"imported": results, "skipped": skipped}


def _skip_reason(entry: Any, base: Path) -> str | None:
    if not isinstance(entry, dict):
        return "entry is not an object"
    for remote in ("hf_hub_url", "ms_hub_url", "om_hub_url", "script_url", "cloud_file_name"):
        if entry.get(remote):
            return f"remote dataset ({remote}) is not imported; download it and list it as file_name"
    if entry.get("ranking") or (entry.get("columns") or {}).get("kto_tag"):
        return "preference / KTO datasets are not supported for LoRA SFT yet"
    file_name = entry.get("file_name")
    if not file_name or not isinstance(file_name, str):
        return "no file_name"
    source = (base / file_name).resolve()
    if base.resolve() not in source.parents:
        return "file_name leaves the folder of dataset_info.json"
    if not source.is_file():
        return "file not found next to dataset_info.json" if not source.exists() else "folders are not supported"
    if source.suffix.lower() not in SUPPORTED_EXTENSIONS:
        return f"unsupported file type {source.suffix}"
    return None
