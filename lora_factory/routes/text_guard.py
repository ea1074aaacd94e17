"""JSON bodies hold text: a lone surrogate is refused before any route sees it.

``"\\ud800"`` is valid JSON but no character: Python keeps it in a ``str`` that cannot be written as
UTF-8, so it failed wherever the value went next (a file name, the database, the answer that repeats
it), each time as a 500 (issue 16, second probe). One check at the edge answers 422 ``INVALID_TEXT``
naming the field, for every route, present and future.

A pure ASGI middleware (as the request guard): the body is read only for JSON requests, and parsed
only when its raw bytes hold a ``\\uD800``-``\\uDFFF`` escape, so ordinary requests pay a regex.
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lora_factory.core.errors import LoRAFactoryError

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_SURROGATE = re.compile("[\ud800-\udfff]")


def lone_surrogate_field(value: Any, path: str = "") -> str | None:
    """The dotted path of the first string (or key) holding a lone surrogate, or None."""
    if isinstance(value, str):
        return (path or "body") if _SURROGATE.search(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{path}.{key}" if path else str(key)
            if _SURROGATE.search(str(key)):
                return here.encode("utf-8", "backslashreplace").decode("utf-8")
            found = lone_surrogate_field(item, here)
            if found:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = lone_surrogate_field(item, f"{path}.{index}" if path else str(index))
            if found:
                return found
    return None


def invalid_text(field: str) -> LoRAFactoryError:
    return LoRAFactoryError(
        "INVALID_TEXT",
        f"「{field}」に文字として読めない符号 (対になっていないサロゲート \\ud800 など) が含まれています。",
        f"'{field}' holds a code that is no character (a lone surrogate such as \\ud800).",
        http_status=422, detail={"field": field})


class LoneSurrogateGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        body = b""
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        field = None
        if _SURROGATE_ESCAPE.search(body):
            try:
                field = lone_surrogate_field(json.loads(body))
            except (ValueError, RecursionError):
                field = None  # not JSON: the route answers INVALID_JSON
        if field is not None:
            error = invalid_text(field)
            await JSONResponse(error.to_dict(), status_code=error.http_status)(scope, receive, send)
            return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


def _is_json(scope: Scope) -> bool:
    for key, value in scope.get("headers") or []:
        if key.lower() == b"content-type":
            main = value.decode("latin-1").split(";", 1)[0].strip().lower()
            return main == "application/json" or main.endswith("+json")
    return False
