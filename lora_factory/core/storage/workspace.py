"""The workspace: the folders a user's work lives in, and safe name resolution inside them.

Why this module matters: every name that comes from a client (a dataset file, a model folder, an
output name) goes through :meth:`Workspace.resolve_inside` or :func:`safe_name`, so that ``..``,
absolute paths, drive letters and symlinks that leave the workspace are refused in one place.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import sys
import time
import uuid
from collections.abc import Iterable
from pathlib import Path, PurePosixPath, PureWindowsPath

from lora_factory.core.errors import LoRAFactoryError

IS_WINDOWS = sys.platform.startswith("win")
BUILTIN_MODALITIES = ("text", "image", "audio")
TOP_FOLDERS = ("models", "datasets", "lora_adapters", "exports", "artifacts", "logs", "runs", "plugins")
PER_MODALITY_FOLDERS = ("models", "datasets", "lora_adapters", "exports")

_NAME_RE = re.compile(r"^[\w\-.@+]+$", re.UNICODE)
# names Windows reserves for devices (with any extension): a folder called "con" cannot be created there
_WINDOWS_RESERVED = re.compile(r"^(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³])(\..*)?$", re.IGNORECASE)


MAX_COMPONENT_BYTES = 255  # the longest file name ext4, NTFS and APFS take (UTF-8 bytes, a safe bound)


def _shown(value: str) -> str:
    """A client's value as an answer may repeat it: printable as UTF-8 (a lone surrogate from JSON
    ``"\\ud800"`` is written as its escape) and cut to 80 characters (a 20,000-character name is not echoed)."""
    text = value.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= 80 else text[:80] + "…"


def _unsafe(value: str, why_en: str, why_ja: str) -> LoRAFactoryError:
    shown = _shown(value)
    return LoRAFactoryError(
        "UNSAFE_PATH",
        f"「{shown}」は使えません: {why_ja}",
        f"'{shown}' is not allowed: {why_en}",
        http_status=400,
        detail={"value": shown},
    )


def _check_text_and_length(value: str) -> None:
    """Refuse what no file system can name, before it reaches one: a lone surrogate (``"\\ud800"`` is
    valid JSON but no file name: the OS call raised ``UnicodeEncodeError``) and a component longer
    than :data:`MAX_COMPONENT_BYTES` (``ENAMETOOLONG``). Both were 500s."""
    try:
        encoded = value.encode("utf-8")
    except UnicodeEncodeError:
        raise _unsafe(value, "it holds characters that are not text (lone surrogates)",
                      "文字として読めない符号 (サロゲート) が含まれています") from None
    if any(len(part) > MAX_COMPONENT_BYTES for part in re.split(rb"[\\/]", encoded)):
        raise _unsafe(value, f"a name longer than {MAX_COMPONENT_BYTES} bytes", f"名前が長すぎます ({MAX_COMPONENT_BYTES} バイトまで)")


def safe_name(value: str, what: str = "name") -> str:
    """A single path component chosen by the user (output name, dataset name ...).

    Letters (any script, Japanese included), digits, ``_ - . @ +``; no separators, no ``..``.
    """
    if not isinstance(value, str) or not value.strip():
        raise LoRAFactoryError(
            "INVALID_NAME",
            f"{what} が空です。",
            f"The {what} is empty.",
            detail={"field": what},
        )
    value = value.strip()
    _check_text_and_length(value)
    if value in (".", "..") or value.startswith(".") or not _NAME_RE.match(value) or len(value) > 128:
        raise _unsafe(value, "use letters, digits, '_', '-', '.', no path separators",
                      "文字・数字・'_'・'-'・'.' のみ使えます(区切り文字や '..' は不可)")
    if _WINDOWS_RESERVED.match(value) or value.endswith("."):
        raise _unsafe(value, "Windows reserves this name (CON, NUL, COM1 ... or a trailing dot)",
                      "Windows で予約された名前です(CON、NUL、COM1 など、末尾の '.')")
    return value


def existing_name(value: str, what: str = "name") -> str:
    """A single path component naming something that already exists (a file the user copied in by
    hand may have spaces): no separators, no ``..``, and no dot-name (``.cache``, ``.meta`` are ours)."""
    if not isinstance(value, str) or not value.strip():
        raise LoRAFactoryError("INVALID_NAME", f"{what} が空です。", f"The {what} is empty.", detail={"field": what})
    _check_text_and_length(value)
    if value.startswith(".") or "/" in value or "\\" in value or "\x00" in value or PureWindowsPath(value).drive:
        raise _unsafe(value, "give a plain name inside the folder", "フォルダ内の名前だけを指定してください")
    return value


def name_from_filename(filename: str) -> str:
    """A safe name derived from an uploaded file's own name ("my data (1).csv" -> "my_data_1_.csv").

    Users' files have spaces and brackets; refusing them would be pedantic, so only a name the user
    types is checked strictly, and a file's own name is made safe instead.
    """
    base = re.split(r"[\\/]", filename)[-1]
    stem, ext = os.path.splitext(base)
    if not ext and stem.startswith(".") and stem.count(".") == 1:  # ".jsonl": an extension, no name
        stem, ext = "", stem
    cleaned = re.sub(r"[^\w\-@+]+", "_", stem, flags=re.UNICODE).strip("_") or "dataset"
    if _WINDOWS_RESERVED.match(cleaned):
        cleaned += "_"
    ext = re.sub(r"[^\w]+", "", ext[1:], flags=re.UNICODE)
    ext = f".{ext}" if ext else ""
    return cleaned[: 128 - len(ext)] + ext


def name_from_folder(folder_name: str) -> str:
    """A safe name derived from a folder's own name ("Qwen2.5 0.5B" -> "Qwen2.5_0.5B")."""
    cleaned = re.sub(r"[^\w\-.@+]+", "_", folder_name, flags=re.UNICODE).strip("._") or "model"
    return (cleaned + "_" if _WINDOWS_RESERVED.match(cleaned) else cleaned)[:128]


