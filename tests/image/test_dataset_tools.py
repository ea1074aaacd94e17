"""Folder datasets, buckets, tag edits, pHash, PNG settings, the tagger and Canny: no diffusion model needed."""

from __future__ import annotations

import random

import numpy as np
import pytest

from lora_factory.kit import LoRAFactoryError
from lora_factory.plugins.image import png_info, tags
from lora_factory.plugins.image.buckets import assign_bucket, crop_box, make_buckets
from lora_factory.plugins.image.dataset import inspect_image_folder, load_items
from tests.image.conftest import BLUE, RED, build_tiny_tagger, make_dataset, write_image


def test_kohya_folders_repeats_and_class_token_captions(tmp_path):
    make_dataset(tmp_path / "ds", n=4)
    write_image(tmp_path / "ds" / "2_sks dog" / "a.jpg", (80, 80), RED, fmt="JPEG")  # no caption: class tokens
    write_image(tmp_path / "ds" / "top.webp", (80, 80), BLUE, fmt="WEBP")
    (tmp_path / "ds" / "top.txt").write_bytes("和風, 猫".encode("cp932"))  # Shift-JIS from an old Windows tool
    (tmp_path / "ds" / ".cache").mkdir()
    write_image(tmp_path / "ds" / ".cache" / "ignored.png", (80, 80), RED)
    items = {i.rel: i for i in load_items(tmp_path / "ds")}
    assert set(items) == {"4_mychar/img00.png", "4_mychar/img01.png", "4_mychar/img02.png", "4_mychar/img03.png",
                          "2_sks dog/a.jpg", "top.webp"}
    assert items["4_mychar/img00.png"].repeats == 4 and items["4_mychar/img00.png"].caption.startswith("mychar, red")
    assert items["2_sks dog/a.jpg"].caption == "sks dog" and items["2_sks dog/a.jpg"].repeats == 2
    assert items["top.webp"].repeats == 1 and items["top.webp"].caption == "和風, 猫"


