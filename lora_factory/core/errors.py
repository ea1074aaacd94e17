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
                "detail": self.detail,
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
