"""Secret values in a job spec (an endpoint's ``api_key`` ...) are kept out of config.json and the DB.

``runs/<job_id>/config.json`` and the job row are meant to be read, shared and re-run; a key typed into
a form must not end up there. At submit the secrets are cut out (replaced by ``"***"``) and written to
``runs/<job_id>/secrets.json`` (owner-only); the worker puts them back before calling the hook.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from lora_factory.core.storage.workspace import write_text_atomic

SECRET_KEY = re.compile(r"(api_?key|token|password|secret)$", re.IGNORECASE)
REDACTED = "***"
SECRETS_FILE = "secrets.json"


def split_secrets(spec: Any, path: tuple[Any, ...] = ()) -> tuple[Any, list[dict[str, Any]]]:
    """(spec with secret values replaced by ``"***"``, [{"path": [...], "value": ...}])."""
    found: list[dict[str, Any]] = []
    if isinstance(spec, dict):
        out: dict[str, Any] = {}
        for key, value in spec.items():
            if SECRET_KEY.search(str(key)) and isinstance(value, str) and value and value != REDACTED:
                found.append({"path": [*path, key], "value": value})
                out[key] = REDACTED
            else:
                out[key], inner = split_secrets(value, (*path, key))
                found.extend(inner)
        return out, found
    if isinstance(spec, list):
        items = []
        for index, value in enumerate(spec):
            item, inner = split_secrets(value, (*path, index))
            items.append(item)
            found.extend(inner)
        return items, found
    return spec, found


def merge_secrets(spec: Any, secrets: list[dict[str, Any]]) -> Any:
    """Put the values back at their paths (a deep copy of ``spec`` is returned)."""
    restored = json.loads(json.dumps(spec))
    for secret in secrets:
        node = restored
        *parents, last = secret["path"]
        for key in parents:
            node = node[key]
        node[last] = secret["value"]
    return restored


def save_secrets(run_dir: Path, secrets: list[dict[str, Any]]) -> None:
    if not secrets:
        return
    path = run_dir / SECRETS_FILE
    write_text_atomic(path, json.dumps(secrets, ensure_ascii=False), private=True)


def load_secrets(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / SECRETS_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else []
