"""Preference data made in the chat compare view: each choice appended to a preference dataset.

Why in the host: the choice joins things only the host knows (the models and adapters of the two
answers, the dataset catalog, the artifact lineage); the row itself is OpenAI's public preference
fine-tuning line (``input.messages`` / ``preferred_output`` / ``non_preferred_output``), which a text
plugin reads as pairs. Every append writes the whole file to a temporary sibling and renames it over
the old one, and registers the result as a new dataset version whose parents are the previous
version and the models that wrote the two answers; the sidecar lineage keeps every choice.
"""

from __future__ import annotations

import json
import os
from typing import Any

from lora_factory.core.errors import LoRAFactoryError
from lora_factory.core.storage.db import now_iso
from lora_factory.core.storage.workspace import safe_name, write_text_atomic


def _not_preference(name: str, fmt: Any) -> LoRAFactoryError:
    return LoRAFactoryError(
        "DATASET_NOT_PREFERENCE",
        f"データセット「{name}」は選好データではありません (形式: {fmt})。別の名前を指定してください。",
        f"The dataset '{name}' is not preference data (format: {fmt}); choose another name.",
        http_status=409, detail={"field": "dataset", "dataset": name, "format": fmt})


def append_choice(catalog: Any, modality: str, dataset: str, messages: list[dict[str, Any]], chosen: str,
                  rejected: str, chosen_model: dict[str, Any], rejected_model: dict[str, Any]) -> dict[str, Any]:
    """Append one pair; ``*_model`` are ``{"base_model", "adapter"}`` refs of the answer's writer.

    :return: ``{"name", "rel_path", "rows", "artifact_id", "format": "preference"}``.
    """
    from lora_factory.core.catalog.datasets import dataset_meta_path, read_json_quietly

    ws = catalog.workspace
    name = safe_name(dataset if dataset.endswith(".jsonl") else f"{dataset}.jsonl", "dataset name")
    path = ws.datasets_dir(modality) / name
    meta = read_json_quietly(dataset_meta_path(path)) if path.exists() else {}
    if path.exists() and meta.get("format") not in (None, "preference"):
        raise _not_preference(name, meta.get("format"))
    if not messages or not chosen.strip() or not rejected.strip() or chosen.strip() == rejected.strip():
        raise LoRAFactoryError("PREFERENCE_INVALID", "プロンプトと、異なる 2 つの回答が必要です。",
                               "A prompt and two different answers are needed.", http_status=422,
                               detail={"field": "chosen"})
    previous = catalog.artifacts.ensure("dataset", modality, path) if path.exists() else None
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    if old and not old.endswith("\n"):
        old += "\n"
    line = {"input": {"messages": messages}, "preferred_output": [{"role": "assistant", "content": chosen}],
            "non_preferred_output": [{"role": "assistant", "content": rejected}]}
    body = old + json.dumps(line, ensure_ascii=False) + "\n"
    rows = body.count("\n")
    tmp = ws.tmp_path(path)
    tmp.write_text(body, encoding="utf-8")
    os.replace(tmp, path)  # the whole new version replaces the old one in one rename
    write_text_atomic(dataset_meta_path(path), json.dumps(
        {"format": "preference", "rows": rows, "original_name": None, "source": "compare"}, ensure_ascii=False, indent=2))
    parents = [(previous, "previous_version")] if previous else []
    for role, ref in (("chosen_model", chosen_model), ("rejected_model", rejected_model)):
        for key, kind in (("base_model", "model"), ("adapter", "adapter")):
            found = _artifact(catalog, kind, modality, ref.get(key))
            if found:
                parents.append((found, f"{role}_{key}"))
    artifact_id = catalog.artifacts.register("dataset", modality, path, parents=parents,
                                             meta={"format": "preference", "rows": rows, "source": "compare"})
    lineage_path = ws.lineage_dir(modality) / f"{name}.json"
    lineage = read_json_quietly(lineage_path) or {"name": name, "parent": None, "format": "preference", "choices": []}
    lineage.setdefault("choices", []).append({
        "row": rows, "created_at": now_iso(), "artifact_id": artifact_id, "prompt": messages,
        "chosen_model": chosen_model, "rejected_model": rejected_model})
    lineage["report"] = {"rows_out": rows}
    write_text_atomic(lineage_path, json.dumps(lineage, ensure_ascii=False, indent=2))
    return {"name": name, "rel_path": ws.relative(path), "rows": rows, "artifact_id": artifact_id,
            "format": "preference"}


def _artifact(catalog: Any, kind: str, modality: str, ref: str | None) -> str | None:
    """The artifact id of a model / adapter ref inside the workspace (registered on first use); None
    for a ref that is empty or not a folder of this workspace."""
    if not ref:
        return None
    path = catalog.workspace.home / ref
    if not path.is_dir() or not catalog.workspace.is_inside(path):
        return None
    return catalog.artifacts.ensure(kind, modality, path)
