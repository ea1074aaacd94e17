"""State an ``infer`` hook may keep between requests in one process (loaded models, adapters), and
where it writes the media it makes."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class InferenceSession:
    """``cache`` survives between requests in the inference worker; a plugin owns its own keys.

    ``workspace`` is the workspace (``.home``, ``.resolve_ref``). ``outputs_dir`` is where an ``infer``
    hook writes images and audio files: the host sets it before each request (``artifacts/outputs/<modality>/`` in the inference worker, ``runs/<job>/outputs/<target>/``
    in an eval job) and serves what lands there by URL.
    """

    def __init__(self, outputs_dir: Path | None = None, workspace: Any = None) -> None:
        self.cache: dict[str, Any] = {}
        self._outputs_dir = Path(outputs_dir) if outputs_dir else None
        # the workspace the request runs in: where a check finds its own model (models/<m>/<kind>/)
        self.workspace = workspace

    def should_stop(self) -> bool:
        """True once the client of the request being answered has gone: a hook that generates in a
        thread of its own (a ``StoppingCriteria``, a diffusers step callback) stops early. The
        inference worker replaces it for each request."""
        return False

    @property
    def outputs_dir(self) -> Path:
        if self._outputs_dir is None:
            import tempfile

            self._outputs_dir = Path(tempfile.mkdtemp(prefix="lora-factory-outputs-"))
        self._outputs_dir.mkdir(parents=True, exist_ok=True)
        return self._outputs_dir

    @outputs_dir.setter
    def outputs_dir(self, value: Path) -> None:
        self._outputs_dir = Path(value)


def collect_events(events: Any) -> dict[str, Any]:
    """Drain an ``infer`` event iterator: the final ``done`` event (tokens joined when it has no text),
    with the media it produced (``media``: image / audio files; audio chunks are not kept)."""
    pieces: list[str] = []
    media: list[dict[str, Any]] = []
    chunks = 0
    done: dict[str, Any] | None = None
    for event in events:
        kind = event.get("type")
        if kind == "token":
            pieces.append(event.get("text", ""))
        elif kind in ("image", "audio") and event.get("path"):
            media.append(dict(event, kind=kind))
        elif kind == "audio" and event.get("chunk"):
            chunks += 1
        elif kind == "done":
            done = dict(event)
    if done is None:
        done = {"type": "done", "text": "".join(pieces)}
    done.setdefault("text", "".join(pieces))
    done["media"] = media
    if chunks:
        done["audio_chunks"] = chunks
    return done