def test_every_bad_file_is_named(tmp_path):
    make_dataset(tmp_path / "ds", n=2)
    (tmp_path / "ds" / "4_mychar" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    good = write_image(tmp_path / "x.png", (64, 64), RED).read_bytes()
    (tmp_path / "ds" / "4_mychar" / "truncated.png").write_bytes(good[: len(good) // 2])
    write_image(tmp_path / "ds" / "4_mychar" / "tiny.png", (20, 90), RED)  # short side < 32
    (tmp_path / "ds" / "4_mychar" / "bin.png").write_bytes(good)
    (tmp_path / "ds" / "4_mychar" / "bin.txt").write_bytes(b"\x00\x01\x02")
    with pytest.raises(LoRAFactoryError) as err:
        inspect_image_folder(tmp_path / "ds", {})
    assert err.value.code == "DATASET_INVALID" and err.value.http_status == 422
    files = {e["file"]: e["reason"] for e in err.value.detail["errors"]}
    assert set(files) == {"4_mychar/broken.png", "4_mychar/truncated.png", "4_mychar/tiny.png", "4_mychar/bin.txt"}
    assert "corrupt" in files["4_mychar/broken.png"] and "too small" in files["4_mychar/tiny.png"]
    assert str(tmp_path) not in str(err.value.detail)  # no absolute path shown to the user
    assert "broken.png" in err.value.message_en and err.value.message_ja


def test_empty_folder_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(LoRAFactoryError) as err:
        load_items(tmp_path / "empty")
    assert err.value.code == "DATASET_EMPTY"


def test_inspect_stats_preview_and_paging(image_dataset):
    info = inspect_image_folder(image_dataset, {"preview_rows": 2, "offset": 1, "resolution": 64, "bucket_step": 8})
    assert info["format"] == "image_folder" and info["rows"] == 6
    stats = info["stats"]
    assert stats["images_with_repeats"] == 24 and stats["captioned"] == 6
    assert sorted(stats["buckets"]["label"]) == ["48x80", "80x48"] and sum(stats["buckets"]["counts"]) == 24
    assert stats["tag_frequency"]["label"][0] in ("mychar", "circle") and stats["tag_frequency"]["counts"][0] == 6
    assert sum(stats["resolution_histogram"]["counts"]) == 6
    assert [row["id"] for row in info["preview"]] == ["4_mychar/img01.png", "4_mychar/img02.png"]
    row = info["preview"][0]
    assert row["media"] == [{"kind": "image", "file": "4_mychar/img01.png"}] and row["size"] == "96x64"


def test_buckets_follow_kohya():
    buckets = make_buckets(512, 64)
    assert (512, 512) in buckets and (256, 1024) in buckets and (1024, 256) in buckets
    assert all(w % 64 == 0 and h % 64 == 0 and w * h <= 512 * 512 for w, h in buckets)
    assert (576, 384) not in buckets  # kohya's set: width 384 -> height 640, width 576 -> height 448
    assert assign_bucket(1200, 800, buckets) == (640, 384)  # 1.67 is the nearest ratio to 1.5
    (rw, rh), box = crop_box(1200, 800, (640, 384))
    assert (rw, rh) == (640, 427) and box == (0, 21, 640, 405)  # covers the bucket, centre crop
    (rw, rh), box = crop_box(600, 400, (640, 384))
    assert (rw, rh) == (640, 427)  # upscaled to cover


def test_tag_edits_and_training_augmentation():
    caption = "long_hair, smile, Long hair, 1girl, red eyes"
    assert tags.edit_caption(caption, trigger="mychar") == "mychar, long_hair, smile, 1girl, red eyes"
    assert tags.edit_caption(caption, remove=["long hair"], replace={"red eyes": "blue eyes"}) == "smile, 1girl, blue eyes"
    assert tags.edit_caption("a, mychar, b", trigger="mychar", max_tags=2) == "mychar, a"
    rng = random.Random(0)
    seen = {tags.augment_caption("mychar, a, b, c, d", rng, shuffle=True, keep_tokens=1, dropout=0.0) for _ in range(30)}
    assert len(seen) > 3 and all(s.startswith("mychar, ") for s in seen)
    dropped = [tags.augment_caption("mychar, a", rng, shuffle=False, keep_tokens=1, dropout=1.0) for _ in range(3)]
    assert dropped == ["", "", ""]


def test_phash_near_duplicates(tmp_path):
    from PIL import Image

    from lora_factory.plugins.image.phash import distance, near_duplicate_groups, phash_file

    a = write_image(tmp_path / "a.png", (96, 96), RED, mark=0)
    Image.open(a).resize((64, 64)).save(tmp_path / "a_small.jpg", quality=80)  # resized + recompressed copy
    b = write_image(tmp_path / "b.png", (96, 96), BLUE, mark=20)
    Image.open(b).transpose(Image.Transpose.ROTATE_90).save(tmp_path / "c.png")
    hashes = [phash_file(tmp_path / n) for n in ("a.png", "a_small.jpg", "b.png", "c.png")]
    assert distance(hashes[0], hashes[1]) <= 4
    assert distance(hashes[0], hashes[2]) > 10
    assert near_duplicate_groups(hashes, 6) == [[0, 1]]


def test_png_settings_round_trip_and_a1111_text(tmp_path):
    from PIL import Image

    settings = {"prompt": "mychar, smile", "negative_prompt": "lowres, bad hands", "seed": 42, "steps": 20,
                "guidance_scale": 7.0, "width": 64, "height": 96, "scheduler": "euler_a", "mode": "txt2img",
                "base_model_name": "tiny-sd15", "adapters": [{"name": "my_lora", "weight": 0.8}], "version": "0.1.0"}
    path = tmp_path / "out.png"
    png_info.save_png(Image.new("RGB", (64, 96)), path, settings)
    text = png_info.read_png_text(path)["parameters"]
    lines = text.split("\n")
    assert lines[0] == "mychar, smile <lora:my_lora:0.8>" and lines[1] == "Negative prompt: lowres, bad hands"
    assert "Steps: 20, Sampler: Euler a, CFG scale: 7.0, Seed: 42, Size: 64x96, Model: tiny-sd15" in lines[2]
    back = png_info.read_settings(path)
    assert back["source"] == "lora_factory" and back["settings"] == settings
    parsed = png_info.parse_a1111_parameters(text)
    assert parsed["prompt"] == "mychar, smile" and parsed["adapters"] == [{"name": "my_lora", "weight": 0.8}]
    assert (parsed["seed"], parsed["steps"], parsed["width"], parsed["height"], parsed["scheduler"]) == (42, 20, 64, 96, "euler_a")
    # an A1111 PNG (parameters only) restores what it says
    a1111 = ("masterpiece, cat\nNegative prompt: blurry\nSteps: 28, Sampler: DPM++ 2M Karras, Schedule type: Karras, "
             'CFG scale: 5.5, Seed: 7, Size: 512x768, Model hash: abc, Model: "anything, v5", Version: v1.10')
    parsed = png_info.parse_a1111_parameters(a1111)
    assert parsed == {"prompt": "masterpiece, cat", "negative_prompt": "blurry", "steps": 28, "scheduler": "dpmpp_2m_karras",
                      "guidance_scale": 5.5, "seed": 7, "width": 512, "height": 768, "base_model_name": "anything, v5",
                      "model_hash": "abc"}


def test_a1111_restore_keeps_schedule_type_and_leaves_no_comma_gaps(tmp_path):
    from PIL import Image

    from lora_factory.plugins.image import png_info

    text = ("1girl, solo, <lora:mychar:0.7>, masterpiece, <lora:style:1>\nSteps: 20, Sampler: DPM++ 2M, "
            "Schedule type: Karras, CFG scale: 7, Seed: 1, Size: 512x512")
    parsed = png_info.parse_a1111_parameters(text)
    assert parsed["prompt"] == "1girl, solo, masterpiece"
    assert parsed["scheduler"] == "dpmpp_2m_karras" and len(parsed["adapters"]) == 2
    assert png_info.parse_a1111_parameters(text.replace("Karras", "Automatic"))["scheduler"] == "dpmpp_2m"
    # and we write it the way A1111 1.9+ does, which reads back to the same sampler
    path = tmp_path / "k.png"
    png_info.save_png(Image.new("RGB", (8, 8)), path, {"prompt": "x", "steps": 2, "scheduler": "dpmpp_2m_karras", "seed": 1})
    written = png_info.read_png_text(path)["parameters"]
    assert "Sampler: DPM++ 2M, Schedule type: Karras," in written
    assert png_info.parse_a1111_parameters(written)["scheduler"] == "dpmpp_2m_karras"


def test_wd_tagger_layout_through_onnxruntime(tmp_path):
    from PIL import Image

    from lora_factory.plugins.image.tagger import WDTagger

    tagger = WDTagger(build_tiny_tagger(tmp_path / "tagger"))
    assert tagger.size == 32
    red = [t for t, _ in tagger.tag(Image.new("RGB", (50, 30), RED))]
    blue = [t for t, _ in tagger.tag(Image.new("RGB", (30, 50), BLUE), include_rating=True)]
    assert red == ["red", "solo"] and blue[:2] == ["blue", "solo"] and blue[-1] == "general"
    assert [t for t, _ in tagger.tag(Image.new("RGB", (30, 30), RED), general_threshold=0.9)] == ["red"]
    with pytest.raises(LoRAFactoryError) as err:
        WDTagger(tmp_path)
    assert err.value.code == "TAGGER_NOT_FOUND"


def test_canny_finds_the_edges_of_a_square():
    from PIL import Image, ImageDraw

    from lora_factory.plugins.image.control import canny

    im = Image.new("RGB", (64, 64), (0, 0, 0))
    ImageDraw.Draw(im).rectangle((16, 16, 47, 47), fill=(255, 255, 255))
    edges = np.asarray(canny(im))[:, :, 0] > 0
    assert edges.shape == (64, 64)
    assert edges[30, 14:19].any() and edges[14:19, 30].any()  # the left and top sides
    assert not edges[30, 30] and not edges[2, 2]  # nothing inside the square or in the empty corner


def test_canny_is_opencvs_as_the_controlnet_annotator_computes_it():
    """ControlNet's canny models were trained on ``cv2.Canny`` of the RGB picture (its annotator): the
    condition image is exactly that, white on black in three channels, thresholds passed through."""
    import cv2
    from PIL import Image, ImageDraw

    from lora_factory.plugins.image.control import canny

    rng = np.random.default_rng(0)
    im = Image.fromarray(rng.integers(0, 40, (72, 96, 3), dtype=np.uint8))
    draw = ImageDraw.Draw(im)
    draw.ellipse((10, 8, 60, 50), fill=(200, 30, 30))
    draw.line((0, 70, 95, 20), fill=(20, 180, 240), width=3)
    out = np.asarray(canny(im, 80, 160))
    expected = cv2.Canny(np.asarray(im), 80, 160)
    assert out.shape == (72, 96, 3) and set(np.unique(out)) <= {0, 255}
    assert all(np.array_equal(out[:, :, c], expected) for c in range(3))
    assert np.array_equal(np.asarray(canny(im.convert("RGBA"), 80, 160)), out)  # alpha dropped, not an error
    assert np.count_nonzero(np.asarray(canny(im, 1000, 2000))) < np.count_nonzero(out)  # thresholds reach cv2


def test_zip_of_one_kohya_concept_folder_keeps_it(tmp_path):
    """A zipped ``10_mychar/`` folder is the dataset's repeats and class words, not a wrapper to strip
    (a zipped ``mydata/`` wrapper still is)."""
    import io
    import zipfile

    from lora_factory.core.catalog.archives import extract_zip

    png = write_image(tmp_path / "a.png", (64, 64), RED).read_bytes()
    for top, expected in (("10_mychar/", "10_mychar/a.png"), ("mydata/", "a.png")):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr(top + "a.png", png)
            zf.writestr(top + "a.txt", "mychar")
        dest = tmp_path / f"out-{top.strip('/')}"
        dest.mkdir()
        extract_zip(io.BytesIO(buf.getvalue()), dest, "data.zip")
        assert (dest / expected).is_file()
    assert load_items(tmp_path / "out-10_mychar")[0].repeats == 10


def test_an_over_long_caption_is_refused_by_name_and_previews_are_bounded(tmp_path):
    """Issue 16, item 9: a 100 MB caption was accepted and the dataset page answered 105 MB of JSON."""
    from lora_factory.plugins.image.dataset import MAX_CAPTION_BYTES, PREVIEW_TEXT_CHARS

    make_dataset(tmp_path / "ds", n=2)
    write_image(tmp_path / "ds" / "4_mychar" / "huge.png", (64, 64), RED)
    (tmp_path / "ds" / "4_mychar" / "huge.txt").write_bytes(b"tag, " * (MAX_CAPTION_BYTES // 5 + 10))
    with pytest.raises(LoRAFactoryError) as err:
        inspect_image_folder(tmp_path / "ds", {})
    assert err.value.http_status == 422
    files = {e["file"]: e["reason"] for e in err.value.detail["errors"]}
    assert set(files) == {"4_mychar/huge.txt"} and "too long" in files["4_mychar/huge.txt"]
    (tmp_path / "ds" / "4_mychar" / "huge.txt").write_text("long " * (MAX_CAPTION_BYTES // 6), encoding="utf-8")
    info = inspect_image_folder(tmp_path / "ds", {})
    assert max(len(row["text"]) for row in info["preview"]) <= PREVIEW_TEXT_CHARS + 1
