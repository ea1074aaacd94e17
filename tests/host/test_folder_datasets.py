"""Folder datasets: zip / several files / local folder in, member-by-member checks, nothing written on
refusal, preview media served from inside the dataset only, archive out, folder refine with lineage."""

from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lora_factory.app import create_app
from tests.conftest import REPO, wait_for

TOY = REPO / "tests" / "host" / "plugins" / "toy_media_plugin.py"
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")


@pytest.fixture
def toy_home(tmp_path: Path) -> Path:
    home = tmp_path / "ws"
    (home / "plugins").mkdir(parents=True)
    shutil.copy(TOY, home / "plugins" / "toy_media_plugin.py")
    return home


def make_zip(members: dict[str, bytes], links: dict[str, str] | None = None, root: str = "",
             compression: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(root + name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(root + name)
            info.create_system = 3
            info.external_attr = 0o120777 << 16
            zf.writestr(info, target)
    return buf.getvalue()


GOOD = {"10_cat/a.png": PNG, "10_cat/a.txt": "a cat", "b.png": PNG, "b.txt": "a dog"}


def upload(c: TestClient, name: str, data: bytes, **form):
    return c.post("/api/datasets/upload", data={"modality": "toymedia", **form}, files={"file": (name, data)})


def datasets_dir_entries(home: Path) -> list[str]:
    return sorted(p.name for p in (home / "datasets" / "toymedia").iterdir())


def test_zip_upload_preview_serves_media_and_archives_back(toy_home):
    with TestClient(create_app(toy_home, start_scheduler=False)) as c:
        info = upload(c, "pets.zip", make_zip(GOOD, root="pets/")).json()
        assert info["name"] == "pets" and info["kind"] == "folder" and info["rows"] == 2
        assert (toy_home / "datasets" / "toymedia" / "pets" / "10_cat" / "a.txt").read_text() == "a cat"
        listed = c.get("/api/datasets?modality=toymedia").json()["datasets"]
        assert [(d["name"], d["kind"], d["rows"]) for d in listed] == [("pets", "folder", 2)]
        preview = c.get("/api/datasets/toymedia/pets?rows=1&offset=1").json()
        assert preview["offset"] == 1 and len(preview["preview"]) == 1
        item = c.get("/api/datasets/toymedia/pets").json()["preview"][0]
        assert item["media"][0]["url"] == "/api/datasets/toymedia/pets/files/10_cat/a.png"
        served = c.get(item["media"][0]["url"])
        assert served.status_code == 200 and served.content == PNG and served.headers["content-type"] == "image/png"
        for bad in ("../../settings.json", "%2e%2e/%2e%2e/settings.json", ".meta/pets.json"):
            assert c.get(f"/api/datasets/toymedia/pets/files/{bad}").status_code in (400, 404)
        back = zipfile.ZipFile(io.BytesIO(c.get("/api/datasets/toymedia/pets/archive").content))
        assert sorted(back.namelist()) == sorted(GOOD)
        # several files, names with their folder (a browser's folder upload)
        files = [("files", (name, data)) for name, data in GOOD.items()]
        r = c.post("/api/datasets/upload", data={"modality": "toymedia", "name": "pets2"}, files=files)
        assert r.status_code == 200 and r.json()["rows"] == 2, r.text
        assert c.request("DELETE", "/api/datasets/toymedia/pets2", json={"confirm": True}).status_code == 200
        assert not (toy_home / "datasets" / "toymedia" / "pets2").exists()


@pytest.mark.parametrize("members,links,code", [
    ({**GOOD, "../evil.txt": b"x"}, None, "ARCHIVE_UNSAFE"),
    ({**GOOD, "/abs.txt": b"x"}, None, "ARCHIVE_UNSAFE"),
    ({**GOOD, "C:/win.txt": b"x"}, None, "ARCHIVE_UNSAFE"),
    (GOOD, {"link.txt": "/etc/passwd"}, "ARCHIVE_UNSAFE"),
    ({**GOOD, "B.PNG": PNG}, None, "ARCHIVE_UNSAFE"),  # b.png and B.PNG collide on Windows
    ({**GOOD, "c.png": b"CORRUPT!", "c.txt": "x"}, None, "DATASET_INVALID"),
])
def test_hostile_or_bad_zip_is_refused_and_nothing_is_written(toy_home, members, links, code):
    with TestClient(create_app(toy_home, start_scheduler=False)) as c:
        before = datasets_dir_entries(toy_home)
        r = upload(c, "bad.zip", make_zip(members, links))
        assert r.status_code in (413, 422) and r.json()["error"]["code"] == code, r.text
        assert r.json()["error"]["message_ja"] and r.json()["error"]["message"]
        if code == "DATASET_INVALID":
            assert r.json()["error"]["detail"]["errors"][0]["file"] == "c.png"
        assert datasets_dir_entries(toy_home) == before  # no dataset, no .tmp-* left behind
    assert not (toy_home.parent / "evil.txt").exists() and not Path("/abs.txt").exists()


def test_zip_over_the_limits_is_refused(toy_home, monkeypatch):
    with TestClient(create_app(toy_home, start_scheduler=False)) as c:
        monkeypatch.setenv("LORA_FACTORY_ZIP_MAX_FILES", "3")
        r = upload(c, "many.zip", make_zip(GOOD))
        assert r.status_code == 413 and r.json()["error"]["code"] == "ARCHIVE_TOO_LARGE"
        monkeypatch.setenv("LORA_FACTORY_ZIP_MAX_FILES", "100")
        bomb = make_zip({**GOOD, "bomb.txt": b"\0" * (20 * 1024 * 1024)}, compression=zipfile.ZIP_DEFLATED)
        r = upload(c, "bomb.zip", bomb)
        assert r.status_code == 422 and "bomb" in r.json()["error"]["message"]
        assert datasets_dir_entries(toy_home) == []


def test_local_folder_import_skips_links_and_a_file_modality_refuses_zip(toy_home, tmp_path):
    source = tmp_path / "My Pets"
    for name, data in GOOD.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(data if isinstance(data, bytes) else data.encode())
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    (source / "leak.txt").symlink_to(secret)
    with TestClient(create_app(toy_home, start_scheduler=False)) as c:
        r = c.post("/api/datasets/import_folder", json={"modality": "toymedia", "source_path": str(source)})
        assert r.status_code == 200, r.text
        assert r.json()["name"] == "My_Pets" and r.json()["skipped_links"] == ["leak.txt"]
        assert not (toy_home / "datasets" / "toymedia" / "My_Pets" / "leak.txt").exists()
        r = c.post("/api/datasets/import_folder", json={"modality": "toymedia", "source_path": "relative/x"})
        assert r.status_code == 404
        r = c.post("/api/datasets/upload", data={"modality": "text"}, files={"file": ("x.zip", make_zip(GOOD))})
        assert r.status_code == 415


def test_folder_refine_publishes_a_folder_with_lineage_and_edits(toy_home, server_factory):
    server = server_factory(toy_home)
    with server.client() as c:
        assert upload(c, "pets.zip", make_zip(GOOD)).status_code == 200
        job = c.post("/api/datasets/refine", json={"modality": "toymedia", "dataset": "pets", "output_name": "pets-up",
                                                   "operations": [{"op": "upper"}]}).json()["job_id"]
        assert wait_for(c, job, ("completed", "failed"))["status"] == "completed"
        assert (toy_home / "datasets" / "toymedia" / "pets-up" / "b.txt").read_text() == "A DOG"
        listed = {d["name"]: d for d in c.get("/api/datasets?modality=toymedia").json()["datasets"]}
        assert listed["pets-up"]["kind"] == "folder" and listed["pets-up"]["format"] == "toy"
        assert listed["pets-up"]["parent"] == "datasets/toymedia/pets"
        edit = {"op": "edit_items", "params": {"edits": [{"id": "b.png", "text": "a good dog"}]}}
        job = c.post("/api/datasets/refine", json={"modality": "toymedia", "dataset": "pets-up", "output_name": "pets-ed",
                                                   "operations": [edit]}).json()["job_id"]
        assert wait_for(c, job, ("completed", "failed"))["status"] == "completed"
        lineage = c.get("/api/datasets/toymedia/pets-ed/lineage").json()
        assert [v["name"] for v in lineage["versions"]] == ["pets", "pets-up", "pets-ed"]
        assert (toy_home / "datasets" / "toymedia" / "pets-ed" / "b.txt").read_text() == "a good dog"
        assert (toy_home / "datasets" / "toymedia" / "pets-up" / "b.txt").read_text() == "A DOG"  # untouched
        r = c.post("/api/datasets/refine", json={"modality": "toymedia", "dataset": "pets", "output_name": "pets-up",
                                                 "operations": [{"op": "upper"}]})
        assert r.status_code == 409
