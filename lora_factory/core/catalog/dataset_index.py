"""Importing the datasets an index file lists (LLaMA-Factory's ``dataset_info.json`` for text): the
owner plugin copies them into ``datasets/<modality>/`` (``import_dataset_index``); the catalog records
each one's format and reading options and registers it as an artifact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lora_factory.core.catalog.artifacts import ArtifactStore
from lora_factory.core.catalog.datasets import DatasetCatalog
from lora_factory.core.errors import LoRAFactoryError
from lora_factory.core.plugin_host.host import PluginHost
from lora_factory.core.storage.workspace import Workspace


class DatasetIndexImport:
    """``plugins`` is replaced when the plugins are reloaded."""

    def __init__(self, workspace: Workspace, plugins: PluginHost, datasets: DatasetCatalog,
                 artifacts: ArtifactStore) -> None:
        self.workspace = workspace
        self.plugins = plugins
        self.datasets = datasets
        self.artifacts = artifacts

    def import_dataset_info(self, req: Any) -> dict[str, list[dict[str, Any]]]:
        """Import the datasets an index file lists (LLaMA-Factory's ``dataset_info.json`` for text).

        :return: ``{"datasets": [{"name", "format", "rows", "note"?}], "skipped": [{"name", "reason"}]}``.
        :raises LoRAFactoryError: ``DATASET_INDEX_NOTHING_IMPORTED`` (422) with each entry's reason when
            nothing could be imported: an empty answer would leave the user guessing.
        """
        self.plugins.require_modality(req.modality)
        index = self.workspace.resolve_inside(req.dataset_info_path)
        if not index.is_file():
            raise LoRAFactoryError("DATASET_NOT_FOUND", f"「{req.dataset_info_path}」が見つかりません。",
                                   f"'{req.dataset_info_path}' was not found.", http_status=404)
        options = {"txt_split": req.txt_split} if getattr(req, "txt_split", None) else {}
        imported = self.plugins.call("import_dataset_index", req.modality, path=str(index),
                                     datasets_dir=str(self.workspace.datasets_dir(req.modality)), options=options)
        if imported is None:
            raise LoRAFactoryError("HOOK_NOT_IMPLEMENTED", f"「{req.modality}」はデータセット一覧の取り込みに対応していません。",
                                   f"Modality '{req.modality}' cannot import a dataset index.")
        out, skipped = [], []
        for item in imported:
            if item.get("skipped"):
                skipped.append({"name": item.get("name"), "reason": item["skipped"]})
                continue
            path = Path(item["file"])
            read_options = item.get("read_options") or {}
            self.datasets.record_dataset_meta(path, {"format": item.get("format"), "mapping": item.get("mapping"),
                                                     "read_options": read_options, "original_name": item.get("name")})
            info = self.datasets.inspect_dataset(req.modality, path)
            self.datasets.record_dataset_meta(path, {"format": info.get("format"), "mapping": item.get("mapping"),
                                                     "encoding": info.get("encoding"), "rows": info.get("rows"),
                                                     "read_options": info.get("read_options") or read_options,
                                                     "original_name": item.get("name")})
            self.artifacts.register("dataset", req.modality, path, meta={"source": "dataset_info.json",
                                                                          "format": info.get("format")})
            entry = {"name": path.name, "format": info.get("format"), "rows": info.get("rows")}
            if item.get("note"):
                entry["note"] = item["note"]
            out.append(entry)
        if not out:
            reasons = "; ".join(f"{s['name']}: {s['reason']}" for s in skipped[:10]) or "the file lists no dataset"
            raise LoRAFactoryError(
                "DATASET_INDEX_NOTHING_IMPORTED",
                f"「{req.dataset_info_path}」から取り込めるデータセットがありませんでした: {reasons}",
                f"Nothing in '{req.dataset_info_path}' could be imported: {reasons}",
                http_status=422, detail={"file": req.dataset_info_path, "skipped": skipped})
        return {"datasets": out, "skipped": skipped}

