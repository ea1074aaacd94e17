"""Zip archives and loose files turned into a folder dataset, member by member, and folders zipped back.

Why this much care: a zip is the user's (or an attacker's) description of paths. Every member is
checked before a byte is written: no absolute path, no drive letter, no ``..``, no symlink, no
encrypted member, no two names that collide on a case-insensitive file system (Windows, macOS), no
more members or bytes than the limits, no member that inflates far beyond its compressed size (a zip
bomb). Everything is extracted inside a temporary folder that the caller renames into place only
after the plugin validated it, so a refused archive leaves nothing behind.
"""

from __future__ import annotations

import os
import re
import stat
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO

from lora_factory.core.errors import LoRAFactoryError, is_disk_full
from lora_factory.core.storage.workspace import check_relative

# Names that operating systems add to archives: skipped, never an error.
JUNK_NAMES = {".DS_Store", "Thumbs.db", "desktop.ini"}
JUNK_FOLDERS = {"__MACOSX"}
COPY_CHUNK = 1024 * 1024


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


@dataclass
class ArchiveLimits:
    """Limits of one upload; generous for real datasets (thousands of images, hours of audio)."""

    max_members: int = field(default_factory=lambda: _env_int("LORA_FACTORY_ZIP_MAX_FILES", 200_000))
    max_total_bytes: int = field(default_factory=lambda: _env_int("LORA_FACTORY_ZIP_MAX_BYTES", 64 * 2**30))
    max_member_bytes: int = field(default_factory=lambda: _env_int("LORA_FACTORY_ZIP_MAX_MEMBER_BYTES", 8 * 2**30))
    # a member may inflate this many times its compressed size (text compresses ~10x, a bomb ~1000x)
    max_ratio: int = field(default_factory=lambda: _env_int("LORA_FACTORY_ZIP_MAX_RATIO", 200))


MAX_NAME_BYTES = 255  # one path component, as most filesystems allow


def invalid_member(member: str, archive: str, reason_en: str, reason_ja: str) -> LoRAFactoryError:
    """A member that cannot be extracted as it is (damaged, an unsupported method, a name too long)."""
    shown = member if len(member) <= 120 else member[:120] + "…"
    return LoRAFactoryError(
        "ARCHIVE_INVALID",
        f"「{archive}」の「{shown}」を展開できません: {reason_ja}。zip を作り直してください。何も取り込んでいません。",
        f"'{shown}' in '{archive}' cannot be extracted: {reason_en}. Re-create the zip; nothing was imported.",
        422, detail={"file": archive, "member": shown, "reason": reason_en})


def _refused(member: str, reason_ja: str, reason_en: str, archive: str) -> LoRAFactoryError:
    return LoRAFactoryError(
        "ARCHIVE_UNSAFE",
        f"「{archive}」の「{member}」は取り込めません: {reason_ja}。何も書き込んでいません。",
        f"'{member}' in '{archive}' was refused: {reason_en}. Nothing was written.",
        http_status=422, detail={"file": archive, "member": member, "reason": reason_en})


def _too_large(archive: str, what_ja: str, what_en: str, limit: int) -> LoRAFactoryError:
    return LoRAFactoryError(
        "ARCHIVE_TOO_LARGE", f"「{archive}」は上限を超えています: {what_ja}(上限 {limit})。何も書き込んでいません。",
        f"'{archive}' is over the limit: {what_en} (limit {limit}). Nothing was written.",
        http_status=413, detail={"file": archive, "limit": limit, "what": what_en})


def member_path(name: str, archive: str) -> PurePosixPath | None:
    """The safe relative path of a member, None for junk to skip; raises for anything unsafe."""
    raw = name.replace("\\", "/")
    if "\x00" in raw:
        raise _refused(name, "NUL 文字を含みます", "it contains a NUL byte", archive)
    if any(len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES for part in raw.split("/")):
        raise invalid_member(name, archive, "the name is too long", "名前が長すぎます")  # a damaged name, not an escape
    try:
        rel = check_relative(raw)
    except LoRAFactoryError as exc:
        raise _refused(name, "絶対パスまたは '..' を含みます", "absolute path or '..'", archive) from exc
    parts = [p for p in rel.parts if p not in ("", ".")]
    if not parts or parts[0] in JUNK_FOLDERS or parts[-1] in JUNK_NAMES or parts[-1].startswith("._"):
        return None
    if any(p.startswith(".") for p in parts):  # .git, .meta ... hidden names are ours or noise
        return None
    return PurePosixPath(*parts)


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    mode = info.external_attr >> 16
    return info.create_system == 3 and stat.S_ISLNK(mode)


