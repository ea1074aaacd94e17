"""Server-sent events for every streamed route (job events, chat, generate, OpenAI chunks), on sse-starlette.

One implementation instead of hand-formatted ``event: / data:`` strings and hand-written disconnect polling:
``EventSourceResponse`` watches the client and cancels the stream when it goes, and formats each event.
Lines end with ``\\n`` (the library's default is ``\\r\\n``) so what clients already parse stays byte-identical.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

from sse_starlette.event import ServerSentEvent
from sse_starlette.sse import EventSourceResponse

from lora_factory.core.errors import LoRAFactoryError

SEP = "\n"
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def event(name: str | None, data: Any) -> ServerSentEvent:
    """One event; ``data`` is sent as JSON unless it already is a string (``[DONE]``, an OpenAI chunk)."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return ServerSentEvent(data=text, event=name, sep=SEP)


def retry(milliseconds: int) -> ServerSentEvent:
    """How long a browser's EventSource waits before it reconnects."""
    return ServerSentEvent(retry=milliseconds, sep=SEP)


def response(events: Iterator[ServerSentEvent] | AsyncIterator[ServerSentEvent]) -> EventSourceResponse:
    """The stream as ``text/event-stream``; a client that disconnects ends it (the iterator is not pulled again)."""
    return EventSourceResponse(events, headers=HEADERS, sep=SEP)


def primed(events: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Pull the first event before answering, so a load error is still an HTTP error, not a broken stream."""
    first = next(events, None)

    def rest() -> Iterator[dict[str, Any]]:
        if first is not None:
            yield first
        yield from events

    return rest()


def event_stream(events: Iterator[dict[str, Any]]) -> EventSourceResponse:
    """Inference events as SSE named by their ``type``; an error mid-stream becomes an ``error`` event."""
    first = primed(events)

    def stream() -> Iterator[ServerSentEvent]:
        try:
            for item in first:
                yield event(item.get("type", "token"), item)
        except LoRAFactoryError as exc:
            yield event("error", exc.to_dict()["error"])

    return response(stream())
