"""Datasets in the workspace: files (text) or folders (images + captions, wavs + esd.list), listed,
inspected, uploaded (a file, a zip, several files), imported from a local folder, served, zipped,
versioned (lineage) and deleted.

A modality declares ``dataset_kind`` ("file" or "folder"). Whatever arrives is written into a
temporary place first, validated there by the plugin's ``inspect_dataset`` and renamed into
``datasets/<modality>/`` only when valid, so a bad upload never appears in the list. Reading a large
dataset takes seconds, so the plugin's answer is cached per version of the file or folder.
"""

from __future__ import annotations

import json
import mimetypes
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

from lora_factory.core.catalog import archives as archive
from lora_factory.core.catalog.artifacts import ArtifactStore
from lora_factory.core.errors import LoRAFactoryError, as_user_error, confirmation_required, not_found
from lora_factory.core.storage.workspace import (
    Workspace,
    existing_name,
    name_from_filename,
    name_from_folder,
    safe_name,
    write_text_atomic,
)

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


def dir_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def mtime_iso(path: Path) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat(timespec="seconds")


def leaves_workspace(workspace: Workspace, path: Path) -> bool:
    """A link (or junction) whose target lies outside the workspace: never walked, never used."""
    try:
        return not workspace.is_inside(path)
    except (OSError, RuntimeError):  # a loop of links
        return True


def refused_entry(workspace: Workspace, modality: str, path: Path) -> dict[str, Any]:
    """How a link leaving the workspace is listed: by its name, marked refused, nothing read behind it."""
    from datetime import datetime, timezone

    try:
        created = datetime.fromtimestamp(path.lstat().st_mtime, timezone.utc).isoformat(timespec="seconds")
    except OSError:
        created = None
    return {"name": path.name, "modality": modality, "path": str(path), "rel_path": workspace.relative(path),
            "size_bytes": None, "created_at": created, "refused": True, "usable": False,
            "error": "This entry links outside the workspace and is not used; move the files into the workspace. "
                     "/ ワークスペース外へのリンクは使えません。ファイルをワークスペース内に移動してください。"}


def dataset_meta_path(dataset: Path) -> Path:
    """The sidecar ``.meta/<name>.json`` of a dataset (how to read it); created by the atomic write."""
    return dataset.parent / ".meta" / f"{dataset.name}.json"


def version_stamp(path: Path) -> str:
    """Changes whenever the file or any file of the folder changes (size, mtime, count)."""
    if path.is_file():
        stat = path.stat()
        return f"{stat.st_size}-{stat.st_mtime_ns}"
    count = size = newest = 0
    for root, dirs, files in os.walk(path):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            stat = os.stat(os.path.join(root, name))
            count, size, newest = count + 1, size + stat.st_size, max(newest, stat.st_mtime_ns)
    return f"d{count}-{size}-{newest}"


def _reraise_for_user(exc: OSError) -> None:
    """Raise a full disk as ``DISK_FULL`` (507); any other OS error as it is."""
    known = as_user_error(exc)
    if known is None:
        raise exc
    raise known from exc


