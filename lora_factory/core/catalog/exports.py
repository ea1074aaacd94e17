"""Exports (``exports/<modality>/<name>/``) and downloads of adapters and exports.

An export is an adapter written for another runtime (a GGUF for llama.cpp / Ollama, a CTranslate2
folder for faster-whisper, a single-file checkpoint for A1111 ...). Its folder holds the files, its
model card (``README.md``) and ``export.json`` (what the host knew when it published it: target,
adapter, base model, the plugin's summary), so a listing never depends on the database alone.

A download is the single file where the export is one file (``primary``), the folder as a zip
otherwise (model card included); ``file=`` picks one file of the folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lora_factory.core.catalog import archives
from lora_factory.core.catalog.artifacts import ArtifactStore
from lora_factory.core.catalog.datasets import dir_size, mtime_iso, read_json_quietly
from lora_factory.core.errors import LoRAFactoryError, confirmation_required, not_found
from lora_factory.core.storage.workspace import Workspace, check_relative, existing_name

EXPORT_INFO = "export.json"


def download_target(folder: Path, tmp_dir: Path, file: str | None = None, primary: str | None = None,
                    as_zip: bool = False) -> Path:
    """What a download of ``folder`` sends: one file inside it (``file``), the ``primary`` file, or a zip.

    :raises LoRAFactoryError: ``UNSAFE_PATH`` for a name that leaves the folder, ``FILE_NOT_FOUND``.
    """
    root = folder.resolve()
    chosen = file if file else (None if as_zip else primary)
    if chosen:
        rel = check_relative(chosen)
        path = (root / Path(*rel.parts)).resolve()
        if root not in path.parents or any(p.startswith(".") for p in rel.parts):
            raise LoRAFactoryError("UNSAFE_PATH", f"「{chosen}」はこのフォルダの外を指しています。",
                                   f"'{chosen}' is not inside this folder.", detail={"value": chosen})
        if not path.is_file():
            raise not_found("File", "ファイル", chosen, code="FILE_NOT_FOUND")
        return path
    tmp_dir.mkdir(parents=True, exist_ok=True)
    return archives.zip_folder(root, tmp_dir / f"{root.name}.zip")


def file_list(folder: Path) -> list[dict[str, Any]]:
    """The files of a folder (relative POSIX names and sizes), dot-names left out."""
    out = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.is_file() and not any(p.startswith(".") for p in rel.parts):
            out.append({"name": rel.as_posix(), "size_bytes": path.stat().st_size})
    return out


class ExportCatalog:
    def __init__(self, workspace: Workspace, artifacts: ArtifactStore, remove: Any) -> None:
        self.workspace = workspace
        self.artifacts = artifacts
        self.remove = remove  # Catalog.remove_unused: refuses what a running job uses

    def export_path(self, modality: str, name: str) -> Path:
        path = self.workspace.resolve_ref(existing_name(name, "export"), "exports", modality)
        if not path.is_dir():
            raise not_found("Export", "エクスポート", name, code="EXPORT_NOT_FOUND")
        return path

    def list_exports(self, modality: str, adapter: str | None = None) -> list[dict[str, Any]]:
        folder = self.workspace.exports_dir(modality)
        out = []
        for path in sorted(folder.iterdir()) if folder.is_dir() else []:
            if path.name.startswith(".") or not path.is_dir() or not self.workspace.is_inside(path):
                continue
            info = self.export_info(modality, path)
            if adapter is None or info.get("adapter_name") == adapter:
                out.append(info)
        return out

    def export_info(self, modality: str, path: Path, with_lineage: bool = False) -> dict[str, Any]:
        recorded = read_json_quietly(path / EXPORT_INFO)
        artifact = self.artifacts.find_by_path(path)
        summary = recorded.get("summary") or {}
        adapter_ref = recorded.get("adapter") or ""
        info = {
            "name": path.name,
            "modality": modality,
            "path": str(path),
            "rel_path": self.workspace.relative(path),
            "size_bytes": dir_size(path),
            "created_at": mtime_iso(path),
            "target": recorded.get("target"),
            "adapter": adapter_ref or None,
            "adapter_name": adapter_ref.rstrip("/").rsplit("/", 1)[-1] or None,
            "base_model": recorded.get("base_model"),
            "params": recorded.get("params"),
            "primary": summary.get("primary"),
            "opens_in": summary.get("opens_in") or [],
            "commands": summary.get("commands") or [],
            "checks": summary.get("checks") or {},
            "warnings": recorded.get("warnings") or [],
            "files": file_list(path),
            "job_id": recorded.get("job_id") or (artifact["job_id"] if artifact else None),
            "artifact_id": artifact["id"] if artifact else None,
            "download_url": f"/api/exports/{modality}/{path.name}/download",
        }
        if with_lineage and artifact:
            info["lineage"] = self.artifacts.lineage(artifact["id"])
        return info

    def delete_export(self, modality: str, name: str, confirm: bool) -> None:
        path = self.export_path(modality, name)
        if not confirm:
            raise confirmation_required(name)
        self.remove(path)
        self.artifacts.forget_path(path)

    def download(self, modality: str, name: str, tmp_dir: Path, file: str | None = None,
                 as_zip: bool = False) -> Path:
        path = self.export_path(modality, name)
        primary = (read_json_quietly(path / EXPORT_INFO).get("summary") or {}).get("primary")
        return download_target(path, tmp_dir, file, primary, as_zip)


def write_export_info(folder: Path, record: dict[str, Any]) -> None:
    """``export.json`` inside the export, written by the job before the folder is published."""
    from lora_factory.core.storage.workspace import write_text_atomic

    write_text_atomic(folder / EXPORT_INFO, json.dumps(record, ensure_ascii=False, indent=2, default=str))
