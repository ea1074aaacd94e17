"""The workspace's SQLite database (WAL), shared by the server, the CLI and the job workers.

Several processes write it at once (the server schedules, each worker reports progress), so every
connection uses WAL, a busy timeout and short transactions.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone
from pathlib import Path


def now_iso() -> str:
    """The one timestamp format every table stores (UTC, seconds)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    kind TEXT NOT NULL,
    modality TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    output_name TEXT,
    spec TEXT NOT NULL,
    gpu INTEGER NOT NULL DEFAULT 1,
    pid INTEGER,
    pid_create_time REAL,
    exit_code INTEGER,
    step INTEGER,
    max_steps INTEGER,
    loss REAL,
    metrics TEXT,
    result TEXT,
    error TEXT,
    cancel_requested_at REAL,
    resume INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    parent_job TEXT,
    device_request TEXT,
    devices TEXT
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status);
CREATE TABLE IF NOT EXISTS artifacts (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    modality TEXT NOT NULL,
    name TEXT NOT NULL,
    path TEXT NOT NULL,
    sha256 TEXT,
    size_bytes INTEGER,
    created_at TEXT NOT NULL,
    job_id TEXT,
    meta TEXT
);
CREATE INDEX IF NOT EXISTS artifacts_path ON artifacts(path);
CREATE TABLE IF NOT EXISTS lineage (
    child TEXT NOT NULL,
    parent TEXT NOT NULL,
    role TEXT NOT NULL,
    PRIMARY KEY (child, parent, role)
);
"""


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode with WAL; callers open explicit transactions when needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


# columns added after the first release: a workspace made before them gets them at the next start
ADDED_COLUMNS = {"jobs": (("device_request", "TEXT"), ("devices", "TEXT"))}


def init_db(path: Path) -> None:
    conn = connect(path)
    try:
        conn.executescript(SCHEMA)
        for table, columns in ADDED_COLUMNS.items():
            have = {row["name"] for row in conn.execute(f"PRAGMA table_info({table})")}
            for name, sql_type in columns:
                if name not in have:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {sql_type}")
    finally:
        conn.close()


def check_database(path: Path) -> str | None:
    """Why the database at ``path`` cannot be trusted, or None (usable, or not created yet).

    Run at start-up: random bytes or a truncated file would otherwise stop the server with a
    traceback, a damaged page would answer 500s later, and a 0-byte file (a real database in WAL
    mode is never shorter than one page) would silently start an empty history.
    """
    if not path.exists():
        return None
    if path.stat().st_size == 0:
        return "the file is empty (0 bytes)"
    try:
        conn = sqlite3.connect(str(path), timeout=30)
        try:
            rows = [str(r[0]) for r in conn.execute("PRAGMA quick_check").fetchall()]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        if is_damage(exc):
            return str(exc)
        raise  # a full disk, a lock, an I/O error: the file is not at fault and is kept as it is
    return None if rows == ["ok"] else "; ".join(rows[:5])


DAMAGE_SIGNS = ("malformed", "not a database", "file is encrypted", "database corrupt")


def is_damage(exc: BaseException) -> bool:
    """True when SQLite says the file itself is damaged (never for a full disk or a busy file)."""
    from lora_factory.core.errors import is_disk_full

    return isinstance(exc, sqlite3.DatabaseError) and not is_disk_full(exc) \
        and any(sign in str(exc).lower() for sign in DAMAGE_SIGNS)


def move_aside(path: Path) -> Path:
    """Rename a damaged database (and its -wal / -shm files) to ``<name>.damaged-YYYYMMDD_HHMMSS``."""
    import os
    from datetime import datetime

    target = path.with_name(f"{path.name}.damaged-{datetime.now().strftime('%Y%m%d_%H%M%S')}")
    os.replace(path, target)
    for suffix in ("-wal", "-shm"):
        side = Path(str(path) + suffix)
        if side.exists():
            os.replace(side, Path(str(target) + suffix))
    return target
