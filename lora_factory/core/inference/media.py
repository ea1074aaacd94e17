"""Media in and out of inference: files a client uploads for a request (an img2img image, a clip to
transcribe) and the images / audio an ``infer`` hook writes, served back by URL.

Why the host does this and not each plugin: every URL it hands out points inside one of two folders
of the workspace (``artifacts/uploads/``, ``artifacts/outputs/<modality>/``) or a job's run folder, so no
plugin can expose a file elsewhere, and an absolute path never reaches a client.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

from lora_factory.core.errors import LoRAFactoryError, not_found
from lora_factory.core.storage.workspace import Workspace, name_from_filename

UPLOAD_PREFIX = "upload:"
MAX_UPLOAD_BYTES = int(os.environ.get("LORA_FACTORY_MAX_UPLOAD_BYTES", str(2 * 2**30)))
UPLOAD_KEEP_S = float(os.environ.get("LORA_FACTORY_UPLOAD_KEEP_S", str(24 * 3600)))
UPLOAD_KEEP_BYTES = int(os.environ.get("LORA_FACTORY_UPLOAD_KEEP_BYTES", str(4 * 2**30)))
# inside a run folder only these sub-folders are served (never config.json's secrets sibling)
RUN_PUBLIC_FOLDERS = ("samples", "outputs")


class MediaStore:
    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace

    @property
    def uploads_dir(self) -> Path:
        return self.workspace.home / "artifacts" / "uploads"

    def outputs_dir(self, modality: str) -> Path:
        return self.workspace.home / "artifacts" / "outputs" / modality

    # -- uploads -------------------------------------------------------------------------------
    def save_upload(self, filename: str, stream: IO[bytes]) -> dict[str, Any]:
        """Store one input file; the client then names it ``"upload:<id>"`` inside a request's ``input``.
        Old uploads are pruned first (``prune_uploads``)."""
        self.prune_uploads()
        upload_id = f"{uuid.uuid4().hex[:12]}_{name_from_filename(filename or 'file')}"
        self.uploads_dir.mkdir(parents=True, exist_ok=True)
        dest = self.uploads_dir / upload_id
        tmp = self.uploads_dir / f".tmp-{upload_id}"
        size = 0
        try:
            with open(tmp, "xb") as fh:
                while chunk := stream.read(1024 * 1024):
                    size += len(chunk)
                    if size > MAX_UPLOAD_BYTES:
                        raise LoRAFactoryError("UPLOAD_TOO_LARGE", f"ファイルが大きすぎます(上限 {MAX_UPLOAD_BYTES} バイト)。",
                                               f"The file is too large (limit {MAX_UPLOAD_BYTES} bytes).", 413,
                                               detail={"file": filename, "limit": MAX_UPLOAD_BYTES})
                    fh.write(chunk)
            os.replace(tmp, dest)
        finally:
            if tmp.exists():
                tmp.unlink()
        return {"upload": upload_id, "name": filename, "size_bytes": size, "value": f"{UPLOAD_PREFIX}{upload_id}"}

    def prune_uploads(self, max_age_s: float | None = None, max_total_bytes: int | None = None) -> list[str]:
        """Delete uploads older than ``max_age_s`` and, oldest first, those past ``max_total_bytes``
        in all: an input is needed for the request it was sent for, not forever."""
        max_age_s = UPLOAD_KEEP_S if max_age_s is None else max_age_s
        max_total_bytes = UPLOAD_KEEP_BYTES if max_total_bytes is None else max_total_bytes
        if not self.uploads_dir.is_dir():
            return []
        now = time.time()
        files = []
        for path in self.uploads_dir.iterdir():
            try:
                st = path.lstat()
            except OSError:
                continue
            if path.is_file() and not path.name.startswith("."):
                files.append((st.st_mtime, st.st_size, path))
        files.sort(reverse=True)  # newest first: they are kept while the budget lasts
        removed, total = [], 0
        for mtime, size, path in files:
            total += size
            if now - mtime > max_age_s or total > max_total_bytes:
                self.discard_upload(path.name)
                removed.append(path.name)
        return removed

    def discard_upload(self, upload_id: str) -> None:
        """Delete one upload (a request that made it for itself is done with it)."""
        if upload_id and "/" not in upload_id and "\\" not in upload_id and not upload_id.startswith("."):
            try:
                (self.uploads_dir / upload_id).unlink(missing_ok=True)
            except OSError:
                pass

    def upload_path(self, upload_id: str) -> Path:
        if not upload_id or "/" in upload_id or "\\" in upload_id or upload_id.startswith("."):
            raise not_found("Upload", "アップロード", upload_id, code="UPLOAD_NOT_FOUND")
        path = self.uploads_dir / upload_id
        if not path.is_file():
            raise not_found("Upload", "アップロード", upload_id, code="UPLOAD_NOT_FOUND")
        return path

    def resolve_uploads(self, value: Any) -> Any:
        """Every ``"upload:<id>"`` string inside ``value`` (dicts and lists too) replaced by its absolute path."""
        if isinstance(value, str) and value.startswith(UPLOAD_PREFIX):
            return str(self.upload_path(value[len(UPLOAD_PREFIX):]))
        if isinstance(value, dict):
            return {k: self.resolve_uploads(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve_uploads(v) for v in value]
        return value

    # -- outputs -------------------------------------------------------------------------------
    def present(self, event: dict[str, Any], modality: str, job_id: str | None = None) -> dict[str, Any]:
        """An event as a client sees it: a media ``path`` becomes ``url`` + ``file`` (relative); a path
        outside the output folders is dropped with a note, never shown."""
        path = event.get("path")
        if not path or event.get("type") not in ("image", "audio", "file"):
            return event
        shown = {k: v for k, v in event.items() if k != "path"}
        real = Path(path).resolve()
        roots = [(self.outputs_dir(modality).resolve(), f"/api/outputs/{quote(modality)}/")]
        if job_id:
            run = self.workspace.run_dir(job_id).resolve()
            roots += [(run / folder, self.run_file_url(job_id, f"{folder}/")) for folder in RUN_PUBLIC_FOLDERS]
        for root, prefix in roots:
            if real == root or root in real.parents:
                rel = real.relative_to(root).as_posix()
                return shown | {"file": rel, "url": prefix + quote(rel), "name": real.name}
        return shown | {"error": "output written outside the outputs folder: not served"}

    @staticmethod
    def run_file_url(job_id: str, rel: str) -> str:
        """The URL of a file in a job's ``samples/`` or ``outputs/`` folder (``rel`` from the run folder)."""
        return f"/api/jobs/{quote(job_id)}/files/{quote(rel)}"

    def output_file(self, modality: str, rel: str) -> Path:
        """A generated file, for ``GET /api/outputs/<modality>/<rel>`` (inside that folder only)."""
        root = self.outputs_dir(modality)
        path = self.workspace.resolve_inside(rel, base=root)
        if not path.is_file():
            raise not_found("Output", "出力", rel, code="OUTPUT_NOT_FOUND")
        return path

    def run_file(self, job_id: str, rel: str) -> Path:
        """A sample or an eval output of a job (``samples/`` and ``outputs/`` of its run folder only)."""
        parts = Path(rel).parts
        if not parts or parts[0] not in RUN_PUBLIC_FOLDERS:
            raise not_found("File", "ファイル", rel)
        path = self.workspace.resolve_inside(rel, base=self.workspace.run_dir(job_id))
        if not path.is_file():
            raise not_found("File", "ファイル", rel)
        return path
