"""The door of the server: which requests may reach a route at all.

Why at the host, as ASGI middleware, and not per route: a web page the user happens to visit can
send requests to ``127.0.0.1`` (cross-site request forgery), and a hostile domain that re-points its
DNS to ``127.0.0.1`` can even read the answers (DNS rebinding). Both must be stopped for every route,
present and future, including the ones a plugin adds. The rules:

- **Host**: only the names the server is bound to (``127.0.0.1``, ``localhost``, ``[::1]``, the
  ``--host`` value) and the allowed hosts (``--allowed-host``, ``LORA_FACTORY_ALLOWED_HOSTS``).
  Bound to every interface (``0.0.0.0``), any IP-literal Host is accepted too: a rebinding attack
  needs a domain name.
- **Origin**: a state-changing request (any method but GET / HEAD / OPTIONS) whose ``Origin`` (or,
  without one, ``Referer``) is not the server's own origin is refused. Browsers always send
  ``Origin`` with such requests; curl, the CLI and the ``openai`` client send none and pass.
- **Body type**: a state-changing request that declares a body type sends JSON, or multipart for an
  upload: ``text/plain`` and urlencoded bodies (what a page can send cross-site without asking
  first) are refused everywhere; a JSON route refuses multipart itself (FastAPI's strict content type).
- **Token**: when the server is exposed beyond loopback, every call but the static UI needs the
  workspace's token (``Authorization: Bearer``, or the cookie the UI gets from ``/?token=...``).
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import socket
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from starlette.responses import JSONResponse, RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from lora_factory.core.errors import LoRAFactoryError
from lora_factory.core.storage.workspace import write_text_atomic

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
TOKEN_COOKIE = "lora_factory_token"
TOKEN_FILE = "api_token.txt"
ALLOWED_HOSTS_ENV = "LORA_FACTORY_ALLOWED_HOSTS"
# what the browser may load without the token: the page itself shows where to enter it
PUBLIC_PREFIXES = ("/static/", "/docs-assets/")
PUBLIC_PATHS = ("/", "/favicon.ico")


def is_loopback(host: str) -> bool:
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def is_wildcard(host: str) -> bool:
    return host.strip("[]") in ("0.0.0.0", "::", "")


@dataclass
class GuardConfig:
    """What the guard accepts; built once by ``create_app`` from ``--host`` and the settings."""

    bind_host: str = "127.0.0.1"
    allowed_hosts: tuple[str, ...] = ()
    token: str | None = None  # None: no token needed (loopback only)
    _names: set[str] = field(default_factory=set, init=False, repr=False)

    def __post_init__(self) -> None:
        names = {n.lower() for n in LOOPBACK_NAMES}
        extra = [self.bind_host, *self.allowed_hosts]
        if is_wildcard(self.bind_host):
            extra.append(socket.gethostname())
        for name in extra:
            name = name.strip().strip("[]").lower()
            if name and not is_wildcard(name):
                names.add(name)
        self._names = names

    @property
    def exposed(self) -> bool:
        return not is_loopback(self.bind_host)

    def host_allowed(self, hostname: str) -> bool:
        name = hostname.strip("[]").lower().rstrip(".")
        if name in self._names or "*" in self._names:
            return True
        if is_wildcard(self.bind_host):
            try:
                ipaddress.ip_address(name)
                return True
            except ValueError:
                return False
        return False


def allowed_hosts_from_env() -> tuple[str, ...]:
    raw = os.environ.get(ALLOWED_HOSTS_ENV, "")
    return tuple(h.strip() for h in raw.split(",") if h.strip())


def load_or_create_token(home: Path) -> tuple[str, bool]:
    """The workspace's API token (``<home>/api_token.txt``, owner-only); (token, created now)."""
    path = Path(home) / TOKEN_FILE
    if path.is_file():
        token = path.read_text(encoding="utf-8").strip()
        if len(token) >= 16:
            return token, False
    token = secrets.token_urlsafe(24)
    write_text_atomic(path, token + "\n", private=True)
    return token, True


def split_host(value: str) -> tuple[str, str | None]:
    """``"[::1]:8081"`` -> ``("::1", "8081")``; ``"example:80"`` -> ``("example", "80")``."""
    value = value.strip()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return value, None
        rest = value[end + 1 :]
        return value[1:end], rest[1:] if rest.startswith(":") else None
    if value.count(":") == 1:
        name, port = value.split(":", 1)
        return name, port
    return value, None


def _refusal(code: str, message_ja: str, message_en: str, status: int = 403, detail: Any = None) -> JSONResponse:
    return JSONResponse(LoRAFactoryError(code, message_ja, message_en, status, detail).to_dict(), status_code=status)


def same_token(given: str, token: str) -> bool:
    """Constant-time comparison on bytes: ``compare_digest`` refuses non-ASCII ``str`` (a 500 for
    ``Bearer é``), while a wrong token of any characters is simply not the token (401)."""
    return secrets.compare_digest(given.encode("utf-8", "surrogateescape"), token.encode("utf-8"))


