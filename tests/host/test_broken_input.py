"""Broken input is answered clearly, never with a 500 (issue 16, items 10-14)."""

from __future__ import annotations

import os
import sqlite3

import pytest
from fastapi.testclient import TestClient

from lora_factory.app import create_app


@pytest.fixture
def client(dummy_home):
    with TestClient(create_app(dummy_home, start_scheduler=False), raise_server_exceptions=False) as c:
        yield c


# -- item 12: one damaged artifacts row ---------------------------------------------------------------
def test_a_damaged_artifacts_row_is_shown_damaged_and_the_rest_listed(client, dummy_home):
    svc = client.app.state.services
    good = svc.artifacts.register("dataset", "dummy", dummy_home / "datasets" / "dummy" / "data.txt")
    bad = svc.artifacts.register("model", "dummy", dummy_home / "models" / "dummy" / "base")
    with sqlite3.connect(svc.workspace.db_path) as conn:
        conn.execute("UPDATE artifacts SET meta = ? WHERE id = ?", ("{not json", bad))
    r = client.get("/api/artifacts")
    assert r.status_code == 200, r.text
    listed = r.json()
    listed = listed.get("artifacts", listed) if isinstance(listed, dict) else listed
    by_id = {a["id"]: a for a in listed}
    assert good in by_id and by_id[bad]["damaged"]
    for path in ("/api/models?modality=dummy", "/api/models?modality=text", "/v1/models"):
        assert client.get(path).status_code == 200, path


# -- item 11: symlink loops are listed as refused -------------------------------------------------------
@pytest.mark.skipif(os.name == "nt", reason="creating symlinks needs a privilege on Windows")
def test_symlink_loops_are_listed_as_refused(client, dummy_home):
    for folder in ("models/dummy", "datasets/dummy", "lora_adapters/dummy", "models/text", "lora_adapters/text",
                   "exports/dummy", "exports/text"):
        target = dummy_home / folder
        target.mkdir(parents=True, exist_ok=True)
        os.symlink(target / "loop", target / "loop")
    for path in ("/api/models?modality=dummy", "/api/datasets?modality=dummy", "/api/adapters?modality=dummy",
                 "/api/models?modality=text", "/api/adapters?modality=text", "/v1/models", "/api/exports"):
        r = client.get(path)
        assert r.status_code == 200, (path, r.text)
        assert "Symlink loop" not in r.text
    # the loop named directly (the listings added since the first probe, and a reference into it) is a 4xx
    for path in ("/api/models/dummy/loop", "/api/datasets/dummy/loop", "/api/adapters/dummy/loop",
                 "/api/exports/dummy/loop", "/api/datasets/dummy/loop/files/x", "/api/exports/dummy/loop/download"):
        r = client.get(path)
        assert 400 <= r.status_code < 500, (path, r.text)
        assert "Symlink loop" not in r.text


def test_import_folder_of_proc_self_is_refused(client):
    r = client.post("/api/datasets/import_folder", json={"modality": "image", "source_path": "/proc/self"})
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["error"]["code"]


# -- items 10 and 7: malformed zips and zip bombs --------------------------------------------------------
def _zip(members: dict[str, bytes], method: int = 0) -> bytearray:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return bytearray(buf.getvalue())


def _patch_all(data: bytearray, old: bytes, new: bytes, count: int | None = None) -> bytearray:
    return bytearray(bytes(data).replace(old, new, count if count is not None else -1))


def _long_name() -> bytearray:
    return _zip({"d/" + "a" * 300 + ".txt": b"x", "d/ok.txt": b"y"})


def _bad_crc() -> bytearray:
    return _patch_all(_zip({"d/a.txt": b"hello world, hello"}), b"hello world", b"HELLO world", 1)


def _deflate64() -> bytearray:
    import struct

    data = _zip({"d/a.txt": b"hello"})
    data[8:10] = struct.pack("<H", 9)  # local header: compression method
    central = bytes(data).rindex(b"PK\x01\x02")
    data[central + 10:central + 12] = struct.pack("<H", 9)
    return data


def _names_differ() -> bytearray:
    data = _zip({"d/a.txt": b"hello"})
    data[30:37] = b"d/b.txt"  # the local header's name; the central directory keeps d/a.txt
    return data


def _longer_than_declared() -> bytearray:
    import struct

    data = _zip({"d/a.txt": b"0123456789" * 10})
    central = bytes(data).rindex(b"PK\x01\x02")
    data[central + 24:central + 28] = struct.pack("<I", 10)  # uncompressed size: 10, really 100
    data[22:26] = struct.pack("<I", 10)
    return data


@pytest.mark.parametrize("build", [_long_name, _bad_crc, _deflate64, _names_differ, _longer_than_declared])
def test_malformed_zips_are_archive_invalid(tmp_path, build):
    import io

    from lora_factory.core.catalog.archives import extract_zip
    from lora_factory.core.errors import LoRAFactoryError

    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(LoRAFactoryError) as err:
        extract_zip(io.BytesIO(bytes(build())), dest, "upload.zip")
    assert err.value.code == "ARCHIVE_INVALID" and err.value.http_status == 422, err.value
    assert str(tmp_path) not in err.value.message_en and str(tmp_path) not in err.value.message_ja


def test_a_malformed_zip_upload_is_a_422_through_the_api(client):
    r = client.post("/api/datasets/upload", data={"modality": "image"},
                    files={"file": ("bad.zip", bytes(_bad_crc()), "application/zip")})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "ARCHIVE_INVALID"


def test_many_small_members_are_a_zip_bomb_as_a_whole(tmp_path):
    """150 members of 1 MiB each pass the per-member check (≤ 1 MiB) but the archive inflates ~1000×."""
    import io

    from lora_factory.core.catalog.archives import extract_zip
    from lora_factory.core.errors import LoRAFactoryError

    data = _zip({f"d/{i}.txt": b"\0" * 2**20 for i in range(150)}, method=8)
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(LoRAFactoryError) as err:
        extract_zip(io.BytesIO(bytes(data)), dest, "bomb.zip")
    assert err.value.code == "ARCHIVE_UNSAFE"
    assert not any(dest.iterdir())


def test_the_total_expanded_size_is_bounded(tmp_path, monkeypatch):
    """Issue 16, item 7: the sum of the members is checked before anything is written, whatever each
    member's ratio (stored, not compressed: no ratio check can catch this one)."""
    import io
    import os

    from lora_factory.core.catalog.archives import extract_zip
    from lora_factory.core.errors import LoRAFactoryError

    monkeypatch.setenv("LORA_FACTORY_ZIP_MAX_BYTES", "10000")
    data = _zip({f"d/{i}.bin": os.urandom(3000) for i in range(4)}, method=0)
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(LoRAFactoryError) as err:
        extract_zip(io.BytesIO(bytes(data)), dest, "big.zip")
    assert err.value.code == "ARCHIVE_TOO_LARGE" and err.value.http_status == 413
    assert not any(dest.iterdir())
