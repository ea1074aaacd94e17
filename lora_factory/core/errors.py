"""One error type for the whole product.

Why one type: the API, the CLI and the UI must show the same words for the same problem, so every
failure a user can cause carries a stable ``code``, an English ``message``, a Japanese ``message_ja``
and the ``detail`` needed to fix it (file, line, field). Routes render it as
``{"error": {"code", "message", "message_ja", "detail"}}``; the CLI prints both messages.
"""

from __future__ import annotations

from typing import Any


class LoRAFactoryError(Exception):
    """A failure with a stable code and a bilingual message.

    :param code: stable, upper-snake identifier (``DATASET_INVALID_LINE``); never reworded.
    :param message_ja: what happened and what to do, in Japanese.
    :param message_en: the same in English.
    :param http_status: the status the API answers with (4xx for the user's input, 5xx otherwise).
    :param detail: machine-readable context (file, line, field, ...), JSON-serialisable.
    """

    def __init__(
        self,
        code: str,
        message_ja: str,
        message_en: str,
        http_status: int = 400,
        detail: Any = None,
    ) -> None:
        super().__init__(f"[{code}] {message_en}")
        self.code = code
        self.message_ja = message_ja
        self.message_en = message_en
        self.http_status = http_status
        self.detail = detail

    def to_dict(self) -> dict[str, Any]:
        """The body of an error response, as the API, the CLI (``--json``) and the UI read it."""
        return {
            "error": {
                "code": self.code,
                "message": self.message_en,
                "message_ja": self.message_ja,
                "detail": json_safe(self.detail),
            }
        }

    @classmethod
    def from_dict(cls, body: dict[str, Any], http_status: int = 400) -> LoRAFactoryError:
        """Rebuild an error that crossed a process boundary (worker -> host, server -> CLI)."""
        err = body.get("error", body)
        return cls(
            err.get("code", "INTERNAL_ERROR"),
            err.get("message_ja", err.get("message", "")),
            err.get("message", ""),
            http_status=http_status,
            detail=err.get("detail"),
        )


def json_safe(value: Any, depth: int = 0) -> Any:
    """``value`` as strict JSON can carry it: NaN / Infinity as text, long strings cut, deep or odd
    objects as their ``repr`` (an error's detail echoes what the client sent, and must never make
    the error itself fail to render)."""
    import math

    if value is None or isinstance(value, (bool, int)):
        return value if not isinstance(value, int) or abs(value) < 2**63 else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return value if len(value) <= 300 else value[:300] + f"... ({len(value)} characters)"
    if depth > 6:
        return repr(value)[:300]
    if isinstance(value, dict):
        return {str(k)[:300]: json_safe(v, depth + 1) for k, v in list(value.items())[:100]}
    if isinstance(value, (list, tuple)):
        return [json_safe(v, depth + 1) for v in list(value)[:100]]
    return repr(value)[:300]


def not_found(what_en: str, what_ja: str, name: str, code: str = "NOT_FOUND") -> LoRAFactoryError:
    """A 404 for a named thing the user asked for (job, dataset, model, adapter ...)."""
    return LoRAFactoryError(
        code,
        f"{what_ja}「{name}」が見つかりません。",
        f"{what_en} '{name}' was not found.",
        http_status=404,
        detail={"name": name},
    )


def confirmation_required(name: str) -> LoRAFactoryError:
    """Deleting needs an explicit ``confirm: true``: nothing is removed by a stray request."""
    return LoRAFactoryError(
        "CONFIRMATION_REQUIRED",
        f"「{name}」を削除するには confirm: true を指定してください。",
        f"Deleting '{name}' needs an explicit confirm: true.",
        http_status=400,
        detail={"name": name},
    )


DISK_FULL_SIGNS = ("No space left on device", "StorageFull", "os error 28", "[Errno 28]", "Disk quota exceeded")
DISK_FULL_ERRNOS = (28, 122)  # ENOSPC, EDQUOT (Linux); Windows reports ENOSPC for a full disk too


