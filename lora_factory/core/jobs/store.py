"""Job records in SQLite: what every long operation (download, refine, train, eval, merge, export) leaves.

This module is storage only; starting, watching and killing workers is ``scheduler.py``'s job.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from lora_factory.core.errors import LoRAFactoryError, not_found
from lora_factory.core.storage.db import connect, init_db, now_iso

JOB_KINDS = ("download", "refine", "train", "eval", "merge", "export")
JOB_STATUSES = ("queued", "running", "completed", "failed", "canceled", "interrupted")
TERMINAL_STATUSES = ("completed", "failed", "canceled", "interrupted")
GPU_KINDS = ("train", "eval", "merge")
# where a kind's output lands: kinds sharing a folder must not claim the same name at once
OUTPUT_FOLDER = {"train": "lora_adapters", "download": "models", "merge": "models", "refine": "datasets",
                 "export": "exports"}

STATUS_LABELS_JA = {
    "queued": "待機中",
    "running": "実行中",
    "completed": "完了",
    "failed": "失敗",
    "canceled": "キャンセル済み",
    "interrupted": "中断",
}


def new_job_id() -> str:
    """``YYYYMMDD_HHMMSS_xxxx``: sortable by time, readable in a folder listing."""
    return datetime.now().strftime("%Y%m%d_%H%M%S_") + secrets.token_hex(2)


JSON_COLUMNS = ("spec", "metrics", "result", "error")


def _encode(fields: dict[str, Any]) -> dict[str, Any]:
    """Column values as stored: the JSON columns serialised, the others as given."""
    return {k: json.dumps(v, ensure_ascii=False) if k in JSON_COLUMNS and v is not None else v
            for k, v in fields.items()}


def _loads(value: str | None) -> Any:
    return json.loads(value) if value else None


class JobStore:
    """CRUD on the ``jobs`` table; one connection per store, guarded by a lock (threads share it)."""

    def __init__(self, db_path: Path) -> None:
        init_db(db_path)
        self._conn = connect(db_path)
        self._lock = threading.RLock()

    def close(self) -> None:
        self._conn.close()

    # -- writing -------------------------------------------------------------------------------
    def create(self, kind: str, modality: str, spec: dict[str, Any], output_name: str | None,
               gpu: bool, parent_job: str | None = None, job_id: str | None = None) -> str:
        """Insert a queued job; refuses (``OUTPUT_EXISTS``) when an active job already writes the same
        output. Check and insert are one transaction, so a double click queues one job, not two."""
        job_id = job_id or new_job_id()
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                if output_name and self._output_taken_locked(kind, modality, output_name):
                    raise LoRAFactoryError(
                        "OUTPUT_EXISTS",
                        f"「{output_name}」を出力する別のジョブが既に待機中または実行中です。",
                        f"Another job already queued or running writes '{output_name}'.",
                        http_status=409, detail={"output_name": output_name},
                    )
                self._conn.execute(
                    "INSERT INTO jobs (id, kind, modality, status, created_at, output_name, spec, gpu, parent_job)"
                    " VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?)",
                    (job_id, kind, modality, now_iso(), output_name, json.dumps(spec, ensure_ascii=False),
                     int(gpu), parent_job),
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
        return job_id

    def _rollback(self) -> None:
        """Roll back if a transaction is still open: SQLite ends it by itself on some errors (a full
        disk), and a second ROLLBACK would hide the real error behind "no transaction is active"."""
        if self._conn.in_transaction:
            try:
                self._conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    def update(self, job_id: str, **fields: Any) -> None:
        if not fields:
            return
        encoded = _encode(fields)
        cols = ", ".join(f"{k} = ?" for k in encoded)
        with self._lock:
            self._conn.execute(f"UPDATE jobs SET {cols} WHERE id = ?", (*encoded.values(), job_id))

    def set_pid_if_unset(self, job_id: str, pid: int, create_time: float | None) -> None:
        with self._lock:
            self._conn.execute("UPDATE jobs SET pid = ?, pid_create_time = ? WHERE id = ? AND pid IS NULL",
                               (pid, create_time, job_id))

    def transition(self, job_id: str, from_statuses: tuple[str, ...], **fields: Any) -> bool:
        """Update only if the job is in one of ``from_statuses`` (atomic compare-and-set)."""
        encoded = _encode(fields)
        cols = ", ".join(f"{k} = ?" for k in encoded)
        marks = ", ".join("?" for _ in from_statuses)
        with self._lock:
            cur = self._conn.execute(
                f"UPDATE jobs SET {cols} WHERE id = ? AND status IN ({marks})",
                (*encoded.values(), job_id, *from_statuses),
            )
            return cur.rowcount == 1

    def requeue(self, job_id: str, from_statuses: tuple[str, ...], output_name: str | None, kind: str,
                modality: str, **fields: Any) -> bool:
        """Queue a job again (resume) unless it left ``from_statuses`` or another active job took its
        output name meanwhile; check and update are one transaction. False when refused."""
        encoded = _encode(fields)
        cols = ", ".join(f"{k} = ?" for k in encoded)
        marks = ", ".join("?" for _ in from_statuses)
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                if output_name and self._output_taken_locked(kind, modality, output_name):
                    self._conn.execute("COMMIT")
                    return False
                cur = self._conn.execute(f"UPDATE jobs SET {cols} WHERE id = ? AND status IN ({marks})",
                                         (*encoded.values(), job_id, *from_statuses))
                self._conn.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
        return cur.rowcount == 1

    def claim_next(self, max_gpu_jobs: int, max_other_jobs: int,
                   can_start: Callable[[str, str | None], bool] | None = None) -> dict[str, Any] | None:
        """Atomically move the oldest startable queued job to ``running`` (FIFO per resource class).

        ``can_start(job_id, spec_json)`` may hold a job back (a cluster job while the cluster's free
        resources do not fit it); the jobs behind it are still considered."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                running = self._conn.execute(
                    "SELECT gpu, COUNT(*) AS n FROM jobs WHERE status = 'running' GROUP BY gpu"
                ).fetchall()
                counts = {row["gpu"]: row["n"] for row in running}
                gpu_free = counts.get(1, 0) < max_gpu_jobs
                other_free = counts.get(0, 0) < max_other_jobs
                row = None
                for candidate in self._conn.execute("SELECT * FROM jobs WHERE status = 'queued' ORDER BY seq"):
                    if (candidate["gpu"] and gpu_free) or (not candidate["gpu"] and other_free):
                        if can_start is not None and not can_start(candidate["id"], candidate["spec"]):
                            continue
                        row = candidate
                        break
                if row is None:
                    self._conn.execute("COMMIT")
                    return None
                self._conn.execute(
                    "UPDATE jobs SET status = 'running', started_at = ?, finished_at = NULL,"
                    " attempts = attempts + 1, exit_code = NULL WHERE id = ?",
                    (now_iso(), row["id"]),
                )
                self._conn.execute("COMMIT")
            except sqlite3.Error:
                self._rollback()
                raise
        return self.get(row["id"])

    def insert_rebuilt(self, row: dict[str, Any]) -> None:
        """A job row rebuilt from its run folder (``core/rebuild.py``); an existing id is left alone."""
        encoded = _encode(row)
        cols = ", ".join(encoded)
        marks = ", ".join("?" for _ in encoded)
        with self._lock:
            self._conn.execute(f"INSERT OR IGNORE INTO jobs ({cols}) VALUES ({marks})", tuple(encoded.values()))

    def delete(self, job_id: str) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,))

    # -- reading -------------------------------------------------------------------------------
    def get(self, job_id: str) -> dict[str, Any]:
        with self._lock:
            row = self._conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise not_found("Job", "ジョブ", job_id, code="JOB_NOT_FOUND")
        return self._to_dict(row)

    def find(self, job_id: str) -> dict[str, Any] | None:
        try:
            return self.get(job_id)
        except LoRAFactoryError:
            return None

    def list(self, kind: str | None = None, status: str | None = None, modality: str | None = None,
             limit: int = 200) -> list[dict[str, Any]]:
        where, args = [], []
        for col, value in (("kind", kind), ("status", status), ("modality", modality)):
            if value:
                where.append(f"{col} = ?")
                args.append(value)
        sql = "SELECT * FROM jobs" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY seq DESC LIMIT ?"
        with self._lock:
            rows = self._conn.execute(sql, (*args, int(limit))).fetchall()
        return [self._to_dict(r) for r in rows]

    def by_status(self, *statuses: str) -> list[dict[str, Any]]:
        marks = ", ".join("?" for _ in statuses)
        with self._lock:
            rows = self._conn.execute(f"SELECT * FROM jobs WHERE status IN ({marks}) ORDER BY seq", statuses).fetchall()
        return [self._to_dict(r) for r in rows]

    def active_job_using(self, path: Path) -> str | None:
        """The id of a queued or running job whose spec names ``path`` (or something inside it): what
        the catalog asks before deleting a model, an adapter or a dataset."""
        target = str(Path(path).resolve())

        def names(value: Any) -> bool:
            if isinstance(value, str):
                return value == target or value.startswith(target + os.sep)
            if isinstance(value, dict):
                return any(names(v) for v in value.values())
            if isinstance(value, list):
                return any(names(v) for v in value)
            return False

        for job in self.by_status("queued", "running"):
            if names(job["spec"]):
                return job["id"]
        return None

    def queue_position(self, job: dict[str, Any]) -> int | None:
        if job["status"] != "queued":
            return None
        with self._lock:
            row = self._conn.execute(
                "SELECT COUNT(*) AS n FROM jobs WHERE status = 'queued' AND gpu = ? AND seq < ?",
                (int(job["gpu"]), job["seq"]),
            ).fetchone()
        return int(row["n"]) + 1

    def output_name_taken(self, kind: str, modality: str, output_name: str) -> bool:
        """True when a queued / running job already writes the same destination (same folder, any
        kind that writes there, case-insensitive as on Windows)."""
        with self._lock:
            return self._output_taken_locked(kind, modality, output_name)

    def _output_taken_locked(self, kind: str, modality: str, output_name: str) -> bool:
        kinds = [k for k, dest in OUTPUT_FOLDER.items() if dest == OUTPUT_FOLDER.get(kind)] or [kind]
        marks = ", ".join("?" for _ in kinds)
        row = self._conn.execute(
            f"SELECT 1 FROM jobs WHERE kind IN ({marks}) AND modality = ? AND lower(output_name) = lower(?)"
            " AND status IN ('queued', 'running') LIMIT 1",
            (*kinds, modality, output_name),
        ).fetchone()
        return row is not None

    @staticmethod
    def _to_dict(row: sqlite3.Row) -> dict[str, Any]:
        job = dict(row)
        damaged = []
        for key in JSON_COLUMNS:
            try:
                job[key] = _loads(job[key])
            except (TypeError, ValueError):  # one damaged row must not break the whole list
                job[key] = None
                damaged.append(key)
        if damaged:
            job["damaged"] = damaged
            job["spec"] = job["spec"] if isinstance(job["spec"], dict) else {}
            job["error"] = job["error"] or {
                "code": "JOB_DAMAGED", "message": f"This job's record is damaged ({', '.join(damaged)}).",
                "message_ja": f"このジョブの記録が壊れています({', '.join(damaged)})。", "detail": {"columns": damaged}}
        job["gpu"] = bool(job["gpu"])
        job["resume"] = bool(job["resume"])
        job["status_ja"] = STATUS_LABELS_JA.get(job["status"], job["status"])
        return job