class RequestGuard:
    """Pure ASGI middleware (not ``BaseHTTPMiddleware``): event streams pass through untouched."""

    def __init__(self, app: ASGIApp, config: GuardConfig) -> None:
        self.app = app
        self.config = config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
        refusal = self.check(scope, headers)
        if refusal is not None:
            if scope["type"] == "http":
                await refusal(scope, receive, send)
            else:
                await send({"type": "websocket.close", "code": 1008})
            return
        await self.app(scope, receive, send)

    def check(self, scope: Scope, headers: dict[str, str]) -> Any:
        host_header = headers.get("host", "")
        hostname, _port = split_host(host_header)
        if not self.config.host_allowed(hostname):
            return _refusal(
                "HOST_NOT_ALLOWED",
                f"ホスト名「{hostname}」からのアクセスは受け付けません。ブラウザーで http://127.0.0.1:<ポート>/ を開いてください"
                f"(別の名前を使う場合は --allowed-host で許可してください)。",
                f"Requests for host '{hostname}' are refused. Open http://127.0.0.1:<port>/ "
                f"(to use another name, allow it with --allowed-host).",
                detail={"host": hostname})
        method = scope.get("method", "GET").upper()
        if method not in SAFE_METHODS:
            refusal = self._check_origin(headers, host_header) or self._check_body_type(scope, headers)
            if refusal is not None:
                return refusal
        if self.config.token:
            return self._check_token(scope, headers)
        return None

    def _check_origin(self, headers: dict[str, str], host_header: str) -> Any:
        origin = headers.get("origin")
        source = "Origin"
        if origin is None and headers.get("referer"):
            origin, source = headers["referer"], "Referer"
        if origin is None:
            return None  # not a browser page: curl, the CLI, the openai client
        parts = urlsplit(origin)
        if origin != "null" and parts.scheme in ("http", "https") and parts.netloc \
                and _same_authority(parts, host_header):
            return None
        return _refusal(
            "CROSS_ORIGIN_REFUSED",
            "別のサイトのページからの操作は受け付けません(クロスサイトリクエスト)。LoRA Factory の画面から操作してください。",
            "A request from another site's page is refused (cross-site request). Use LoRA Factory's own page.",
            detail={source.lower(): origin})

    def _check_body_type(self, scope: Scope, headers: dict[str, str]) -> Any:
        content_type = headers.get("content-type")
        if not content_type:
            return None  # no declared body (a bare POST): the route's own validation decides
        main = content_type.split(";", 1)[0].strip().lower()
        if main == "application/json" or main.endswith("+json"):
            return None
        if main == "multipart/form-data":
            return None  # uploads; a JSON route refuses it on its own, a cross-site one is stopped above
        return _refusal(
            "UNSUPPORTED_MEDIA_TYPE",
            f"本文の形式「{main}」は受け付けません。Content-Type: application/json で JSON を送ってください。",
            f"A '{main}' body is refused here; send JSON with Content-Type: application/json.",
            status=415, detail={"content_type": main})

    def _check_token(self, scope: Scope, headers: dict[str, str]) -> Any:
        path = scope.get("path", "/")
        given = _bearer(headers.get("authorization", "")) or _cookie(headers.get("cookie", ""), TOKEN_COOKIE)
        token = self.config.token or ""
        if path == "/" and scope["type"] == "http":
            from_query = (parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token") or [""])[0]
            if from_query and same_token(from_query, token):
                response = RedirectResponse("/", status_code=303)
                response.set_cookie(TOKEN_COOKIE, token, max_age=30 * 24 * 3600, httponly=True, samesite="strict")
                return response
        if given and same_token(given, token):
            return None
        if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
            return None
        code = "TOKEN_INVALID" if given else "TOKEN_REQUIRED"
        return _refusal(
            code,
            "このサーバーはネットワークに公開されているため、トークンが必要です。サーバー起動時に表示された URL"
            "(…/?token=…)を開くか、Authorization: Bearer <トークン> を付けてください。"
            f"トークンはワークスペースの {TOKEN_FILE} にあります。",
            "This server is exposed to the network, so a token is required: open the URL printed when the "
            "server started (…/?token=…) or send Authorization: Bearer <token>. "
            f"The token is in the workspace's {TOKEN_FILE}.",
            status=401, detail={"token_file": TOKEN_FILE})


def _same_authority(parts: Any, host_header: str) -> bool:
    default = "443" if parts.scheme == "https" else "80"
    o_host, o_port = split_host(parts.netloc.rsplit("@", 1)[-1])
    h_host, h_port = split_host(host_header)
    return o_host.lower() == h_host.lower() and (o_port or default) == (h_port or default)


def _bearer(value: str) -> str | None:
    scheme, _, token = value.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _cookie(value: str, name: str) -> str | None:
    if not value:
        return None
    jar = SimpleCookie()
    try:
        jar.load(value)
    except Exception:  # noqa: BLE001 - a malformed cookie header is no token
        return None
    return jar[name].value if name in jar else None


def build_config(home: Path, bind_host: str, allowed_hosts: Iterable[str] = (), port: int | None = None) -> GuardConfig:
    """The guard for a server bound to ``bind_host``; exposed beyond loopback, a token is made or read
    and announced once on the console (its URL lets the browser store it as a cookie)."""
    config = GuardConfig(bind_host=bind_host, allowed_hosts=(*allowed_hosts, *allowed_hosts_from_env()))
    if config.exposed:
        config.token, created = load_or_create_token(home)
        if created:
            shown = "127.0.0.1" if is_wildcard(bind_host) else bind_host
            shown = f"[{shown}]" if ":" in shown else shown
            print(f"[lora-factory] APIトークンを作成しました / API token created ({Path(home) / TOKEN_FILE}).\n"
                  f"  ブラウザーではこの URL を一度開いてください / open this URL once in the browser:\n"
                  f"  http://{shown}:{port or '<port>'}/?token={config.token}\n"
                  f"  API: Authorization: Bearer {config.token}", file=sys.stderr)
        else:
            print(f"[lora-factory] トークンが必要です / a token is required: {Path(home) / TOKEN_FILE}", file=sys.stderr)
    return config
