"""Browser test of the image tabs (headless Chromium, real server, tiny SD1.5 pipeline): the dataset
gallery with a refused zip and an inline caption edit saved as a new version, training with live
sample images, generation with LoRA, compare, and a PNG dropped back to restore its settings."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.ui.test_ui import CHROMIUM, open_app, panel, screenshot

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is not installed", allow_module_level=True)

pytestmark = pytest.mark.ui
SLOW = 240_000  # ms: the first generation starts the inference worker (torch, diffusers)


def png_bytes(size: tuple[int, int], color: tuple[int, int, int], seed: int) -> bytes:
    import random

    from PIL import Image, ImageDraw

    im = Image.new("RGB", size, color)
    draw = ImageDraw.Draw(im)
    rng = random.Random(seed)
    for y in range(0, size[1], 8):
        for x in range(0, size[0], 8):
            f = rng.uniform(0.5, 1.0)
            draw.rectangle((x, y, x + 7, y + 7), fill=tuple(int(c * f) for c in color))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def dataset_zip(broken: bool = False) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(4):
            size = (64, 96) if i % 2 == 0 else (96, 64)
            zf.writestr(f"3_mychar/img{i}.png", png_bytes(size, (200, 40, 40), i))
            zf.writestr(f"3_mychar/img{i}.txt", f"mychar, red, pose{i}")
        if broken:
            zf.writestr("3_mychar/broken.png", b"\x89PNG\r\n\x1a\n not an image")
    return buf.getvalue()


@pytest.fixture(scope="module")
def image_base(server: Any) -> str:
    res = server.client.post("/api/models/tiny", json={"modality": "image", "name": "tiny-img"})
    assert res.status_code == 200, res.text
    job = server.wait_job(res.json()["job_id"], timeout=300)
    assert job["status"] == "completed", f"{job}\n{server.log_tail()}"
    return "tiny-img"


def choose_image(page: Any, server: Any, tab: str) -> None:
    open_app(page, server)
    page.get_by_test_id("modality-image").click()
    page.get_by_test_id(f"tab-{tab}").click()
    page.wait_for_selector(f"#panel-{tab}:not([hidden])")


def test_image_tabs_dataset_gallery_training_samples_and_generation(watched_page: tuple[Any, Any], server: Any,
                                                                    image_base: str, tmp_path: Path) -> None:
    page, watch = watched_page
    choose_image(page, server, "datasets")
    datasets = panel(page, "datasets")
    # a zip with one corrupt picture is refused, naming it; then the good one goes in and opens as a gallery
    bad = tmp_path / "bad.zip"
    bad.write_bytes(dataset_zip(broken=True))
    datasets.get_by_test_id("dataset-name").fill("ui-chars")
    datasets.get_by_test_id("dataset-upload").set_input_files(str(bad))
    page.wait_for_selector("[data-testid='dataset-error']:not([hidden])")
    assert datasets.get_by_test_id("dataset-error-line").inner_text().startswith("3_mychar/broken.png")
    watch.console_errors = [e for e in watch.console_errors if "422" not in e]  # the refusal itself
    good = tmp_path / "good.zip"
    good.write_bytes(dataset_zip())
    datasets.get_by_test_id("dataset-upload").set_input_files(str(good))
    page.wait_for_selector("[data-testid='dataset-browser-item'] img")
    assert datasets.get_by_test_id("dataset-browser-item").count() == 4
    page.wait_for_function("[...document.querySelectorAll(\"[data-testid='dataset-browser-image']\")].every(i => i.complete && i.naturalWidth > 0)")
    page.wait_for_selector("[data-testid='img-stats-card']:not([hidden])")
    assert "384x640" in datasets.get_by_test_id("img-stats-buckets").inner_text()  # at 512 px, as SD1.5 trains
    assert datasets.get_by_test_id("img-stats-tags").inner_text().startswith("mychar")
    datasets.get_by_test_id("img-tag-filter").fill("pose1")
    assert datasets.locator("[data-testid='dataset-browser-item']:not([hidden])").count() == 1
    datasets.get_by_test_id("img-tag-filter").fill("")
    screenshot(page, "image-datasets")
    # edit one caption in place, save it as a new version
    datasets.locator("textarea[data-item='3_mychar/img1.png']").fill("mychar, red, sitting")
    datasets.get_by_test_id("dataset-browser-save").click()
    page.get_by_test_id("edit-version-input").fill("ui-chars-edit")
    page.get_by_test_id("edit-version-ok").click()
    page.wait_for_selector("[data-testid='dataset-row-ui-chars-edit']", timeout=SLOW)
    edited = server.home / "datasets" / "image" / "ui-chars-edit" / "3_mychar" / "img1.txt"
    assert edited.read_text(encoding="utf-8").strip() == "mychar, red, sitting"
    assert (server.home / "datasets" / "image" / "ui-chars" / "3_mychar" / "img1.txt").read_text(encoding="utf-8") \
        .strip() == "mychar, red, pose1"  # the original version is untouched

    # -- training with live samples ---------------------------------------------------------------
    page.get_by_test_id("tab-train").click()
    train = panel(page, "train")
    page.wait_for_function("(document.querySelector(\"#panel-train [data-testid='train-dataset']\") || {options: []}).options.length > 1")
    train.get_by_test_id("train-base-model").select_option(label="tiny-img (sd15)")
    train.get_by_test_id("train-dataset").select_option(label=[o for o in train.get_by_test_id("train-dataset").locator("option").all_inner_texts() if o.startswith("ui-chars-edit")][0])
    train.get_by_test_id("train-output-name").fill("ui-mychar")
    train.get_by_test_id("train-preset").select_option("quick")
    train.get_by_test_id("train-advanced").locator("summary").click()
    train.get_by_test_id("train-params").fill(json.dumps({"max_steps": 2, "sample_every_n_steps": 1, "sample_steps": 1,
                                                          "rank": 4, "alpha": 4}))
    train.get_by_test_id("train-start").click()
    page.wait_for_selector("#panel-train [data-testid='job-samples-item'] img", timeout=SLOW)
    page.wait_for_function("document.querySelector(\"#panel-train [data-testid='job-status']\").textContent.includes('完了')",
                           timeout=SLOW)
    page.wait_for_function("document.querySelectorAll(\"#panel-train [data-testid='job-samples-item']\").length >= 4",
                           timeout=30_000)  # 2 prompts at steps 1 and 2, shown as they came
    screenshot(page, "image-train-samples")

    # -- generation with the new LoRA, compare, PNG restore -------------------------------------
    page.get_by_test_id("tab-infer").click()
    gen = panel(page, "infer")
    page.wait_for_function("(document.querySelector(\"#panel-infer [data-testid='gen-adapter']\") || {options: []}).options.length > 1")
    gen.get_by_test_id("gen-base-model").select_option(label="tiny-img (sd15)")
    gen.get_by_test_id("gen-adapter").select_option("ui-mychar")
    gen.get_by_test_id("gen-prompt").fill("mychar, red")
    gen.get_by_test_id("gen-seed").fill("21")
    gen.get_by_test_id("gen-steps").fill("2")
    gen.get_by_test_id("gen-width").fill("64")
    gen.get_by_test_id("gen-height").fill("64")
    gen.get_by_test_id("gen-run").click()
    page.wait_for_selector("#panel-infer [data-testid='gen-results'] [data-testid='gen-image']", timeout=SLOW)
    settings = gen.get_by_test_id("gen-results").get_by_test_id("gen-settings").first.inner_text()
    assert "seed 21" in settings and "<lora:ui-mychar:1>" in settings
    src = gen.get_by_test_id("gen-results").get_by_test_id("gen-image").first.get_attribute("src")
    png = server.client.get(src).content
    gen.get_by_test_id("gen-compare").click()
    page.wait_for_selector("#panel-infer [data-testid='gen-compare-result'] [data-testid='gen-image']", timeout=SLOW)
    assert gen.get_by_test_id("gen-compare-result").get_by_test_id("gen-image").count() == 2
    screenshot(page, "image-generate")
    # a PNG dropped back fills the form with its settings
    gen.get_by_test_id("gen-seed").fill("-1")
    gen.get_by_test_id("gen-prompt").fill("")
    saved = tmp_path / "made.png"
    saved.write_bytes(png)
    gen.get_by_test_id("gen-png-input").set_input_files(str(saved))
    page.wait_for_function("document.querySelector(\"[data-testid='gen-png-drop']\").dataset.restored === 'lora_factory'")
    assert gen.get_by_test_id("gen-seed").input_value() == "21"
    assert gen.get_by_test_id("gen-prompt").input_value() == "mychar, red"
    assert gen.get_by_test_id("gen-history").get_by_test_id("gen-image").count() >= 1
    watch.assert_clean()