class DatasetCatalog:
    def __init__(self, workspace: Workspace, plugin_host: Any, artifacts: ArtifactStore,
                 remove: Callable[[Path], None]) -> None:
        self.workspace = workspace
        self.plugins = plugin_host
        self.artifacts = artifacts
        self._remove = remove

    def kind(self, modality: str) -> str:
        """``file`` or ``folder``, as the modality declared."""
        return (self.plugins.modalities().get(modality) or {}).get("dataset_kind") or "file"

    # -- sidecars ------------------------------------------------------------------------------
    def _cache_path(self, path: Path) -> Path:
        return dataset_meta_path(path).with_name(f"{path.name}.inspect.json")

    def dataset_options(self, dataset: Path) -> dict[str, Any]:
        """The format / mapping / encoding recorded at upload, and the plugin's own ``read_options``,
        handed to the plugin on every read."""
        meta = dataset_meta_path(dataset)
        if meta.exists():
            data = read_json_quietly(meta)
            options = {k: data[k] for k in ("format", "mapping", "encoding") if data.get(k)}
            read_options = data.get("read_options")  # the plugin's own (e.g. how a .txt splits into rows)
            if isinstance(read_options, dict):
                options.update({k: v for k, v in read_options.items() if k not in options})
            return options
        return {}

    def record_dataset_meta(self, dataset: Path, meta: dict[str, Any]) -> None:
        """The sidecar ``.meta/<name>.json``: how to read the dataset (format, mapping, encoding)."""
        write_text_atomic(dataset_meta_path(dataset), json.dumps(meta, ensure_ascii=False, indent=2))

    # -- finding -------------------------------------------------------------------------------
    def dataset_path(self, modality: str, ref: str) -> Path:
        path = self.workspace.resolve_ref(ref, "datasets", modality)
        exists = path.is_dir() if self.kind(modality) == "folder" else path.is_file()
        if not exists:
            raise not_found("Dataset", "データセット", ref, code="DATASET_NOT_FOUND")
        return path

    def list_datasets(self, modality: str) -> list[dict[str, Any]]:
        self.plugins.require_modality(modality)
        folder_kind = self.kind(modality) == "folder"
        out = []
        for path in sorted(self.workspace.datasets_dir(modality).iterdir()):
            if path.name.startswith("."):
                continue
            if leaves_workspace(self.workspace, path):
                out.append(refused_entry(self.workspace, modality, path))
                continue
            if not (path.is_dir() if folder_kind else path.is_file()):
                continue
            meta = read_json_quietly(dataset_meta_path(path))
            lineage = read_json_quietly(self.workspace.lineage_dir(modality) / f"{path.name}.json")
            out.append({
                "name": path.name,
                "modality": modality,
                "kind": "folder" if folder_kind else "file",
                "path": str(path),
                "rel_path": self.workspace.relative(path),
                "size_bytes": dir_size(path),
                "format": meta.get("format") or (lineage.get("format") if lineage else None)
                or ("openai" if lineage and not folder_kind else None),
                "rows": meta.get("rows") or (lineage.get("report") or {}).get("rows_out"),
                "parent": lineage.get("parent"),
                "created_at": mtime_iso(path),
            })
        return out

    # -- inspection ----------------------------------------------------------------------------
    def inspect_dataset(self, modality: str, path: Path, options: dict[str, Any] | None = None) -> dict[str, Any]:
        """Validation, statistics and preview; cached per version of the file or folder, since reading a
        large dataset takes seconds and the UI asks again each time it is opened."""
        opts = self.dataset_options(path) | (options or {})
        wanted = int(opts.pop("preview_rows", 5))
        offset = int(opts.pop("offset", 0) or 0)
        if offset:  # a later page of items: asked of the plugin directly, not cached
            info = self._plugin_inspect(modality, path, opts | {"preview_rows": wanted, "offset": offset})
        else:
            # one walk of the dataset, taken before reading it: the cache names the version that was read
            stamp = version_stamp(path)
            info = self._cached_inspection(path, stamp, opts, wanted)
            if info is None:
                info = self._plugin_inspect(modality, path, opts | {"preview_rows": max(wanted, CACHED_PREVIEW_ROWS)})
                self._cache_inspection(path, stamp, opts, max(wanted, CACHED_PREVIEW_ROWS), info)
        info = dict(info, preview=self._with_media_urls(modality, path, (info.get("preview") or [])[:wanted]))
        return {"name": path.name, "modality": modality, "kind": self.kind(modality), "path": str(path),
                "rel_path": self.workspace.relative(path), "size_bytes": dir_size(path), "offset": offset, **info}

    def _with_media_urls(self, modality: str, path: Path, rows: list[Any]) -> list[Any]:
        """Media the plugin names in a preview row (``{"media": [{"kind", "file"}]}``) get the URL the
        server serves them from (inside this dataset only)."""
        if not path.is_dir():
            return rows
        out = []
        for row in rows:
            if isinstance(row, dict) and isinstance(row.get("media"), list):
                row = dict(row, media=[dict(m, url=self.file_url(modality, path.name, m["file"]))
                                       for m in row["media"] if isinstance(m, dict) and m.get("file")])
            out.append(row)
        return out

    @staticmethod
    def file_url(modality: str, dataset: str, rel: str) -> str:
        return f"/api/datasets/{quote(modality)}/{quote(dataset)}/files/{quote(str(rel).replace(os.sep, '/'))}"

    def _cached_inspection(self, path: Path, stamp: str, opts: dict[str, Any], wanted: int) -> dict[str, Any] | None:
        cache = read_json_quietly(self._cache_path(path))
        if cache.get("stamp") == stamp and cache.get("options") == opts \
                and int(cache.get("preview_rows", 0)) >= wanted and isinstance(cache.get("info"), dict):
            return cache["info"]
        return None

    def _cache_inspection(self, path: Path, stamp: str, opts: dict[str, Any], rows: int, info: dict[str, Any]) -> None:
        try:
            write_text_atomic(self._cache_path(path), json.dumps(
                {"stamp": stamp, "options": opts, "preview_rows": rows, "info": info},
                ensure_ascii=False, default=str))
        except OSError:
            pass  # a cache, nothing more

    def _plugin_inspect(self, modality: str, path: Path, options: dict[str, Any]) -> dict[str, Any]:
        """The plugin's validation; a plugin without ``inspect_dataset`` accepts datasets as they are."""
        info = self.plugins.call("inspect_dataset", modality, path=str(path), options=options)
        if info is None:
            return {"format": None, "rows": None, "validated": False, "preview": [], "stats": {}}
        return dict(info, validated=True)

    def dataset_file(self, modality: str, name: str, rel: str) -> Path:
        """A file inside a folder dataset, for the preview's media (never outside that folder)."""
        dataset = self.dataset_path(modality, existing_name(name, "dataset"))
        if not dataset.is_dir():
            raise not_found("File", "ファイル", rel)
        path = self.workspace.resolve_inside(rel, base=dataset)
        if not path.is_file() or any(p.startswith(".") for p in Path(rel).parts):
            raise not_found("File", "ファイル", rel)
        return path

    @staticmethod
    def media_type(path: Path) -> str:
        return mimetypes.guess_type(path.name)[0] or "application/octet-stream"

    # -- adding --------------------------------------------------------------------------------
    def _destination(self, modality: str, target_name: str) -> Path:
        dest = self.workspace.datasets_dir(modality) / target_name
        if dest.exists():
            raise LoRAFactoryError("OUTPUT_EXISTS", f"データセット「{target_name}」は既に存在します。",
                                   f"Dataset '{target_name}' already exists.", http_status=409,
                                   detail={"name": target_name})
        return dest

    def upload_dataset(self, modality: str, filename: str, stream: IO[bytes], name: str | None = None,
                       options: dict[str, Any] | None = None) -> dict[str, Any]:
        """One uploaded file: a dataset file, or (folder modalities) a zip of the dataset folder."""
        desc = self.plugins.require_modality(modality)
        original = Path(filename or "").name
        if self.kind(modality) == "folder":
            if Path(original).suffix.lower() != ".zip":
                raise LoRAFactoryError(
                    "DATASET_UNSUPPORTED_FORMAT",
                    f"「{original}」: このモダリティのデータセットはフォルダです。zip にまとめるか、複数のファイルを選んでください。",
                    f"'{original}': datasets of this modality are folders; upload a .zip or several files.",
                    http_status=415, detail={"file": original, "supported": [".zip"]})
            target = safe_name(name, "dataset name") if name else name_from_folder(Path(original).stem)
            return self._add_folder(modality, target, original, options,
                                    lambda tmp: archive.extract_zip(stream, tmp, original), source="upload")
        suffix = Path(original).suffix.lower()
        target_name = safe_name(name, "dataset name") if name else name_from_filename(original)
        if not Path(target_name).suffix:
            target_name += suffix
        allowed = desc.get("dataset_extensions") or []
        if allowed and Path(target_name).suffix.lower() not in allowed:
            # the name that was refused: the chosen dataset name when one was given, else the file's
            raise LoRAFactoryError(
                "DATASET_UNSUPPORTED_FORMAT",
                f"「{target_name}」の形式には対応していません。対応形式: {', '.join(allowed)}",
                f"'{target_name}' is not a supported file type. Supported: {', '.join(allowed)}",
                http_status=415, detail={"file": target_name, "uploaded_file": original, "supported": allowed})
        dest = self._destination(modality, target_name)
        # validated under its own name (inside a temporary folder), so messages name the user's file
        tmp_dir = self.workspace.tmp_path(dest)
        tmp_dir.mkdir()
        tmp = tmp_dir / target_name
        try:
            with open(tmp, "wb") as fh:
                shutil.copyfileobj(stream, fh, 1024 * 1024)
            info = self._plugin_inspect(modality, tmp, dict(options or {}))
            self.workspace.move_into_place(tmp, dest)
        except OSError as exc:
            _reraise_for_user(exc)
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)
        return self._registered(modality, dest, info, options, original, "upload")

    def upload_files(self, modality: str, files: Iterable[tuple[str, IO[bytes]]], name: str,
                     options: dict[str, Any] | None = None) -> dict[str, Any]:
        """Several files (a browser's folder upload: names may carry their relative folder) as one
        folder dataset."""
        self.plugins.require_modality(modality)
        self._require_folder_kind(modality)
        target = safe_name(name, "dataset name")
        return self._add_folder(modality, target, target, options,
                                lambda tmp: archive.save_loose_files(files, tmp), source="upload")

    def import_folder(self, modality: str, source_path: str, name: str | None = None,
                      options: dict[str, Any] | None = None) -> dict[str, Any]:
        """Copy a local folder (absolute path on the server's machine) in as a folder dataset."""
        self.plugins.require_modality(modality)
        self._require_folder_kind(modality)
        source = Path(source_path).expanduser()
        if not source.is_absolute() or not source.is_dir():
            raise LoRAFactoryError("IMPORT_SOURCE_NOT_FOUND",
                                   f"フォルダ「{source_path}」が見つかりません(絶対パスで指定してください)。",
                                   f"Folder '{source_path}' was not found (give an absolute path).",
                                   http_status=404, detail={"source_path": source_path})
        target = safe_name(name, "dataset name") if name else name_from_folder(source.name)
        skipped: list[str] = []

        def fill(tmp: Path) -> list[str]:
            copied, links = archive.copy_folder(source.resolve(), tmp)
            skipped.extend(links)
            return copied

        info = self._add_folder(modality, target, source.name, options, fill, source="import")
        return dict(info, skipped_links=skipped)

    def _require_folder_kind(self, modality: str) -> None:
        if self.kind(modality) != "folder":
            raise LoRAFactoryError("DATASET_NOT_A_FOLDER", f"「{modality}」のデータセットはファイルです。1 つのファイルをアップロードしてください。",
                                   f"Datasets of '{modality}' are single files; upload one file.", http_status=400,
                                   detail={"modality": modality})

    def _add_folder(self, modality: str, target: str, original: str, options: dict[str, Any] | None,
                    fill: Callable[[Path], list[str]], source: str) -> dict[str, Any]:
        """Fill a temporary folder, let the plugin validate it, rename it into place; nothing stays on error."""
        dest = self._destination(modality, target)
        tmp = self.workspace.tmp_path(dest)
        tmp.mkdir()
        try:
            fill(tmp)
            info = self._plugin_inspect(modality, tmp, dict(options or {}))
            self.workspace.move_into_place(tmp, dest)
        except OSError as exc:
            _reraise_for_user(exc)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return self._registered(modality, dest, info, options, original, source)

    def _registered(self, modality: str, dest: Path, info: dict[str, Any], options: dict[str, Any] | None,
                    original: str, source: str) -> dict[str, Any]:
        meta = {"format": info.get("format"), "encoding": info.get("encoding"), "rows": info.get("rows"),
                "mapping": (options or {}).get("mapping"), "read_options": info.get("read_options") or {},
                "original_name": original}
        try:
            self.record_dataset_meta(dest, meta)
            artifact_id = self.artifacts.register("dataset", modality, dest, meta={"format": meta["format"],
                                                                                "rows": meta["rows"], "source": source})
        except Exception as exc:  # a dataset without its sidecar would be read wrongly: none at all
            shutil.rmtree(dest, ignore_errors=True) if dest.is_dir() else dest.unlink(missing_ok=True)
            dataset_meta_path(dest).unlink(missing_ok=True)
            known = as_user_error(exc)
            if known is None:
                raise
            raise known from exc
        preview = self._with_media_urls(modality, dest, info.get("preview") or [])
        return {"name": dest.name, "modality": modality, "kind": self.kind(modality), "path": str(dest),
                "rel_path": self.workspace.relative(dest), "size_bytes": dir_size(dest),
                "artifact_id": artifact_id, **info, "preview": preview}

    def add_sample_dataset(self, modality: str, name: str | None = None) -> dict[str, Any]:
        desc = self.plugins.require_modality(modality)
        samples = desc.get("sample_datasets") or []
        if not samples:
            raise LoRAFactoryError("NO_SAMPLE_DATASET", f"「{modality}」にはサンプルデータセットがありません。",
                                   f"Modality '{modality}' ships no sample dataset.", http_status=404)
        source = Path(samples[0])
        target = safe_name(name or source.name, "dataset name")
        dest = self.workspace.datasets_dir(modality) / target
        if dest.exists():
            return self.inspect_dataset(modality, dest)
        if source.is_dir():
            return self.import_folder(modality, str(source), name=target)
        with open(source, "rb") as fh:
            return self.upload_dataset(modality, source.name, fh, name=dest.name)

    def archive(self, modality: str, name: str, target_dir: Path, target: str | None = None) -> Path:
        """The dataset as a zip in ``target_dir`` (a folder dataset zipped; a file dataset as it is), or
        in the layout of ``target`` (one of the plugin's ``dataset_exports``) written by the plugin."""
        path = self.dataset_path(modality, existing_name(name, "dataset"))
        if target:
            exports = self.plugins.require_modality(modality).get("dataset_exports") or {}
            if target not in exports:
                raise LoRAFactoryError("EXPORT_TARGET_UNKNOWN", f"エクスポート先「{target}」はありません"
                                       f"（{', '.join(exports) or 'なし'}）。",
                                       f"Unknown export target '{target}' (one of: {', '.join(exports) or 'none'}).",
                                       422, detail={"field": "target", "targets": list(exports)})
            target_dir.mkdir(parents=True, exist_ok=True)
            out = target_dir / f"{path.name}-{target}.zip"
            self.plugins.call("export_dataset", modality, path=str(path), target=target, out_file=str(out))
            return out
        if path.is_file():
            return path
        target_dir.mkdir(parents=True, exist_ok=True)
        return archive.zip_folder(path, target_dir / f"{path.name}.zip")

    # -- removing, versions ----------------------------------------------------------------------
    def delete_dataset(self, modality: str, name: str, confirm: bool) -> None:
        self.plugins.require_modality(modality)
        path = self.dataset_path(modality, existing_name(name, "dataset"))
        if not confirm:
            raise confirmation_required(name)
        self._remove(path)
        for side in (dataset_meta_path(path), self._cache_path(path),
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
