"""The door: no cross-site state change, no foreign Host (DNS rebinding), a token when exposed.

Each test is a reproduction from an outside review (issue 10, items 1-2): before the guard, every
refused request below was accepted and did what it asked.
"""

from __future__ import annotations

import os
import sys

import pytest
from fastapi.testclient import TestClient

from lora_factory.app import create_app
from lora_factory.routes.guard import TOKEN_COOKIE, TOKEN_FILE

TRAIN = {"base_model": "base", "dataset": "data.txt", "output_name": "ad1", "preset": "fast", "modality": "dummy",
         "params": {"steps": 200, "delay": 0.05}}
EVIL = "http://evil.example:8081"


@pytest.fixture
def client(dummy_home):
    with TestClient(create_app(dummy_home, start_scheduler=False), raise_server_exceptions=False) as c:
        yield c


def queued_job(client: TestClient) -> str:
    r = client.post("/train/start", json=TRAIN)
    assert r.status_code == 200, r.text
    return r.json()["job_id"]


def assert_refused(r, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code
    assert err["message_ja"] and err["message"] and err["message_ja"] != err["message"]


def test_cross_origin_text_plain_cancel_is_refused_and_the_job_goes_on(client):
    job_id = queued_job(client)
    r = client.post(f"/train/cancel/{job_id}", content=b"x", headers={"Origin": EVIL, "Content-Type": "text/plain"})
    assert_refused(r, 403, "CROSS_ORIGIN_REFUSED")
    for path in (f"/api/jobs/{job_id}/cancel", f"/api/jobs/{job_id}/rerun", f"/api/jobs/{job_id}/resume"):
        assert_refused(client.post(path, headers={"Origin": EVIL}), 403, "CROSS_ORIGIN_REFUSED")
    # a page that hides its origin (sandboxed iframe: "null") or only sends a Referer is refused too
    assert_refused(client.post(f"/train/cancel/{job_id}", headers={"Origin": "null"}), 403, "CROSS_ORIGIN_REFUSED")
    assert_refused(client.post(f"/train/cancel/{job_id}", headers={"Referer": EVIL + "/page.html"}), 403,
                   "CROSS_ORIGIN_REFUSED")
    job = client.get(f"/api/jobs/{job_id}").json()
    assert job["status"] in ("queued", "running", "completed") and not job["cancel_requested"]
    assert len(client.get("/api/jobs").json()["jobs"]) == 1, "a re-run was queued"


def test_cross_origin_multipart_upload_is_refused_and_nothing_is_written(client, dummy_home):
    before = sorted(p.name for p in (dummy_home / "datasets" / "dummy").iterdir())
    r = client.post("/api/datasets/upload", data={"modality": "dummy"}, files={"file": ("evil.txt", b"x\ny\n")},
                    headers={"Origin": EVIL})
    assert_refused(r, 403, "CROSS_ORIGIN_REFUSED")
    assert sorted(p.name for p in (dummy_home / "datasets" / "dummy").iterdir()) == before


def test_same_origin_and_no_origin_requests_work(client, dummy_home):
    job_id = queued_job(client)  # no Origin at all: curl, the CLI's httpx, the openai client
    r = client.post("/api/datasets/upload", data={"modality": "dummy"}, files={"file": ("ok.txt", b"x\ny\n")},
                    headers={"Origin": "http://testserver"})
    assert r.status_code == 200, r.text
    r = client.post(f"/train/cancel/{job_id}", headers={"Origin": "http://testserver", "Referer": "http://testserver/"})
    assert r.status_code == 200, r.text
    job = client.get(f"/api/jobs/{job_id}").json()
    assert job["status"] == "canceled" or job["cancel_requested"]


def test_json_routes_take_json_only(client):
    import json

    body = json.dumps(TRAIN).encode()
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "text/plain;charset=UTF-8"):
        r = client.post("/train/start", content=body, headers={"Content-Type": content_type})
        assert_refused(r, 415, "UNSUPPORTED_MEDIA_TYPE")
    r = client.post("/train/start", content=body, headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert r.status_code == 422, r.text
    assert client.get("/api/jobs").json()["jobs"] == []
    r = client.post("/train/start", content=body, headers={"Content-Type": "application/json; charset=utf-8"})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("host", ["evil.example:8081", "evil.example", "127.0.0.1.evil.example", "localhost.evil"])
def test_a_foreign_host_header_is_refused(client, host):
    for method, path, kwargs in (("GET", "/api/settings", {}), ("GET", "/utils/paths", {}),
                                 ("POST", "/train/start", {"json": TRAIN})):
        r = client.request(method, path, headers={"Host": host}, **kwargs)
        assert_refused(r, 403, "HOST_NOT_ALLOWED")
    assert client.get("/api/jobs").json()["jobs"] == []


@pytest.mark.parametrize("host", ["127.0.0.1:8081", "localhost:8081", "[::1]:8081", "LOCALHOST"])
def test_loopback_host_names_are_accepted(client, host):
    assert client.get("/utils/paths", headers={"Host": host}).status_code == 200


def test_allowed_hosts_setting_and_the_bound_host(dummy_home, monkeypatch):
    monkeypatch.setenv("LORA_FACTORY_ALLOWED_HOSTS", "testserver, lab-pc.local")
    with TestClient(create_app(dummy_home, start_scheduler=False, bind_host="127.0.0.5")) as c:
        assert c.get("/utils/paths", headers={"Host": "lab-pc.local:8081"}).status_code == 200
        assert c.get("/utils/paths", headers={"Host": "127.0.0.5:8081"}).status_code == 200
        assert c.get("/utils/paths", headers={"Host": "other.local"}).status_code == 403


def test_the_openai_client_works_through_the_guard(client):
    openai = pytest.importorskip("openai")
    api = openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=client)
    ids = [m.id for m in api.models.list().data]
    assert "base" in ids
    answer = api.chat.completions.create(model="base", messages=[{"role": "user", "content": "abc"}])
    assert answer.choices[0].message.content == "cba"


