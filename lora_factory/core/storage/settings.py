"""Workspace settings the user sets once (Hugging Face token and endpoint), in ``<home>/settings.json``.

Why a file and not the job spec: ``runs/<job_id>/config.json`` is meant to be shared and re-run, so a
token must never land there. The worker exports these settings as ``HF_TOKEN`` / ``HF_ENDPOINT``
before calling a hook (an environment variable the user set wins), so plugins read the usual
variables and need not know about this file.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lora_factory.core.errors import LoRAFactoryError
from lora_factory.core.storage.workspace import write_text_atomic

ENV_BY_FIELD = {"hf_token": "HF_TOKEN", "hf_endpoint": "HF_ENDPOINT"}


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # both become environment variables of every worker: a NUL byte there killed each worker at start
    # ("embedded null byte"), so printable ASCII only (what an HTTP header can carry anyway)
    hf_token: str | None = Field(None, pattern=r"^[!-~]{1,1024}$",
                                 description="Hugging Face access token (gated / private models)")
    hf_endpoint: str | None = Field(None, pattern=r"^https?://[!-~]{1,2000}$",
                                    description="a Hub mirror, e.g. https://hf-mirror.com")
    modality_owners: dict[str, str] | None = Field(
        None, description="which plugin serves a modality that several plugins declare, e.g. {\"text\": \"my_plugin\"}")


def settings_path(home: Path) -> Path:
    return Path(home) / "settings.json"


def load_settings(home: Path) -> Settings:
    path = settings_path(home)
    if not path.exists():
        return Settings()
    try:
        return Settings.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, ValidationError) as exc:
        reason = _short_reason(exc)
        raise LoRAFactoryError(
            "SETTINGS_INVALID",
            f"設定ファイル {path} が壊れています({reason})。ファイルを直すか削除してください"
            "(システムタブで保存し直すと、壊れたファイルを退避して新しく作ります)。",
            f"The settings file {path} is damaged ({reason}). Fix or delete it (saving the settings again in "
            "the System tab moves the damaged file aside and writes a new one).",
            http_status=500, detail={"path": str(path), "reason": reason}) from exc


def _short_reason(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        return f"{'.'.join(str(p) for p in first['loc']) or 'root'}: {first['msg']}"
    return f"{type(exc).__name__}: {exc}"[:200]


def update_settings(home: Path, changes: dict[str, Any]) -> Settings:
    """Merge ``changes`` (an empty string clears a field) and save, readable by the owner only.

    A damaged file is moved aside (``settings.json.damaged-<time>``, nothing deleted) and the new
    settings start from the defaults: saving from the UI is how a user repairs it.
    """
    try:
        current = load_settings(home).model_dump()
    except LoRAFactoryError:
        damaged = settings_path(home)
        os.replace(damaged, damaged.with_name(f"{damaged.name}.damaged-{time.strftime('%Y%m%d_%H%M%S')}"))
        current = Settings().model_dump()
    for key, value in changes.items():
        current[key] = value or None
    try:
        settings = Settings.model_validate(current)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise LoRAFactoryError("SETTINGS_INVALID", f"設定「{field}」が不正です: {first['msg']}",
                               f"Setting '{field}' is invalid: {first['msg']}",
                               detail={"field": field, "reason": first["msg"]}) from exc
    path = settings_path(home)
    write_text_atomic(path, json.dumps(settings.model_dump(), ensure_ascii=False, indent=2), private=True)
    return settings


def modality_owners(home: Path) -> dict[str, str]:
    """The ``modality_owners`` setting; a damaged settings file must not stop plugins from loading."""
    try:
        return dict(load_settings(home).modality_owners or {})
    except LoRAFactoryError:
        return {}


def public_view(settings: Settings) -> dict[str, Any]:
    """What the API shows: whether a token is set, never the token itself."""
    token = settings.hf_token
    return {"hf_token_set": bool(token), "hf_token_hint": f"…{token[-4:]}" if token and len(token) > 8 else None,
            "hf_endpoint": settings.hf_endpoint, "modality_owners": settings.modality_owners or {}}


def export_to_environment(home: Path) -> None:
    """Called in job / inference workers: settings become ``HF_TOKEN`` / ``HF_ENDPOINT`` unless already set."""
    settings = load_settings(home)
    for field, env in ENV_BY_FIELD.items():
        value = getattr(settings, field)
        if value and not os.environ.get(env):
            os.environ[env] = value