def is_disk_full(exc: BaseException | None) -> bool:
    """True when ``exc`` (or what caused it) is a full disk: ``OSError`` ENOSPC / EDQUOT, SQLite's
    "database or disk is full", or Windows' ERROR_DISK_FULL / ERROR_HANDLE_DISK_FULL."""
    import sqlite3

    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError) and (exc.errno in DISK_FULL_ERRNOS or getattr(exc, "winerror", None) in (39, 112)):
            return True
        if isinstance(exc, sqlite3.Error) and ("disk is full" in str(exc) or getattr(exc, "sqlite_errorcode", None) == 13):
            return True
        if not isinstance(exc, OSError) and any(sign in str(exc) for sign in DISK_FULL_SIGNS):
            return True  # a library's own error type around ENOSPC (safetensors' SafetensorError, torch's)
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def disk_full(exc: BaseException | None = None, path: object = None) -> LoRAFactoryError:
    """``DISK_FULL`` (507): the one wording for a full disk, wherever it is met (API, CLI, job error)."""
    where = f" ({path})" if path else ""
    return LoRAFactoryError(
        "DISK_FULL",
        f"ディスクの空き容量がありません{where}。不要なモデル・チェックポイント・runs/ のフォルダを削除して空きを作り、もう一度実行してください。"
        "途中まで書いたファイルは残していません。",
        f"The disk is full{where}. Free some space (old models, checkpoints, runs/ folders) and try again. "
        "Nothing half-written was kept.",
        http_status=507,
        detail={"path": str(path) if path else None, "reason": str(exc) if exc else None},
    )


def as_user_error(exc: BaseException) -> LoRAFactoryError | None:
    """The product error for a low-level failure the user can act on (a full disk), or None."""
    if isinstance(exc, LoRAFactoryError):
        return exc
    if is_disk_full(exc):
        return disk_full(exc, getattr(exc, "filename", None))
    import sqlite3

    if isinstance(exc, sqlite3.DatabaseError) and ("malformed" in str(exc) or "not a database" in str(exc)):
        return LoRAFactoryError(
            "DATABASE_DAMAGED",
            "ジョブのデータベース (artifacts/lora_factory.sqlite3) が壊れています。サーバーを再起動すると、壊れたファイルを"
            "退避して新しいデータベースを作り、runs/ とアダプターから履歴を復元します。",
            "The job database (artifacts/lora_factory.sqlite3) is damaged. Restart the server: it moves the damaged "
            "file aside, starts a fresh one and rebuilds the history from runs/ and the adapters.",
            http_status=500, detail={"reason": str(exc)})
    return None


def hub_error(exc: BaseException, endpoint: str, repo_id: str, revision: str) -> LoRAFactoryError:
    """Map huggingface_hub / httpx failures to our stable codes (downloads, and pushes to the Hub)."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    detail = {"endpoint": endpoint, "repo_id": repo_id, "revision": revision, "reason": f"{type(exc).__name__}: {exc}"[:500]}
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, GatedRepoError) or (status in (401, 403) and not isinstance(exc, RepositoryNotFoundError)):
        return LoRAFactoryError(
            "HUB_AUTH_REQUIRED",
            f"「{repo_id}」のダウンロードには認証が必要です。Hugging Face でアクセス許可を得て、トークン (HF_TOKEN) を設定してください。",
            f"'{repo_id}' needs authentication: accept its terms on Hugging Face and set a token (HF_TOKEN).",
            401, detail=detail)
    if isinstance(exc, (RepositoryNotFoundError, RevisionNotFoundError, RemoteEntryNotFoundError)) or status == 404:
        return LoRAFactoryError(
            "MODEL_NOT_FOUND",
            f"モデル「{repo_id}」(リビジョン {revision}) が見つかりません。名前を確認してください(非公開ならトークンが必要です)。",
            f"Model '{repo_id}' (revision {revision}) was not found; check the name (private repos need a token).",
            404, detail=detail)
    if isinstance(exc, HfHubHTTPError) and status is not None:
        return LoRAFactoryError("HUB_ERROR", f"Hub がエラーを返しました (HTTP {status})。しばらくして再実行してください。",
                                f"The Hub answered HTTP {status}; try again later.", 502, detail=detail)
    if isinstance(exc, (LocalEntryNotFoundError, OfflineModeIsEnabled, ConnectionError, TimeoutError)) or \
            type(exc).__module__.split(".")[0] in ("httpx", "httpx2", "httpcore", "requests", "urllib3"):
        return LoRAFactoryError(
            "HUB_UNREACHABLE",
            f"Hugging Face Hub ({endpoint}) に接続できません。ネットワーク接続を確認してください。"
            "再実行すると途中から再開します。",
            f"Cannot reach the Hugging Face Hub ({endpoint}); check the network. Running again resumes the download.",
            503, detail=detail)
    return LoRAFactoryError("HUB_ERROR", f"ダウンロードに失敗しました: {exc}", f"The download failed: {exc}", 502,
                            detail=detail)