def check_relative(value: str) -> PurePosixPath:
    """Reject absolute paths, drive letters, UNC paths and ``..`` before touching the disk."""
    if not isinstance(value, str) or not value.strip():
        raise LoRAFactoryError("INVALID_PATH", "パスが空です。", "The path is empty.")
    _check_text_and_length(value)
    raw = value.strip().replace("\\", "/")
    if raw.startswith("/") or PureWindowsPath(value).drive or re.match(r"^[A-Za-z]:", raw):
        raise _unsafe(value, "absolute paths are refused", "絶対パスは指定できません")
    parts = PurePosixPath(raw).parts
    if any(p == ".." for p in parts):
        raise _unsafe(value, "'..' is refused", "'..' は指定できません")
    if "\x00" in raw:
        raise _unsafe(value, "NUL byte", "NUL 文字が含まれています")
    return PurePosixPath(raw)


class Workspace:
    """The folders under ``home``; created at start, one set per declared modality."""

    def __init__(self, home: str | os.PathLike[str], modalities: Iterable[str] = BUILTIN_MODALITIES):
        self.home = Path(home).expanduser().resolve()
        self.modalities: list[str] = []
        self.ensure(modalities)

    # -- folders -------------------------------------------------------------------------------
    def ensure(self, modalities: Iterable[str]) -> None:
        """Create the top folders and the per-modality ones (idempotent)."""
        for top in TOP_FOLDERS:
            (self.home / top).mkdir(parents=True, exist_ok=True)
        for modality in modalities:
            safe_name(modality, "modality")
            if modality not in self.modalities:
                self.modalities.append(modality)
            for top in PER_MODALITY_FOLDERS:
                (self.home / top / modality).mkdir(parents=True, exist_ok=True)

    @property
    def db_path(self) -> Path:
        return self.home / "artifacts" / "lora_factory.sqlite3"

    def models_dir(self, modality: str) -> Path:
        return self.home / "models" / modality

    def datasets_dir(self, modality: str) -> Path:
        return self.home / "datasets" / modality

    def adapters_dir(self, modality: str) -> Path:
        return self.home / "lora_adapters" / modality

    def exports_dir(self, modality: str) -> Path:
        """``exports/<modality>/``: adapters written for another runtime (GGUF, CTranslate2, A1111 ...)."""
        return self.home / "exports" / modality

    def lineage_dir(self, modality: str) -> Path:
        """``datasets/<modality>/.lineage/``; created by the first write into it, not by a listing."""
        return self.datasets_dir(modality) / ".lineage"

    def run_dir(self, job_id: str) -> Path:
        return self.home / "runs" / job_id

    def log_path(self, kind: str, job_id: str) -> Path:
        return self.home / "logs" / f"{kind}_{job_id}.log"

    def paths(self) -> dict[str, object]:
        """The shape of ``GET /utils/paths``: base, logs, and per modality models/datasets/output."""
        out: dict[str, object] = {
            "base": str(self.home),
            "logs": str(self.home / "logs"),
            "models_root": str(self.home / "models"),
            "datasets_root": str(self.home / "datasets"),
            "lora_adapters_root": str(self.home / "lora_adapters"),
            "exports_root": str(self.home / "exports"),
            "artifacts_root": str(self.home / "artifacts"),
            "runs_root": str(self.home / "runs"),
            "plugins_root": str(self.home / "plugins"),
        }
        for modality in self.modalities:
            out[modality] = {
                "models": str(self.models_dir(modality)),
                "datasets": str(self.datasets_dir(modality)),
                "output": str(self.adapters_dir(modality)),
                "exports": str(self.exports_dir(modality)),
            }
        return out

    def open_path_keys(self) -> dict[str, Path]:
        """Every folder ``POST /utils/open_path`` may open, by key."""
        keys = {
            "base": self.home,
            "logs": self.home / "logs",
            "models_root": self.home / "models",
            "datasets_root": self.home / "datasets",
            "lora_adapters_root": self.home / "lora_adapters",
            "exports_root": self.home / "exports",
            "artifacts_root": self.home / "artifacts",
            "runs_root": self.home / "runs",
            "plugins_root": self.home / "plugins",
        }
        for modality in self.modalities:
            keys[f"{modality}_models"] = self.models_dir(modality)
            keys[f"{modality}_datasets"] = self.datasets_dir(modality)
            keys[f"{modality}_output"] = self.adapters_dir(modality)
            keys[f"{modality}_exports"] = self.exports_dir(modality)
        return keys

    # -- safe resolution -----------------------------------------------------------------------
    def resolve_inside(self, value: str | os.PathLike[str], base: Path | None = None) -> Path:
        """Resolve a client-given relative path inside ``base`` (default: the home), or refuse.

        Symlinks are followed before the check, so a link pointing outside is refused too.
        """
        rel = check_relative(str(value))
        try:
            root = (base or self.home).resolve()
            candidate = (root / Path(*rel.parts)).resolve()
        except (OSError, RuntimeError, ValueError):  # a link loop ("Symlink loop from ..."), a name the OS refuses
            raise _unsafe(str(value), "it cannot be resolved (a link loop?)", "たどれないパスです (リンクの循環など)") from None
        if candidate != root and root not in candidate.parents:
            raise _unsafe(str(value), "it leaves the workspace", "ワークスペースの外を指しています")
        home = self.home
        if candidate != home and home not in candidate.parents:
            raise _unsafe(str(value), "it leaves the workspace", "ワークスペースの外を指しています")
        return candidate

    def resolve_ref(self, value: str, folder: str, modality: str) -> Path:
        """Resolve ``models/text/x`` style references, or a bare name looked up in the modality's folder.

        ``folder`` is one of ``models``, ``datasets``, ``lora_adapters``.
        """
        safe_name(modality, "modality")  # from a URL path: "%00" or 20,000 characters reached the OS (a 500)
        rel = check_relative(value)
        if any(part.startswith(".") for part in rel.parts):  # .cache, .meta, .lineage, .tmp-* are ours
            raise _unsafe(value, "hidden (dot) names are refused", "'.' で始まる名前は指定できません")
        base = self.home / folder / modality
        if len(rel.parts) == 1:
            return self.resolve_inside(value, base)
        if len(rel.parts) < 3 or rel.parts[0] != folder or rel.parts[1] != modality:
            raise LoRAFactoryError(
                "WRONG_FOLDER",
                f"「{value}」は {folder}/{modality}/ の中を指定してください。",
                f"'{value}' must name something inside {folder}/{modality}/.",
                http_status=400,
                detail={"value": value, "folder": f"{folder}/{modality}"},
            )
        return self.resolve_inside("/".join(rel.parts[2:]), base)

    def relative(self, path: Path) -> str:
        """A workspace-relative POSIX path, as stored in the registry and shown to users.

        A link that points outside the workspace is named by where it lies, not where it leads.
        """
        try:
            real: list[Path] = [Path(path).resolve()]
        except (OSError, RuntimeError):  # a loop of links: named by where it lies
            real = []
        for candidate in (*real, Path(os.path.abspath(path))):
            try:
                return candidate.relative_to(self.home).as_posix()
            except ValueError:
                continue
        return Path(path).as_posix()

    def is_inside(self, path: Path) -> bool:
        """True when ``path`` really lies in the workspace (symlinks followed)."""
        resolved = Path(path).resolve()
        return resolved == self.home or self.home in resolved.parents

    # -- atomic moves --------------------------------------------------------------------------
    def tmp_path(self, near: Path) -> Path:
        """A temporary sibling path on the same filesystem, so the final rename is atomic."""
        near.parent.mkdir(parents=True, exist_ok=True)
        return near.parent / f".tmp-{near.name}-{uuid.uuid4().hex[:8]}"

    def move_into_place(self, source: Path, destination: Path) -> Path:
        """Rename ``source`` to ``destination``; a collision is an error, never an overwrite.

        The rename itself refuses an existing target (a hard link for files, a directory rename for
        folders), so a destination that appears between the check and the move is never replaced,
        and a folder is never moved *inside* another one.
        """
        if destination.exists():
            raise self._exists(destination)
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            rename_no_clobber(source, destination)
        except (FileExistsError, IsADirectoryError, NotADirectoryError) as exc:
            raise self._exists(destination) from exc
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise self._exists(destination) from exc
            if exc.errno != errno.EXDEV:
                raise
            # another filesystem: copy next to the destination first, then rename there; the source
            # stays until the copy is in place (a resume can publish it again)
            staging = self.tmp_path(destination)
            try:
                if source.is_dir():
                    shutil.copytree(source, staging)
                else:
                    shutil.copy2(source, staging)
            except (OSError, shutil.Error) as copy_error:
                _remove_quietly(staging)
                raise self._copy_failed(source, destination, copy_error) from copy_error
            try:
                rename_no_clobber(staging, destination)
            except OSError as inner:
                _remove_quietly(staging)
                raise self._exists(destination) from inner
            shutil.rmtree(source) if source.is_dir() else source.unlink()
        return destination

    def _copy_failed(self, source: Path, destination: Path, exc: BaseException) -> LoRAFactoryError:
        """A copy across file systems that stopped half-way, in words (not ``shutil.Error``'s list)."""
        from lora_factory.core.errors import disk_full, is_disk_full

        failures = exc.args[0] if isinstance(exc, shutil.Error) and exc.args and isinstance(exc.args[0], list) else []
        first = failures[0] if failures else None
        reason = str(first[2]) if first and len(first) > 2 else str(exc)
        if is_disk_full(exc) or "No space left" in reason or "[Errno 28]" in reason:
            return disk_full(exc, self.relative(destination.parent))
        shown = Path(str(first[0])).name if first else source.name
        count = f" ({len(failures)} files)" if len(failures) > 1 else ""
        return LoRAFactoryError(
            "PUBLISH_FAILED",
            f"「{destination.name}」への出力のコピーが途中で失敗しました{count}: {shown}: {reason}。"
            "出力は runs/ のジョブフォルダに残っています。原因を取り除いてから、ジョブを再開すると公開し直します。",
            f"Copying the output to '{destination.name}' failed half-way{count}: {shown}: {reason}. The output is "
            "still in the job's runs/ folder; fix the cause and resume the job to publish it again.",
            http_status=500, detail={"destination": self.relative(destination), "file": shown, "reason": reason,
                                     "failed_files": len(failures) or None})

    def clean_stale_temporaries(self, older_than_s: float = 0.0) -> list[str]:
        """Remove the ``.tmp-*`` / ``.trash-*`` leftovers of an interrupted write, move or delete in the
        model, dataset and adapter folders; only those older than ``older_than_s`` seconds (a live job
        may be publishing). Returns what was removed, workspace-relative."""
        removed: list[str] = []
        now = time.time()
        for top in PER_MODALITY_FOLDERS:
            for folder in (self.home / top).glob("*/"):
                for sub in (folder, folder / ".meta", folder / ".lineage"):
                    if not sub.is_dir():
                        continue
                    for entry in sub.iterdir():
                        if entry.name.startswith((".tmp-", ".trash-")) and _remove_if_stale(entry, now, older_than_s):
                            removed.append(self.relative(entry))
        for top, depth in TEMPORARY_PLACES:
            removed += self._clean_tree(self.home / top, depth, now, older_than_s)
        # the plugins' caches: datasets/<modality>/.cache/tokens/ (text), datasets/audio/<name>/.cache/ (codec
        # codes); only there, never elsewhere in a dataset, where a file is the user's
        for cache in [*self.home.glob("datasets/*/.cache"), *self.home.glob("datasets/*/*/.cache")]:
            removed += self._clean_tree(cache, 1, now, older_than_s)
        return removed

    def _clean_tree(self, root: Path, depth: int, now: float, older_than_s: float) -> list[str]:
        """Temporaries (``.tmp-*``, ``.trash-*``, ``.<name>.tmp``) up to ``depth`` levels below ``root``."""
        removed: list[str] = []
        if depth < 0 or not root.is_dir() or root.is_symlink():
            return removed
        try:
            entries = list(root.iterdir())
        except OSError:
            return removed
        for entry in entries:
            name = entry.name
            if name.startswith((".tmp-", ".trash-")) or (name.startswith(".") and name.endswith(".tmp")):
                if _remove_if_stale(entry, now, older_than_s):
                    removed.append(self.relative(entry))
            elif entry.is_dir() and not entry.is_symlink():
                removed += self._clean_tree(entry, depth - 1, now, older_than_s)
        return removed

    def _exists(self, destination: Path) -> LoRAFactoryError:
        shown = self.relative(destination) if self.home in destination.parents else str(destination)
        return LoRAFactoryError(
            "OUTPUT_EXISTS",
            f"「{destination.name}」は既に存在します。別の名前を指定してください。",
            f"'{destination.name}' already exists; choose another name.",
            http_status=409,
            detail={"path": shown},
        )


