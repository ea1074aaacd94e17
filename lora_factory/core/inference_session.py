"""State an ``infer`` hook may keep between requests in one process (loaded models, adapters)."""

from __future__ import annotations

from typing import Any


class InferenceSession:
    """``cache`` survives between requests in the inference worker; a plugin owns its own keys."""

    def __init__(self) -> None:
        self.cache: dict[str, Any] = {}


def collect_text(events: Any) -> dict[str, Any]:
    """Drain an ``infer`` event iterator into its final ``done`` event (tokens joined if none)."""
    pieces: list[str] = []
    done: dict[str, Any] | None = None
    for event in events:
        if event.get("type") == "token":
            pieces.append(event.get("text", ""))
        elif event.get("type") == "done":
            done = dict(event)
    if done is None:
        done = {"type": "done", "text": "".join(pieces)}
    done.setdefault("text", "".join(pieces))
    return done
