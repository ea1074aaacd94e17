"""FastAPI routers: thin adapters from HTTP to :class:`lora_factory.core.services.Services`."""

from collections.abc import Callable

from fastapi import Request

from lora_factory.core.errors import LoRAFactoryError
from lora_factory.core.services import Services


def services(request: Request) -> Services:
    """The workspace's services, created once by ``create_app``."""
    return request.app.state.services


def client_gone(request: Request) -> Callable[[], bool]:
    """A probe a sync route (running in a worker thread) hands to long waits: true once the HTTP
    client has disconnected, so a request nobody waits for leaves the inference queue."""
    import anyio.from_thread

    def gone() -> bool:
        try:
            return bool(anyio.from_thread.run(request.is_disconnected))
        except Exception:  # noqa: BLE001 - not in a worker thread, or the loop is closing: keep going
            return False

    return gone


def retry_after(exc: LoRAFactoryError) -> dict[str, str]:
    """``Retry-After`` for an error that says when to come back (``detail.retry_after_s``: a busy worker)."""
    seconds = exc.detail.get("retry_after_s") if isinstance(exc.detail, dict) else None
    return {"Retry-After": str(int(seconds))} if isinstance(seconds, (int, float)) else {}


def hide_server_paths(body: object, home: object) -> object:
    """An answer with the server's absolute paths taken out: the workspace's own prefix dropped (a
    workspace-relative name stays), the temporary folder shown as ``<tmp>``. The last guard behind
    every error message, whatever a library put into it. A lone surrogate a client sent (``"\\ud800"``
    is valid JSON) and a message repeats is written as its escape: unencodable, it made the error
    handler itself fail (a 500)."""
    import tempfile

    prefixes = [(str(home).rstrip("/\\") + sep, "") for sep in ("/", "\\")] + [(str(home), ".")]
    tmp = tempfile.gettempdir()
    prefixes += [(tmp.rstrip("/\\") + "/", "<tmp>/"), (tmp.rstrip("/\\") + "\\", "<tmp>\\")]

    def clean(value: object) -> object:
        if isinstance(value, str):
            for prefix, repl in prefixes:
                value = value.replace(prefix, repl)
            return value.encode("utf-8", "backslashreplace").decode("utf-8")
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    return clean(body)