# where else the product writes through a temporary name (checkpoints, generated media, uploads),
# with how deep below it the temporaries lie: runs/<id>/checkpoints/.tmp-checkpoint-*
TEMPORARY_PLACES = (("runs", 3), ("artifacts/outputs", 4), ("artifacts/uploads", 0))


def _remove_if_stale(entry: Path, now: float, older_than_s: float) -> bool:
    """Remove a leftover temporary once it is ``older_than_s`` old; True when it was removed."""
    try:
        age = now - entry.lstat().st_mtime
    except OSError:
        return False
    if age < older_than_s:
        return False
    _remove_quietly(entry)
    return True


def _remove_quietly(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass


def rename_no_clobber(source: Path, destination: Path, attempts: int = 5) -> None:
    """Move ``source`` to ``destination`` only if nothing is there (raises ``FileExistsError`` / ``OSError``).

    Files: a hard link then an unlink on POSIX (``link`` refuses an existing name, ``replace`` would not);
    ``os.rename`` on Windows, which refuses an existing target. Folders: ``os.rename`` (a non-empty
    target is refused on every OS). On Windows a file briefly held by a virus scanner is retried.
    """
    for attempt in range(attempts):
        try:
            if source.is_dir() or IS_WINDOWS:
                os.rename(source, destination)
            else:
                try:
                    os.link(source, destination)
                except PermissionError:  # a filesystem without hard links: check, then rename
                    if os.path.lexists(destination):
                        raise FileExistsError(errno.EEXIST, "exists", str(destination)) from None
                    os.rename(source, destination)
                    return
                os.unlink(source)
            return
        except PermissionError:
            if not IS_WINDOWS or attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


def has_files(folder: Path) -> bool:
    """Whether ``folder`` holds at least one file (at any depth): an output worth publishing."""
    return folder.is_dir() and any(p.is_file() for p in folder.rglob("*"))


def write_bytes_atomic(path: Path, data: bytes, private: bool = False) -> None:
    """Write a file through a temporary sibling and a rename (a reader never sees half a file).

    ``private``: readable by the owner only from its first byte (a token, a key), not chmod-ed after.
    """
    tmp = path.parent / f".tmp-{path.name}-{uuid.uuid4().hex[:8]}"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600 if private else 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk leaves no half-written temporary behind
        raise


def write_text_atomic(path: Path, text: str, private: bool = False) -> None:
    write_bytes_atomic(path, text.encode("utf-8"), private=private)
