"""Models and adapters in the workspace: listed, inspected, deleted (datasets: ``dataset_catalog``).

Listing is cheap and torch-free: the modality's plugin describes a model through its
``inspect_model`` hook.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lora_factory.core.catalog.artifacts import ArtifactStore
from lora_factory.core.catalog.datasets import dir_size, leaves_workspace, mtime_iso, read_json_quietly, refused_entry
from lora_factory.core.errors import LoRAFactoryError, confirmation_required, not_found
from lora_factory.core.storage.workspace import Workspace, existing_name, safe_name


class Catalog:
    def __init__(self, workspace: Workspace, plugin_host: Any, artifacts: ArtifactStore,
                 used_by: Callable[[Path], str | None] | None = None) -> None:
        self.workspace = workspace
        self.plugins = plugin_host
        self.artifacts = artifacts
        self.used_by = used_by or (lambda _path: None)

    def remove_unused(self, path: Path) -> None:
        """Delete a model / dataset / adapter the user confirmed, unless a queued or running job uses it.

        It is first renamed aside: on Windows a file still open (a chat that loaded the model) makes
        the rename fail with nothing deleted, instead of an ``rmtree`` that stops half-way.
        """
        job_id = self.used_by(path)
        if job_id:
            raise LoRAFactoryError("IN_USE", f"「{path.name}」はジョブ {job_id} が使用中です。終了後に削除してください。",
                                   f"'{path.name}' is used by job {job_id}; delete it once the job has ended.",
                                   http_status=409, detail={"job_id": job_id, "name": path.name})
        trash = path.parent / f".trash-{path.name}-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(path, trash)
        except OSError as exc:
            raise LoRAFactoryError("IN_USE", f"「{path.name}」は使用中のため削除できません(チャットで読み込み中など): {exc}",
                                   f"'{path.name}' is in use and cannot be deleted (loaded for chat?): {exc}",
                                   http_status=409, detail={"name": path.name}) from exc
        if trash.is_dir():
            shutil.rmtree(trash, ignore_errors=True)
        else:
            trash.unlink(missing_ok=True)

    # -- models --------------------------------------------------------------------------------
    def aux_kinds(self, modality: str) -> dict[str, Any]:
        """Sub-folders of ``models/<modality>/`` holding auxiliary models (vae, controlnet ...)."""
        return (self.plugins.modalities().get(modality) or {}).get("aux_model_kinds") or {}

    def models_folder(self, modality: str, kind: str | None = None) -> Path:
        """``models/<modality>/`` for base models, ``models/<modality>/<kind>/`` for an auxiliary kind."""
        if not kind or kind == "base":
            return self.workspace.models_dir(modality)
        known = self.aux_kinds(modality)
        if kind not in known:
            raise LoRAFactoryError("UNKNOWN_MODEL_KIND", f"「{modality}」に補助モデルの種類「{kind}」はありません。",
                                   f"Modality '{modality}' has no auxiliary model kind '{kind}'.", http_status=400,
                                   detail={"kind": kind, "known": sorted(known)})
        return self.workspace.models_dir(modality) / safe_name(kind, "model kind")

    def list_models(self, modality: str, kind: str | None = None) -> list[dict[str, Any]]:
        self.plugins.require_modality(modality)
        folder = self.models_folder(modality, kind)
        aux = set() if kind and kind != "base" else set(self.aux_kinds(modality))
        out = []
        for path in sorted(folder.iterdir()) if folder.is_dir() else []:
            if path.name.startswith(".") or path.name in aux:
                continue
            if leaves_workspace(self.workspace, path):
                out.append(refused_entry(self.workspace, modality, path))
            elif path.is_dir():
                out.append(self.model_info(modality, path) | {"kind": kind or "base"})
        return out

    def model_info(self, modality: str, path: Path) -> dict[str, Any]:
        info: dict[str, Any] = {}
        try:
            info = self.plugins.call("inspect_model", modality, path=str(path)) or {}
        except Exception as exc:  # a broken folder is listed with its problem
            info = {"error": f"{type(exc).__name__}: {exc}"}
        if not self.workspace.is_inside(path):
            info["error"] = ("This folder links outside the workspace; move the model into models/ to use it. "
                             "/ ワークスペース外へのリンクは使えません。models/ に移動してください。")
        artifact = self.artifacts.find_by_path(path)
        return {
            "name": path.name,
            "modality": modality,
            "path": str(path),
            "rel_path": self.workspace.relative(path),
            "size_bytes": info.pop("size_bytes", None) or dir_size(path),
            "created_at": mtime_iso(path),
            "artifact_id": artifact["id"] if artifact else None,
            # a random-weight offline demo model (lora-factory tiny-model): the UI says its output means nothing
            "demo": bool(artifact and (artifact.get("meta") or {}).get("source") == "tiny"),
            **info,
        }

    def model_path(self, modality: str, ref: str, kind: str | None = None) -> Path:
        """A base model (``name`` or ``models/<m>/<name>``) or, with ``kind``, an auxiliary model."""
        if kind and kind != "base" and "/" not in ref.replace("\\", "/"):
            self.models_folder(modality, kind)
            ref = f"models/{modality}/{kind}/{ref}"
        path = self.workspace.resolve_ref(ref, "models", modality)
        if not path.is_dir() or (not kind and path.name in self.aux_kinds(modality)
                                 and path.parent == self.workspace.models_dir(modality)):
            raise not_found("Model", "モデル", ref, code="MODEL_NOT_FOUND")
        return path

    def delete_model(self, modality: str, name: str, confirm: bool, kind: str | None = None) -> None:
        self.plugins.require_modality(modality)
        path = self.model_path(modality, existing_name(name, "model"), kind)
        if not confirm:
            raise confirmation_required(name)
        self.remove_unused(path)
        self.artifacts.forget_path(path)

    # -- adapters ------------------------------------------------------------------------------
    def adapter_path(self, modality: str, ref: str) -> Path:
        path = self.workspace.resolve_ref(ref, "lora_adapters", modality)
        if not path.is_dir():
            raise not_found("Adapter", "アダプター", ref, code="ADAPTER_NOT_FOUND")
        return path

    def list_adapters(self, modality: str, architecture: str | None = None) -> list[dict[str, Any]]:
        """The adapters of ``modality``; with ``architecture`` (a base's), only those trained for it or of
        unknown architecture (an SDXL LoRA is never offered for an SD1.5 base)."""
        self.plugins.require_modality(modality)
        out = []
        for path in sorted(self.workspace.adapters_dir(modality).iterdir()):
            if path.name.startswith("."):
                continue
            if leaves_workspace(self.workspace, path):
                out.append(refused_entry(self.workspace, modality, path))
            elif path.is_dir():
                info = self.adapter_info(modality, path)
                if not architecture or info.get("architecture") in (None, architecture):
                    out.append(info)
        return out

    def adapter_info(self, modality: str, path: Path, with_lineage: bool = False) -> dict[str, Any]:
        config_file = path / "training_config.json"
        config = read_json_quietly(config_file)
        artifact = self.artifacts.find_by_path(path)
        meta = artifact["meta"] if artifact else {}
        evals, exports = [], []
        if artifact:
            for child in self.artifacts.children(artifact["id"], role="adapter"):
                if child["kind"] == "eval":
                    evals.append({"id": child["id"], "job_id": child["job_id"], "created_at": child["created_at"],
                                  "summary": child["meta"].get("summary")})
                elif child["kind"] == "export":
                    exports.append({"name": child["name"], "target": child["meta"].get("target"),
                                    "job_id": child["job_id"], "created_at": child["created_at"],
                                    "download_url": f"/api/exports/{modality}/{child['name']}/download"})
                elif child["kind"] == "adapter" and child["meta"].get("target"):  # a merge / resize made from it
                    exports.append({"name": child["name"], "target": child["meta"].get("target"), "adapter": True,
                                    "job_id": child["job_id"], "created_at": child["created_at"],
                                    "download_url": f"/api/adapters/{modality}/{child['name']}/download"})
        info = {
            "name": path.name,
            "modality": modality,
            "path": str(path),
            "rel_path": self.workspace.relative(path),
            "size_bytes": dir_size(path),
            "created_at": mtime_iso(path),
            "base_model": meta.get("base_model") or config.get("base_model_ref") or config.get("base_model"),
            "dataset": meta.get("dataset") or config.get("dataset_ref") or config.get("dataset"),
            "preset": meta.get("preset") or config.get("preset"),
            "architecture": meta.get("architecture") or config.get("architecture"),
            "job_id": artifact["job_id"] if artifact else None,
            "artifact_id": artifact["id"] if artifact else None,
            "metrics": meta.get("metrics"),
            "partial": bool(meta.get("partial")),
            "evals": evals,
            "exports": exports,
            "download_url": f"/api/adapters/{modality}/{path.name}/download",
        }
        info.update(_adapter_files(modality, path, config))
        if with_lineage and artifact:
            info["lineage"] = self.artifacts.lineage(artifact["id"])
        return info

    def previous_adapter(self, modality: str, name: str) -> Path | None:
        """``foo-v3`` -> ``foo-v2`` (or ``foo``): the version a regression run compares against."""
        base, version = name, 1
        if "-v" in name and name.rsplit("-v", 1)[1].isdigit():
            base, version = name.rsplit("-v", 1)[0], int(name.rsplit("-v", 1)[1])
        for v in range(version - 1, 0, -1):
            candidate = self.workspace.adapters_dir(modality) / (base if v == 1 else f"{base}-v{v}")
            if candidate.is_dir():
                return candidate
        return None

    def adapter_download(self, modality: str, name: str, tmp_dir: Path, file: str | None = None) -> Path:
        """The adapter folder as a zip (its model card inside), or one ``file`` of it."""
        from lora_factory.core.catalog.exports import download_target

        self.plugins.require_modality(modality)
        return download_target(self.adapter_path(modality, existing_name(name, "adapter")), tmp_dir, file)

    def delete_adapter(self, modality: str, name: str, confirm: bool) -> None:
        self.plugins.require_modality(modality)
        path = self.adapter_path(modality, existing_name(name, "adapter"))
        if not confirm:
            raise confirmation_required(name)
        self.remove_unused(path)
        self.artifacts.forget_path(path)


def _adapter_files(modality: str, path: Path, config: dict[str, Any]) -> dict[str, Any]:
    """The files a user picks out of an adapter folder: the single weights file a plugin named
    (``kohya_file``: the ``<name>.safetensors`` A1111 / ComfyUI load) and the sample images, each with the
    URL that downloads it (a thumbnail's source for the samples)."""
    from urllib.parse import quote

    base = f"/api/adapters/{quote(modality)}/{quote(path.name)}/download?file="
    out: dict[str, Any] = {}
    weights = config.get("kohya_file")
    if isinstance(weights, str) and (path / weights).is_file():
        out["weights_file"] = {"name": weights, "url": base + quote(weights)}
    samples = (config.get("result") or {}).get("samples") if isinstance(config.get("result"), dict) else None
    if isinstance(samples, list):
        out["samples"] = [{"name": s, "url": base + quote(f"samples/{s}")} for s in samples
                          if isinstance(s, str) and (path / "samples" / s).is_file()]
    return out