def test_a_token_is_required_when_exposed_beyond_loopback(dummy_home, capsys):
    app = create_app(dummy_home, start_scheduler=False, bind_host="0.0.0.0", port=8081)
    printed = capsys.readouterr().err
    token_file = dummy_home / TOKEN_FILE
    token = token_file.read_text().strip()
    assert f"?token={token}" in printed, "the token is shown once on the console"
    if not sys.platform.startswith("win"):
        assert (os.stat(token_file).st_mode & 0o077) == 0, "the token file is readable by others"
    with TestClient(app, base_url="http://192.168.1.20:8081") as c:
        assert_refused(c.get("/api/jobs"), 401, "TOKEN_REQUIRED")
        assert_refused(c.get("/v1/models", headers={"Authorization": "Bearer wrong"}), 401, "TOKEN_INVALID")
        assert_refused(c.post("/train/start", json=TRAIN), 401, "TOKEN_REQUIRED")
        assert c.get("/api/jobs").status_code == 401
        assert c.get("/").status_code == 200, "the page loads, to say where the token goes"
        assert c.get("/api/jobs", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        # the console's URL stores the token as a cookie and drops it from the address bar
        r = c.get(f"/?token={token}", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/"
        assert TOKEN_COOKIE in r.headers["set-cookie"] and "httponly" in r.headers["set-cookie"].lower()
        assert c.get("/api/jobs").status_code == 200, "the cookie lets the UI (fetch, EventSource) in"
        openai = pytest.importorskip("openai")
        api = openai.OpenAI(base_url="http://192.168.1.20:8081/v1", api_key=token, http_client=c)
        c.cookies.clear()
        assert "base" in [m.id for m in api.models.list().data]
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url="http://192.168.1.20:8081/v1", api_key="nope", http_client=c).models.list()
    # the same token on the next start, not shown again
    create_app(dummy_home, start_scheduler=False, bind_host="0.0.0.0")
    assert token_file.read_text().strip() == token
    assert token not in capsys.readouterr().err


def test_no_token_on_loopback(dummy_home):
    create_app(dummy_home, start_scheduler=False)
    assert not (dummy_home / TOKEN_FILE).exists()


def test_a_non_ascii_token_is_a_401_not_a_500(dummy_home):
    """Issue 16, item 14: ``compare_digest`` refused non-ASCII text and the guard answered 500."""
    app = create_app(dummy_home, start_scheduler=False, bind_host="0.0.0.0", port=8081)
    with TestClient(app, base_url="http://192.168.1.20:8081", raise_server_exceptions=False) as c:
        assert_refused(c.get("/api/jobs", headers={"Authorization": "Bearer é".encode()}), 401, "TOKEN_INVALID")
        r = c.get("/api/jobs", headers={"Cookie": f"{TOKEN_COOKIE}=%C3%A9é".encode()})
        assert r.status_code == 401 and r.json()["error"]["code"] in ("TOKEN_INVALID", "TOKEN_REQUIRED")
        r = c.get("/?token=%C3%A9", follow_redirects=False)
        assert r.status_code == 200 and TOKEN_COOKIE not in r.headers.get("set-cookie", "")