def _check_collisions(paths: Iterable[PurePosixPath], archive: str) -> None:
    """Two members whose names differ only by case overwrite each other on Windows / macOS."""
    seen: dict[str, str] = {}
    dirs: set[str] = set()
    for path in paths:
        key = path.as_posix().casefold()
        if key in seen:
            raise _refused(path.as_posix(), f"「{seen[key]}」と大文字小文字だけが違う名前です",
                           f"it differs from '{seen[key]}' only by case", archive)
        seen[key] = path.as_posix()
        dirs.update(parent.as_posix().casefold() for parent in path.parents if parent.as_posix() != ".")
    clash = sorted(set(seen) & dirs)
    if clash:
        raise _refused(seen[clash[0]], "同じ名前のフォルダもあります", "a folder has the same name", archive)


def _strip_single_root(paths: list[PurePosixPath]) -> int:
    """1 when every member lies in one top folder (a zipped folder), so its content is the dataset.

    Not for a kohya ``<repeats>_<concept>`` folder (``10_mychar/``): that name is data (how often the
    images repeat, and their class words), and a dataset of one concept is zipped exactly like that.
    """
    tops = {p.parts[0] for p in paths}
    if len(tops) == 1 and re.match(r"^\d+_.", next(iter(tops))):
        return 0
    return 1 if len(tops) == 1 and all(len(p.parts) > 1 for p in paths) else 0


def extract_zip(source: Path | IO[bytes], dest: Path, archive_name: str,
                limits: ArchiveLimits | None = None) -> list[str]:
    """Check every member of the zip, then extract into ``dest`` (an empty temporary folder).

    Returns the relative paths written. Raises ``ARCHIVE_INVALID`` (not a zip), ``ARCHIVE_UNSAFE``
    (a member refused) or ``ARCHIVE_TOO_LARGE`` before anything is written.
    """
    limits = limits or ArchiveLimits()
    try:
        zf = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise LoRAFactoryError("ARCHIVE_INVALID", f"「{archive_name}」は zip ファイルとして読めません: {exc}",
                               f"'{archive_name}' is not a readable zip file: {exc}", 422,
                               detail={"file": archive_name}) from exc
    with zf:
        infos = zf.infolist()
        if len(infos) > limits.max_members:
            raise _too_large(archive_name, f"{len(infos)} 個のファイル", f"{len(infos)} members", limits.max_members)
        planned: list[tuple[zipfile.ZipInfo, PurePosixPath]] = []
        total = packed = 0
        for info in infos:
            if _is_symlink(info):
                raise _refused(info.filename, "シンボリックリンクです", "it is a symbolic link", archive_name)
            path = member_path(info.filename, archive_name)
            if path is None or info.is_dir():
                continue
            if info.flag_bits & 0x1:
                raise _refused(info.filename, "暗号化されています", "it is encrypted", archive_name)
            if info.file_size > limits.max_member_bytes:
                raise _too_large(archive_name, f"「{info.filename}」が {info.file_size} バイト",
                                 f"'{info.filename}' has {info.file_size} bytes", limits.max_member_bytes)
            if info.file_size > 1024 * 1024 and info.file_size > limits.max_ratio * max(info.compress_size, 1):
                raise _refused(info.filename, "圧縮率が異常です(zip 爆弾の疑い)",
                               "its compression ratio is implausible (zip bomb)", archive_name)
            if any(len(part.encode("utf-8")) > MAX_NAME_BYTES for part in path.parts):
                raise invalid_member(info.filename, archive_name, "the name is too long", "名前が長すぎます")
            total += info.file_size
            packed += info.compress_size
            if total > limits.max_total_bytes:
                raise _too_large(archive_name, f"展開後 {total} バイト以上", f"over {total} bytes unpacked",
                                 limits.max_total_bytes)
            planned.append((info, path))
        # the whole archive's ratio: many small members (each under the per-member check) are a bomb too
        if total > 1024 * 1024 and total > limits.max_ratio * max(packed, 1):
            raise _refused(archive_name, "全体の圧縮率が異常です(zip 爆弾の疑い)",
                           "the archive's compression ratio is implausible (zip bomb)", archive_name)
        if not planned:
            raise LoRAFactoryError("ARCHIVE_EMPTY", f"「{archive_name}」に取り込めるファイルがありません。",
                                   f"'{archive_name}' holds no file to import.", 422, detail={"file": archive_name})
        _check_collisions([p for _, p in planned], archive_name)
        strip = _strip_single_root([p for _, p in planned])
        written = []
        for info, path in planned:
            rel = PurePosixPath(*path.parts[strip:])
            target = dest.joinpath(*rel.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            budget = info.file_size
            try:
                with zf.open(info) as fin, open(target, "xb") as fout:
                    while True:
                        chunk = fin.read(COPY_CHUNK)
                        if not chunk:
                            break
                        budget -= len(chunk)
                        if budget < 0:  # the header lied about the size
                            raise invalid_member(info.filename, archive_name, "it inflates beyond its declared size",
                                                 "宣言より大きく展開されました")
                        fout.write(chunk)
            except LoRAFactoryError:
                raise
            except OSError as exc:
                if is_disk_full(exc):
                    raise
                raise invalid_member(info.filename, archive_name, exc.strerror or "unreadable",
                                     exc.strerror or "読めません") from exc
            except (zipfile.BadZipFile, NotImplementedError, EOFError, RuntimeError, ValueError, zlib.error) as exc:
                # a bad CRC, deflate64, local and central names that differ, a truncated member
                reason = str(exc).split(" for file ")[0].replace(str(target), rel.as_posix())[:200]
                raise invalid_member(info.filename, archive_name, reason, reason) from exc
            written.append(rel.as_posix())
        return written


def save_loose_files(files: Iterable[tuple[str, IO[bytes]]], dest: Path, limits: ArchiveLimits | None = None) -> list[str]:
    """Several uploaded files (names may carry a relative folder, as a browser's folder upload sends
    them) written into ``dest`` with the same checks as zip members."""
    limits = limits or ArchiveLimits()
    items = []
    for name, stream in files:
        path = member_path(name or "", "upload")
        if path is not None:
            items.append((path, stream))
    if not items:
        raise LoRAFactoryError("ARCHIVE_EMPTY", "取り込めるファイルがありません。", "No file to import.", 422)
    if len(items) > limits.max_members:
        raise _too_large("upload", f"{len(items)} 個のファイル", f"{len(items)} files", limits.max_members)
    _check_collisions([p for p, _ in items], "upload")
    strip = _strip_single_root([p for p, _ in items])
    total = 0
    written = []
    for path, stream in items:
        rel = PurePosixPath(*path.parts[strip:])
        target = dest.joinpath(*rel.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "xb") as fout:
            while True:
                chunk = stream.read(COPY_CHUNK)
                if not chunk:
                    break
                total += len(chunk)
                if total > limits.max_total_bytes:
                    raise _too_large("upload", f"{total} バイト以上", f"over {total} bytes", limits.max_total_bytes)
                fout.write(chunk)
        written.append(rel.as_posix())
    return written


def copy_folder(source: Path, dest: Path, limits: ArchiveLimits | None = None) -> tuple[list[str], list[str]]:
    """A local folder copied into ``dest`` (regular files only; symbolic links are skipped and listed,
    never followed, so nothing outside the chosen folder is read). Returns (copied, skipped)."""
    limits = limits or ArchiveLimits()
    copied, skipped = [], []
    total = 0
    for root, dirs, files in os.walk(source, followlinks=False):
        root_path = Path(root)
        for d in list(dirs):
            if (root_path / d).is_symlink():
                skipped.append((root_path / d).relative_to(source).as_posix())
                dirs.remove(d)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in JUNK_FOLDERS)
        for name in sorted(files):
            path = root_path / name
            rel = path.relative_to(source).as_posix()
            if path.is_symlink() or not path.is_file():
                skipped.append(rel)
                continue
            if member_path(rel, source.name) is None:
                continue
            size = path.stat().st_size
            total += size
            if len(copied) >= limits.max_members:
                raise _too_large(source.name, f"{len(copied) + 1} 個以上のファイル", "too many files", limits.max_members)
            if total > limits.max_total_bytes:
                raise _too_large(source.name, f"{total} バイト以上", f"over {total} bytes", limits.max_total_bytes)
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with open(path, "rb") as fin, open(target, "xb") as fout:
                    while chunk := fin.read(COPY_CHUNK):
                        fout.write(chunk)
            except OSError as exc:
                if is_disk_full(exc):
                    raise
                raise unreadable_source(source.name, rel, exc) from exc
            copied.append(rel)
    return copied, skipped


