"""Safe names and atomic writes: a user's file is never half-written and never overwritten in place."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from lora_factory.core.storage.workspace import (
    existing_name,
    name_from_filename,
    name_from_folder,
    safe_name,
    write_bytes_atomic,
    write_text_atomic,
)

__all__ = ["existing_name", "name_from_filename", "name_from_folder", "safe_name", "unique_file",
           "write_bytes_atomic", "write_text_atomic"]


def unique_file(folder: Path, stem: str, suffix: str) -> Path:
    """A path in ``folder`` that does not exist yet: ``<stem>.<suffix>``, else ``<stem>-<random>.<suffix>``.

    Outputs of generation (images, audio) land here; two requests at the same second never collide.
    The file is reserved (created empty, exclusively) so a parallel caller cannot take the same name.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = suffix if suffix.startswith(".") or not suffix else f".{suffix}"
    clean = name_from_filename(f"{stem}{suffix}")
    candidate = folder / clean
    while True:
        try:
            fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            os.close(fd)
            return candidate
        except FileExistsError:
            candidate = folder / f"{Path(clean).stem}-{uuid.uuid4().hex[:6]}{suffix}"

