"""What is in the workspace: models, datasets and adapters, listed, inspected, uploaded, deleted.

Listing is cheap and torch-free: the modality's plugin describes a model or a dataset through its
``inspect_model`` / ``inspect_dataset`` hooks. Uploads are validated on a temporary copy first and
renamed into place only when valid, so a bad file never appears in the list.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from lora_factory.core.artifacts import ArtifactStore
from lora_factory.core.errors import LoRAFactoryError, confirmation_required, not_found
from lora_factory.core.workspace import Workspace, existing_name, name_from_filename, safe_name, write_text_atomic

CACHED_PREVIEW_ROWS = 20


def read_json_quietly(path: Path) -> dict[str, Any]:
    """A sidecar JSON file (training_config, .meta, .lineage) or ``{}``; a damaged one is reported in
    ``_error`` instead of breaking a whole listing."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return {"_error": f"{path.name}: {type(exc).__name__}: {exc}"}
    return data if isinstance(data, dict) else {"_error": f"{path.name}: not a JSON object"}


def _dir_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _mtime_iso(path: Path) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat(timespec="seconds")


class Catalog:
    def __init__(self, workspace: Workspace, plugin_host: Any, artifacts: ArtifactStore,
                 used_by: Callable[[Path], str | None] | None = None) -> None:
        self.workspace = workspace
        self.plugins = plugin_host
        self.artifacts = artifacts
        self.used_by = used_by or (lambda _path: None)

    def _remove(self, path: Path) -> None:
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
    def list_models(self, modality: str) -> list[dict[str, Any]]:
        self.plugins.require_modality(modality)
        out = []
        for path in sorted(self.workspace.models_dir(modality).iterdir()):
            if path.name.startswith(".") or not path.is_dir():
                continue
            out.append(self.model_info(modality, path))
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
            "size_bytes": info.pop("size_bytes", None) or _dir_size(path),
            "created_at": _mtime_iso(path),
            "artifact_id": artifact["id"] if artifact else None,
            **info,
        }

    def model_path(self, modality: str, ref: str) -> Path:
        path = self.workspace.resolve_ref(ref, "models", modality)
        if not path.is_dir():
            raise not_found("Model", "モデル", ref, code="MODEL_NOT_FOUND")
        return path

    def delete_model(self, modality: str, name: str, confirm: bool) -> None:
        self.plugins.require_modality(modality)
        path = self.model_path(modality, existing_name(name, "model"))
        if not confirm:
            raise confirmation_required(name)
        self._remove(path)
        self.artifacts.forget_path(path)

    # -- datasets ------------------------------------------------------------------------------
    def _meta_path(self, dataset: Path) -> Path:
        """Where the sidecar lives; the folder is created by the atomic write, not by looking."""
        return dataset.parent / ".meta" / f"{dataset.name}.json"

    def dataset_options(self, dataset: Path) -> dict[str, Any]:
        """The format / mapping / encoding recorded at upload, handed to the plugin on every read."""
        meta = self._meta_path(dataset)
        if meta.exists():
            data = read_json_quietly(meta)
            return {k: data[k] for k in ("format", "mapping", "encoding") if data.get(k)}
        return {}

    def record_dataset_meta(self, dataset: Path, meta: dict[str, Any]) -> None:
        """The sidecar ``.meta/<file>.json``: how to read the file (format, mapping, encoding)."""
        write_text_atomic(self._meta_path(dataset), json.dumps(meta, ensure_ascii=False, indent=2))

    def dataset_path(self, modality: str, ref: str) -> Path:
        path = self.workspace.resolve_ref(ref, "datasets", modality)
        if not path.is_file():
            raise not_found("Dataset", "データセット", ref, code="DATASET_NOT_FOUND")
        return path

    def list_datasets(self, modality: str) -> list[dict[str, Any]]:
        self.plugins.require_modality(modality)
        folder = self.workspace.datasets_dir(modality)
        out = []
        for path in sorted(folder.iterdir()):
            if path.name.startswith(".") or not path.is_file():
                continue
            meta_file = self._meta_path(path)
            meta = read_json_quietly(meta_file)
            lineage_file = self.workspace.lineage_dir(modality) / f"{path.name}.json"
            lineage = read_json_quietly(lineage_file)
            out.append({
                "name": path.name,
                "modality": modality,
                "path": str(path),
                "rel_path": self.workspace.relative(path),
                "size_bytes": path.stat().st_size,
                "format": meta.get("format") or ("openai" if lineage else None),
                "rows": meta.get("rows") or (lineage.get("report") or {}).get("rows_out"),
                "parent": lineage.get("parent"),
                "created_at": _mtime_iso(path),
            })
        return out

    def inspect_dataset(self, modality: str, path: Path, options: dict[str, Any] | None = None) -> dict[str, Any]:
        """Validation, statistics and preview; cached per file version, since reading a large dataset
        takes seconds and the UI asks again each time it is opened."""
        opts = self.dataset_options(path) | (options or {})
        wanted = int(opts.pop("preview_rows", 5))
        cached = self._cached_inspection(path, opts, wanted)
        if cached is None:
            cached = self._plugin_inspect(modality, path, opts | {"preview_rows": max(wanted, CACHED_PREVIEW_ROWS)})
            self._cache_inspection(path, opts, max(wanted, CACHED_PREVIEW_ROWS), cached)
        info = dict(cached, preview=(cached.get("preview") or [])[:wanted])
        return {"name": path.name, "modality": modality, "path": str(path),
                "rel_path": self.workspace.relative(path), "size_bytes": path.stat().st_size, **info}

    @staticmethod
    def _stamp(path: Path) -> str:
        stat = path.stat()
        return f"{stat.st_size}-{stat.st_mtime_ns}"

    def _cache_path(self, path: Path) -> Path:
        return self._meta_path(path).with_name(f"{path.name}.inspect.json")

    def _cached_inspection(self, path: Path, opts: dict[str, Any], wanted: int) -> dict[str, Any] | None:
        cache = read_json_quietly(self._cache_path(path))
        if cache.get("stamp") == self._stamp(path) and cache.get("options") == opts \
                and int(cache.get("preview_rows", 0)) >= wanted and isinstance(cache.get("info"), dict):
            return cache["info"]
        return None

    def _cache_inspection(self, path: Path, opts: dict[str, Any], rows: int, info: dict[str, Any]) -> None:
        try:
            write_text_atomic(self._cache_path(path), json.dumps(
                {"stamp": self._stamp(path), "options": opts, "preview_rows": rows, "info": info},
                ensure_ascii=False, default=str))
        except OSError:
            pass  # a cache, nothing more

    def _plugin_inspect(self, modality: str, path: Path, options: dict[str, Any]) -> dict[str, Any]:
        """The plugin's validation; a plugin without ``inspect_dataset`` accepts files as they are."""
        info = self.plugins.call("inspect_dataset", modality, path=str(path), options=options)
        if info is None:
            return {"format": None, "rows": None, "validated": False, "preview": [], "stats": {}}
        return dict(info, validated=True)

    def upload_dataset(self, modality: str, filename: str, stream: IO[bytes], name: str | None = None,
                       options: dict[str, Any] | None = None) -> dict[str, Any]:
        """Validate on a temp copy, then rename into ``datasets/<modality>/``; nothing is written on error."""
        desc = self.plugins.require_modality(modality)
        original = Path(filename or "").name
        suffix = Path(original).suffix.lower()
        target_name = safe_name(name, "dataset name") if name else name_from_filename(original)
        if not Path(target_name).suffix:
            target_name += suffix
        allowed = desc.get("dataset_extensions") or []
        if allowed and Path(target_name).suffix.lower() not in allowed:
            raise LoRAFactoryError(
                "DATASET_UNSUPPORTED_FORMAT",
                f"「{original}」の形式には対応していません。対応形式: {', '.join(allowed)}",
                f"'{original}' is not a supported file type. Supported: {', '.join(allowed)}",
                http_status=415, detail={"file": original, "supported": allowed})
        dest = self.workspace.datasets_dir(modality) / target_name
        if dest.exists():
            raise LoRAFactoryError("OUTPUT_EXISTS", f"データセット「{target_name}」は既に存在します。",
                                   f"Dataset '{target_name}' already exists.", http_status=409,
                                   detail={"name": target_name})
        # validated under its own name (inside a temporary folder), so messages name the user's file
        tmp_dir = self.workspace.tmp_path(dest)
        tmp_dir.mkdir()
        tmp = tmp_dir / target_name
        try:
            with open(tmp, "wb") as fh:
                shutil.copyfileobj(stream, fh, 1024 * 1024)
            info = self._plugin_inspect(modality, tmp, dict(options or {}))
            self.workspace.move_into_place(tmp, dest)
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)
        meta = {"format": info.get("format"), "encoding": info.get("encoding"), "rows": info.get("rows"),
                "mapping": (options or {}).get("mapping"), "original_name": original}
        self.record_dataset_meta(dest, meta)
        artifact_id = self.artifacts.register("dataset", modality, dest, meta={"format": meta["format"],
                                                                            "rows": meta["rows"], "source": "upload"})
        return {"name": dest.name, "modality": modality, "path": str(dest), "rel_path": self.workspace.relative(dest),
                "size_bytes": dest.stat().st_size, "artifact_id": artifact_id, **info}

    def add_sample_dataset(self, modality: str, name: str | None = None) -> dict[str, Any]:
        desc = self.plugins.require_modality(modality)
        samples = desc.get("sample_datasets") or []
        if not samples:
            raise LoRAFactoryError("NO_SAMPLE_DATASET", f"「{modality}」にはサンプルデータセットがありません。",
                                   f"Modality '{modality}' ships no sample dataset.", http_status=404)
        source = Path(samples[0])
        target = name or source.name
        dest = self.workspace.datasets_dir(modality) / safe_name(target, "dataset name")
        if dest.exists():
            return self.inspect_dataset(modality, dest)
        with open(source, "rb") as fh:
            return self.upload_dataset(modality, source.name, fh, name=dest.name)

    def delete_dataset(self, modality: str, name: str, confirm: bool) -> None:
        self.plugins.require_modality(modality)
        path = self.dataset_path(modality, existing_name(name, "dataset"))
        if not confirm:
            raise confirmation_required(name)
        self._remove(path)
        for side in (self._meta_path(path), self._cache_path(path),
                     self.workspace.lineage_dir(modality) / f"{path.name}.json"):
            if side.exists():
                side.unlink()
        self.artifacts.forget_path(path)

    def dataset_lineage(self, modality: str, name: str) -> dict[str, Any]:
        """The chain of versions from the original upload to ``name``, and the versions made from it."""
        path = self.dataset_path(modality, existing_name(name, "dataset"))
        lineage_dir = self.workspace.lineage_dir(modality)
        chain, seen = [], set()
        current: str | None = path.name
        while current and current not in seen:
            seen.add(current)
            record_file = lineage_dir / f"{current}.json"
            if record_file.exists():
                record = read_json_quietly(record_file)
                chain.append(record)
                parent = record.get("parent")
                current = Path(parent).name if parent else None
            else:
                chain.append({"name": current, "parent": None, "operations": None, "origin": "upload"})
                current = None
        children = []
        for record_file in sorted(lineage_dir.glob("*.json")):
            record = read_json_quietly(record_file)
            if record.get("parent") and Path(record["parent"]).name == path.name:
                children.append(record)
        return {"name": path.name, "versions": list(reversed(chain)), "children": children}

    # -- adapters ------------------------------------------------------------------------------
    def adapter_path(self, modality: str, ref: str) -> Path:
        path = self.workspace.resolve_ref(ref, "lora_adapters", modality)
        if not path.is_dir():
            raise not_found("Adapter", "アダプター", ref, code="ADAPTER_NOT_FOUND")
        return path

    def list_adapters(self, modality: str) -> list[dict[str, Any]]:
        self.plugins.require_modality(modality)
        out = []
        for path in sorted(self.workspace.adapters_dir(modality).iterdir()):
            if path.is_dir() and not path.name.startswith("."):
                out.append(self.adapter_info(modality, path))
        return out

    def adapter_info(self, modality: str, path: Path, with_lineage: bool = False) -> dict[str, Any]:
        config_file = path / "training_config.json"
        config = read_json_quietly(config_file)
        artifact = self.artifacts.find_by_path(path)
        meta = artifact["meta"] if artifact else {}
        evals = []
        if artifact:
            for child in self.artifacts.children(artifact["id"], role="adapter"):
                if child["kind"] == "eval":
                    evals.append({"id": child["id"], "job_id": child["job_id"], "created_at": child["created_at"],
                                  "summary": child["meta"].get("summary")})
        info = {
            "name": path.name,
            "modality": modality,
            "path": str(path),
            "rel_path": self.workspace.relative(path),
            "size_bytes": _dir_size(path),
            "created_at": _mtime_iso(path),
            "base_model": meta.get("base_model") or config.get("base_model_ref") or config.get("base_model"),
            "dataset": meta.get("dataset") or config.get("dataset_ref") or config.get("dataset"),
            "preset": meta.get("preset") or config.get("preset"),
            "job_id": artifact["job_id"] if artifact else None,
            "artifact_id": artifact["id"] if artifact else None,
            "metrics": meta.get("metrics"),
            "partial": bool(meta.get("partial")),
            "evals": evals,
        }
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

    def delete_adapter(self, modality: str, name: str, confirm: bool) -> None:
        self.plugins.require_modality(modality)
        path = self.adapter_path(modality, existing_name(name, "adapter"))
        if not confirm:
            raise confirmation_required(name)
        self._remove(path)
        self.artifacts.forget_path(path)
