"""Refine operations on a folder dataset: each writes a new folder version, the source is never touched."""

from __future__ import annotations

import shutil

import pytest

from lora_factory.core.storage.workspace import Workspace
from lora_factory.kit import LoRAFactoryError
from lora_factory.plugins.image.dataset import load_items
from lora_factory.plugins.image.refine import resolve_operations, run_refine
from tests.image.conftest import RED, build_tiny_blip, build_tiny_tagger, make_dataset, write_image


def _snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_hook_refine_dataset_tagger_then_tag_edits(tmp_path, ctx_factory):
    home = tmp_path / "ws"
    source = make_dataset(home / "datasets" / "image" / "chars", n=4, captions=False)
    build_tiny_tagger(home / "models" / "image" / "tagger" / "wd-tiny")
    before = _snapshot(source)
    ops, gpu = resolve_operations([
        {"op": "auto_tag", "params": {"model": "wd-tiny", "exclude_tags": ["solo"]}},
        {"op": "edit_tags", "params": {"trigger": "mychar", "replace": {"red": "red background"}}},
    ], Workspace(home))
    assert gpu is False and ops[0]["params"]["model_path"].endswith("models/image/tagger/wd-tiny")
    ctx = ctx_factory(home, "refine1", kind="refine")
    report = run_refine({"dataset": str(source), "operations": ops, "output_name": "chars-tagged"}, ctx)
    assert report["output"] == {"kind": "folder", "name": "chars-tagged", "format": "image_folder"}
    assert report["rows_in"] == report["rows_out"] == 4 and report["changed"]["auto_tag"] == 4
    out = ctx.output_dir / "chars-tagged"
    captions = {i.rel: i.caption for i in load_items(out)}
    assert captions["4_mychar/img00.png"] == "mychar, red background"  # red image, tagged then edited
    assert captions["4_mychar/img03.png"] == "mychar, blue"
    assert _snapshot(source) == before  # the source version is untouched


def test_captioner_dedupe_size_filter_and_resize(tmp_path, ctx_factory):
    home = tmp_path / "ws"
    source = make_dataset(home / "datasets" / "image" / "photos", n=4)
    shutil.copy(source / "4_mychar" / "img00.png", source / "4_mychar" / "img00_copy.png")  # a duplicate
    write_image(source / "4_mychar" / "small.png", (60, 60), RED, mark=9)
    write_image(source / "4_mychar" / "smaller.png", (36, 36), RED, mark=11)
    build_tiny_blip(home / "models" / "image" / "captioner" / "blip-tiny")
    ops, _ = resolve_operations([
        {"op": "dedupe_images", "params": {"threshold": 2}},
        {"op": "min_resolution", "params": {"min_side": 40}},
        {"op": "auto_caption", "params": {"model": "models/image/captioner/blip-tiny", "mode": "missing_only"}},
        {"op": "resize_buckets", "params": {"resolution": 64, "step": 8}},
    ], Workspace(home))
    ctx = ctx_factory(home, "refine2", kind="refine")
    report = run_refine({"dataset": str(source), "operations": ops, "output_name": "photos-v2"}, ctx)
    assert report["removed"] == {"near_duplicate": 1, "too_small": 1}
    assert report["changed"]["auto_caption"] == 1  # only the uncaptioned small.png
    items = {i.rel: i for i in load_items(ctx.output_dir / "photos-v2")}
    assert len(items) == 5 and "4_mychar/img00_copy.png" not in items
    assert items["4_mychar/small.png"].caption  # BLIP wrote something
    assert (items["4_mychar/img00.png"].width, items["4_mychar/img00.png"].height) == (48, 80)  # bucketed
    assert items["4_mychar/small.png"].width == 60  # smaller than its bucket and upscale off: left alone


def test_edit_items_and_bad_requests(tmp_path, ctx_factory):
    home = tmp_path / "ws"
    source = make_dataset(home / "datasets" / "image" / "chars", n=2)
    ws = Workspace(home)
    ops, _ = resolve_operations([{"op": "edit_items", "params": {"edits": [
        {"id": "4_mychar/img01.png", "text": "mychar,  sitting"}]}}], ws)
    ctx = ctx_factory(home, "refine3", kind="refine")
    report = run_refine({"dataset": str(source), "operations": ops, "output_name": "chars-edit"}, ctx)
    assert report["changed"] == {"edit_items": 1}
    assert (ctx.output_dir / "chars-edit" / "4_mychar" / "img01.txt").read_text(encoding="utf-8").strip() == "mychar, sitting"
    with pytest.raises(LoRAFactoryError) as err:
        resolve_operations([{"op": "auto_tag", "params": {"model": "missing"}}], ws)
    assert err.value.code == "MODEL_NOT_FOUND" and err.value.http_status == 404
    with pytest.raises(LoRAFactoryError) as err:
        resolve_operations([{"op": "edit_tags", "params": {"trigger": 3, "nope": 1}}], ws)
    assert err.value.code == "REFINE_INVALID_PARAMS"
    with pytest.raises(LoRAFactoryError) as err:
        resolve_operations([{"op": "auto_tag", "params": {"model": "../../etc"}}], ws)
    assert err.value.code in ("UNSAFE_PATH", "WRONG_FOLDER", "PATH_OUTSIDE_WORKSPACE")
    ops, _ = resolve_operations([{"op": "edit_items", "params": {"edits": [{"id": "nope.png", "text": "x"}]}}], ws)
    with pytest.raises(LoRAFactoryError) as err:
        run_refine({"dataset": str(source), "operations": ops, "output_name": "x"}, ctx_factory(home, "r4", kind="refine"))
    assert err.value.code == "REFINE_INVALID_PARAMS" and err.value.detail["unknown"] == ["nope.png"]


def test_a_captioning_refine_is_resolved_without_importing_torch(tmp_path):
    """The server resolves a refine with the captioner: that must not import torch (it did, to ask whether
    CUDA is there, putting libtorch into the server). A captioner on ``device: auto`` is a GPU-bound job,
    as a model-loading refine of text and audio is; on ``cpu`` it is not."""
    import json
    import subprocess
    import sys

    (tmp_path / "models" / "image" / "captioner" / "blip-tiny").mkdir(parents=True)
    script = ("import json, sys\nfrom lora_factory.core.storage.workspace import Workspace\n"
              "from lora_factory.plugins.image.refine import resolve_operations\n"
              "gpu = [resolve_operations([{'op': 'auto_caption', 'params': {'model': 'blip-tiny', 'device': d}}],"
              " Workspace(sys.argv[1]))[1] for d in ('auto', 'cpu')]\n"
              "print(json.dumps({'gpu': gpu, 'torch': 'torch' in sys.modules}))\n")
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"gpu": [True, False], "torch": False}, out
