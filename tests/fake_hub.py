"""A Hugging Face Hub look-alike on 127.0.0.1 for the endpoints huggingface_hub 2.x calls.

Downloads: model info (``GET /api/models/<repo>``), ``HEAD`` / ``GET`` ``/<repo>/resolve/<rev>/<file>``
(ranges, a first failure on demand). Uploads, as ``create_repo`` and ``create_commit`` make them:
``POST /api/repos/create`` (409 when it exists), ``POST /api/validate-yaml``,
``POST /api/models/<repo>/preupload/<rev>`` (every file "regular", so the commit carries it inline) and
``POST /api/models/<repo>/commit/<rev>`` (NDJSON: a header, then base64 files). With ``token`` set,
uploads without ``Authorization: Bearer <token>`` get a 401 as the Hub answers them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlparse

REPO = "acme/tiny-chat"
COMMIT = "a" * 40


class HubState:
    """What the uploads left: repos (``{"private": bool, "files": {path: bytes}, "commits": [...]}``)."""

    def __init__(self) -> None:
        self.repos: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []


def fake_hub(files: dict[str, bytes], fail_first_get: set[str] | None = None, token: str | None = None):
    """Start the server; returns ``(server, log)``; ``server.state`` is the :class:`HubState` of uploads."""
    log: list[tuple[str, str, str | None]] = []
    fail = set(fail_first_get or ())
    state = HubState()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def _json(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _not_found(self, code: str = "RepoNotFound"):
            self._json(404, {"error": "not found"}, {"X-Error-Code": code})

        def _file(self, head: bool):
            path = unquote(urlparse(self.path).path)
            prefix = f"/{REPO}/resolve/"
            if not path.startswith(prefix):
                return self._not_found()
            _rev, _, name = path[len(prefix):].partition("/")
            if name not in files:
                return self._not_found("EntryNotFound")
            data = files[name]
            rng = self.headers.get("Range")
            log.append((self.command, name, rng))
            start = 0
            if rng and rng.startswith("bytes="):
                start = int(rng[6:].split("-")[0])
            if not head and name in fail:
                fail.discard(name)
                self.send_response(500)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206 if start else 200)
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("ETag", '"' + hashlib.sha256(data).hexdigest() + '"')
            self.send_header("Content-Length", str(len(data) - start))
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            if not head:
                self.wfile.write(data[start:])

        def do_HEAD(self):
            self._file(head=True)

        def do_GET(self):
            path = unquote(urlparse(self.path).path)
            if path.startswith("/api/models/"):
                repo = path[len("/api/models/"):].split("/revision/")[0]
                log.append(("GET", "info", None))
                if repo != REPO:
                    return self._not_found()
                return self._json(200, {
                    "id": REPO, "modelId": REPO, "sha": COMMIT, "private": False,
                    "siblings": [{"rfilename": n, "size": len(d), "blobId": hashlib.sha1(d).hexdigest()}
                                 for n, d in files.items()],
                })
            self._file(head=False)

        # -- uploads -------------------------------------------------------------------------
        def do_POST(self):
            path = unquote(urlparse(self.path).path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            state.requests.append(("POST", path))
            if token is not None and self.headers.get("Authorization") != f"Bearer {token}":
                return self._json(401, {"error": "Invalid credentials in Authorization header"})
            if path == "/api/repos/create":
                payload = json.loads(body)
                repo_id = f"{payload.get('organization')}/{payload['name']}"
                url = f"http://{self.headers['Host']}/{repo_id}"
                if repo_id in state.repos:
                    return self._json(409, {"error": "You already created this model repo", "url": url})
                state.repos[repo_id] = {"private": payload.get("visibility") == "private", "files": {}, "commits": []}
                return self._json(200, {"url": url, "name": repo_id, "id": repo_id})
            if path == "/api/validate-yaml":
                return self._json(200, {"errors": [], "warnings": []})
            for action in ("preupload", "commit"):
                marker = f"/{action}/"
                if path.startswith("/api/models/") and marker in path:
                    repo_id = path[len("/api/models/"):path.index(marker)]
                    if repo_id not in state.repos:
                        return self._not_found()
                    if action == "preupload":
                        listed = json.loads(body)["files"]
                        return self._json(200, {"files": [{"path": f["path"], "uploadMode": "regular",
                                                           "shouldIgnore": False} for f in listed]})
                    return self._commit(repo_id, body)
            self._not_found()

        def _commit(self, repo_id: str, body: bytes):
            repo = state.repos[repo_id]
            header: dict[str, Any] = {}
            for line in body.decode().splitlines():
                item = json.loads(line)
                if item["key"] == "header":
                    header = item["value"]
                elif item["key"] == "file":
                    repo["files"][item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                else:
                    return self._json(400, {"error": f"unsupported commit item {item['key']}"})
            oid = hashlib.sha1(body).hexdigest()
            repo["commits"].append({"oid": oid, "summary": header.get("summary")})
            return self._json(200, {"commitUrl": f"http://{self.headers['Host']}/{repo_id}/commit/{oid}",
                                    "commitOid": oid, "pullRequestUrl": None})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.state = state  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, log