def unreadable_source(folder: str, rel: str, exc: OSError) -> LoRAFactoryError:
    """A file of a folder being imported that cannot be read (``/proc``, a device, no permission)."""
    reason = exc.strerror or type(exc).__name__
    return LoRAFactoryError(
        "IMPORT_SOURCE_UNREADABLE",
        f"フォルダ「{folder}」のファイル「{rel}」を読み込めません({reason})。普通のファイルだけのフォルダを指定してください。",
        f"File '{rel}' of folder '{folder}' cannot be read ({reason}); give a folder of ordinary files.",
        http_status=422, detail={"file": rel, "reason": reason})


def zip_folder(folder: Path, target: Path) -> Path:
    """Write ``folder``'s files (hidden names excluded) into the zip ``target``; media are stored as
    they are (already compressed), text is deflated."""
    stored = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".wav", ".flac", ".ogg", ".mp3", ".m4a", ".opus", ".zip",
              ".safetensors", ".parquet", ".gguf", ".bin"}
    with zipfile.ZipFile(target, "w") as zf:
        for root, dirs, files in os.walk(folder, followlinks=False):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                path = Path(root) / name
                if name.startswith(".") or path.is_symlink():
                    continue
                method = zipfile.ZIP_STORED if path.suffix.lower() in stored else zipfile.ZIP_DEFLATED
                zf.write(path, path.relative_to(folder).as_posix(), compress_type=method)
    return target
