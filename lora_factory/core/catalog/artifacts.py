"""Registry of models, dataset versions, adapters and eval results, with content hash and lineage.

Lineage is what lets a user answer "which data made this adapter?": an adapter points to its train
job, its base model and its dataset version; a dataset version points to its parent and the refine
job that made it. Paths are stored workspace-relative so a moved workspace keeps its history.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import threading
from pathlib import Path
from typing import Any

from lora_factory.core.errors import not_found
from lora_factory.core.storage.db import connect, init_db, now_iso

ARTIFACT_KINDS = ("model", "dataset", "adapter", "eval")
FULL_HASH_LIMIT = 2 * 1024**3  # above this, a sampled fingerprint (first / last MiB + sizes)


def _file_sha256(path: Path, sampled: bool) -> str:
    digest = hashlib.sha256()
    size = path.stat().st_size
    with open(path, "rb") as fh:
        if sampled and size > 4 * 1024**2:
            digest.update(fh.read(1024**2))
            fh.seek(size - 1024**2)
            digest.update(fh.read(1024**2))
            digest.update(str(size).encode())
        else:
            for chunk in iter(lambda: fh.read(1024**2), b""):
                digest.update(chunk)
    return digest.hexdigest()


def content_hash(path: Path) -> tuple[str, int, str]:
    """(sha256, total size, mode) of a file or a folder (sorted relative names + each file's hash)."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file() and ".cache" not in p.parts)
    total = sum(p.stat().st_size for p in files)
    sampled = total > FULL_HASH_LIMIT
    if path.is_file():
        return _file_sha256(path, sampled), total, "sampled" if sampled else "full"
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.relative_to(path).as_posix().encode("utf-8") + b"\0")
        digest.update(_file_sha256(file, sampled).encode() + b"\n")
    return digest.hexdigest(), total, "sampled" if sampled else "full"


class ArtifactStore:
    def __init__(self, db_path: Path, home: Path) -> None:
        init_db(db_path)
        self.home = Path(home)
        self._conn = connect(db_path)
        self._lock = threading.RLock()

    def close(self) -> None:
        self._conn.close()

    def _rel(self, path: Path | str) -> str:
        p = Path(path)
        if not p.is_absolute():
            return p.as_posix()
        for candidate in (p.resolve(), Path(os.path.abspath(p))):  # a link is named where it lies
            try:
                return candidate.relative_to(self.home.resolve()).as_posix()
            except ValueError:
                continue
        return p.as_posix()

    def register(self, kind: str, modality: str, path: Path, job_id: str | None = None,
                 parents: list[tuple[str, str]] | None = None, meta: dict[str, Any] | None = None,
                 name: str | None = None) -> str:
        """Record an artifact (hashing its content) and its parents; returns the artifact id."""
        abs_path = (self.home / path) if not Path(path).is_absolute() else Path(path)
        sha, size, mode = content_hash(abs_path)
        meta = dict(meta or {})
        meta.setdefault("hash_mode", mode)
        artifact_id = f"{kind}_{secrets.token_hex(6)}"
        with self._lock:
            self._conn.execute(
                "INSERT INTO artifacts (id, kind, modality, name, path, sha256, size_bytes, created_at, job_id, meta)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (artifact_id, kind, modality, name or abs_path.name, self._rel(abs_path), sha, size, now_iso(),
                 job_id, json.dumps(meta, ensure_ascii=False)),
            )
            for parent_id, role in parents or []:
                if parent_id:
                    self._conn.execute(
                        "INSERT OR IGNORE INTO lineage (child, parent, role) VALUES (?, ?, ?)",
                        (artifact_id, parent_id, role),
                    )
        return artifact_id

    def ensure(self, kind: str, modality: str, path: Path) -> str:
        """The id of the artifact at ``path``, registering it first if nobody did (a hand-copied model)."""
        found = self.find_by_path(path)
        return found["id"] if found else self.register(kind, modality, path, meta={"registered": "on_first_use"})

    def find_by_path(self, path: Path | str) -> dict[str, Any] | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT * FROM artifacts WHERE path = ? ORDER BY created_at DESC LIMIT 1", (self._rel(path),)
            ).fetchone()
        return self._to_dict(row) if row else None

    def get(self, artifact_id: str) -> dict[str, Any]:
        with self._lock:
            row = self._conn.execute("SELECT * FROM artifacts WHERE id = ?", (artifact_id,)).fetchone()
        if row is None:
            raise not_found("Artifact", "成果物", artifact_id, code="ARTIFACT_NOT_FOUND")
        return self._to_dict(row)

    def list(self, kind: str | None = None, modality: str | None = None) -> list[dict[str, Any]]:
        where, args = [], []
        for col, value in (("kind", kind), ("modality", modality)):
            if value:
                where.append(f"{col} = ?")
                args.append(value)
        sql = "SELECT * FROM artifacts" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY created_at DESC"
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        return [self._to_dict(r) for r in rows]

    def children(self, artifact_id: str, role: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT a.*, l.role AS link_role FROM lineage l JOIN artifacts a ON a.id = l.child WHERE l.parent = ?"
        args: list[Any] = [artifact_id]
        if role:
            sql += " AND l.role = ?"
            args.append(role)
        with self._lock:
            rows = self._conn.execute(sql + " ORDER BY a.created_at", args).fetchall()
        return [self._to_dict(r) for r in rows]

    def lineage(self, artifact_id: str, depth: int = 20) -> dict[str, Any]:
        """The artifact with its ancestors as a tree (``parents``: [{role, artifact}])."""
        node = self.get(artifact_id)
        if depth <= 0:
            return node
        with self._lock:
            links = self._conn.execute("SELECT parent, role FROM lineage WHERE child = ?", (artifact_id,)).fetchall()
        node["parents"] = []
        for link in links:
            try:
                node["parents"].append({"role": link["role"], "artifact": self.lineage(link["parent"], depth - 1)})
            except Exception:  # a parent deleted later stays visible as an id
                node["parents"].append({"role": link["role"], "artifact": {"id": link["parent"], "deleted": True}})
        return node

    def forget_path(self, path: Path | str) -> None:
        """Drop the records of a deleted file or folder (lineage rows of others keep the id)."""
        with self._lock:
            self._conn.execute("DELETE FROM artifacts WHERE path = ?", (self._rel(path),))

    @staticmethod
    def _to_dict(row: Any) -> dict[str, Any]:
        item = dict(row)
        try:
            meta = json.loads(item["meta"]) if item.get("meta") else {}
        except (TypeError, ValueError) as exc:  # a damaged row is shown as damaged; the rest is listed
            meta, item["damaged"] = {}, f"meta is not valid JSON: {exc}"
        item["meta"] = meta if isinstance(meta, dict) else {}
        return item
