"""The CLI for folder datasets and media: a folder in, a zip out, a single-file checkpoint, and
``generate`` writing its image where the user asked (same codes and messages as the API)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile

from tests.conftest import REPO
from tests.host.test_folder_datasets import GOOD, PNG

TOY = REPO / "tests" / "host" / "plugins" / "toy_media_plugin.py"


def cli(home, *args):
    return subprocess.run([sys.executable, "-m", "lora_factory.cli", *args, "--home", str(home)],
                          capture_output=True, text=True, timeout=120)


def test_folder_dataset_and_generate_from_the_cli(tmp_path):
    home = tmp_path / "ws"
    (home / "plugins").mkdir(parents=True)
    shutil.copy(TOY, home / "plugins" / "toy_media_plugin.py")
    source = tmp_path / "pets"
    for name, data in GOOD.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(data if isinstance(data, bytes) else data.encode())
    out = cli(home, "datasets", "upload", str(source), "--modality", "toymedia")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["kind"] == "folder" and json.loads(out.stdout)["rows"] == 2
    out = cli(home, "datasets", "export", "pets", "--modality", "toymedia", "--out", str(tmp_path / "exports"))
    assert out.returncode == 0, out.stderr
    assert sorted(zipfile.ZipFile(json.loads(out.stdout)["path"]).namelist()) == sorted(GOOD)
    (source / "c.png").write_bytes(b"CORRUPT!")
    out = cli(home, "datasets", "upload", str(source), "--modality", "toymedia", "--name", "bad")
    assert out.returncode == 2 and "DATASET_INVALID" in out.stderr and "c.png" in out.stderr
    assert not (home / "datasets" / "toymedia" / "bad").exists()

    assert cli(home, "tiny-model", "toymedia", "--out", "models/toymedia/base").returncode == 0
    ref = tmp_path / "ref.png"
    ref.write_bytes(PNG)
    out = cli(home, "generate", "a cat", "--modality", "toymedia", "--base-model", "base", "--task", "image",
              "--file", f"image={ref}", "--params", '{"seed": 3}', "--out", str(tmp_path / "images"))
    assert out.returncode == 0, out.stderr
    image = json.loads(out.stdout)["media"][0]
    assert image["meta"]["seed"] == 3 and image["meta"]["input_bytes"] == len(PNG) and image["meta"]["prompt"] == "a cat"
    assert (tmp_path / "images" / image["name"]).read_bytes() == PNG
    out = cli(home, "generate", "--modality", "toymedia", "--base-model", "base", "--params", "[1]")
    assert out.returncode == 2 and "INVALID_JSON" in out.stderr
