"""The host's media widgets in a real browser, on the toy media modality of the host tests: a folder
dataset uploaded as a zip and browsed with thumbnails, a caption edited inline and saved as a new
version, training samples shown live, an image generated into the gallery, speech played while it
streams, and the tabs following what the modality supports (no chat, no merge)."""

from __future__ import annotations

import io
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ui.conftest import PagePool, PageWatch, running_server
from tests.ui.test_ui import CHROMIUM, REPO_ROOT, panel, screenshot

if not CHROMIUM.exists():
    pytest.skip("Debian's chromium is not installed", allow_module_level=True)

pytestmark = pytest.mark.ui
TOY = REPO_ROOT / "tests" / "host" / "plugins" / "toy_media_plugin.py"
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")


@pytest.fixture(scope="module")
def toy_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    home = tmp_path_factory.mktemp("ui_toy")
    (home / "plugins").mkdir()
    shutil.copy(TOY, home / "plugins" / "toy_media_plugin.py")
    with running_server(home) as srv:
        job = srv.client.post("/api/models/tiny", json={"modality": "toymedia", "name": "base"}).json()["job_id"]
        assert srv.wait_job(job)["status"] == "completed"
        yield srv


@pytest.fixture()
def toy_page(page_pool: PagePool, toy_server: Any) -> Iterator[tuple[Any, PageWatch]]:
    page = page_pool.page({"width": 1280, "height": 900})
    watch = PageWatch()
    page.on("console", lambda msg: msg.type == "error" and watch.console_errors.append(msg.text))
    page.on("pageerror", lambda exc: watch.page_errors.append(str(exc)))
    page.goto(toy_server.url + "/")
    page.wait_for_selector("body[data-ready='true']")
    page.get_by_test_id("modality-toymedia").click()
    try:
        yield page, watch
    finally:
        page_pool.release(page)


def zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for stem, caption in (("cat", "a cat"), ("dog", "a dog")):
            zf.writestr(f"pets/{stem}.png", PNG)
            zf.writestr(f"pets/{stem}.txt", caption)
    return buf.getvalue()


def test_folder_dataset_browsed_and_edited_as_a_new_version(toy_page: tuple[Any, PageWatch], toy_server: Any, tmp_path: Path) -> None:
    page, watch = toy_page
    page.get_by_test_id("tab-datasets").click()
    datasets = panel(page, "datasets")
    archive = tmp_path / "pets.zip"
    archive.write_bytes(zip_bytes())
    datasets.get_by_test_id("dataset-upload").set_input_files(str(archive))
    browser_box = datasets.get_by_test_id("dataset-browser")
    browser_box.get_by_test_id("dataset-browser-item").first.wait_for()
    assert browser_box.get_by_test_id("dataset-browser-item").count() == 2
    # the images load after the items appear: wait for them rather than read them at once
    page.wait_for_function("[...document.querySelectorAll('[data-testid=dataset-browser-image]')].every(i => i.complete && i.naturalWidth === 1)")
    text = browser_box.locator("textarea[data-item='cat.png']")
    assert text.input_value() == "a cat"
    text.fill("a black cat, sitting, looking at viewer, " * 4)  # a long caption is shown whole, not cut mid-line
    assert text.evaluate("(el) => el.scrollHeight <= el.clientHeight + 1 && el.clientHeight > 40"), "caption cut"
    text.fill("a black cat")
    browser_box.get_by_test_id("dataset-browser-save").click()
    page.get_by_test_id("edit-version-input").fill("pets-edited")
    page.get_by_test_id("edit-version-ok").click()
    page.wait_for_selector("[data-testid='dataset-edit-job-status'][data-status='completed']", timeout=60_000)
    datasets.get_by_test_id("dataset-row-pets-edited").wait_for()
    edited = toy_server.home / "datasets" / "toymedia" / "pets-edited" / "cat.txt"
    assert edited.read_text(encoding="utf-8") == "a black cat"
    assert (toy_server.home / "datasets" / "toymedia" / "pets" / "cat.txt").read_text(encoding="utf-8") == "a cat"
    assert datasets.get_by_test_id("dataset-archive-pets").get_attribute("href").endswith("/api/datasets/toymedia/pets/archive")
    view, zip_link, delete = (datasets.get_by_test_id(f"dataset-{t}-pets").bounding_box() for t in ("view", "archive", "delete"))
    assert view["x"] + view["width"] + 3 <= zip_link["x"] and zip_link["x"] + zip_link["width"] + 3 <= delete["x"]
    assert abs(zip_link["height"] - view["height"]) <= 4  # a button among buttons, not a wedged link
    screenshot(page, "toy-folder-dataset")
    watch.assert_clean()


def test_generation_gallery_streamed_speech_and_supports(toy_page: tuple[Any, PageWatch], toy_server: Any) -> None:
    page, watch = toy_page
    page.get_by_test_id("tab-infer").click()
    infer = panel(page, "infer")
    assert infer.get_by_test_id("infer-kind-image").is_visible() and infer.get_by_test_id("infer-kind-speech").is_visible()
    assert infer.get_by_test_id("chat-input").count() == 0  # no chat for this modality
    view = infer.get_by_test_id("infer-view-image")
    view.get_by_test_id("gen-image-base").select_option("base")
    view.get_by_test_id("gen-image-stream").uncheck()
    view.get_by_test_id("gen-image-run").click()
    tile = view.get_by_test_id("gen-image-gallery-item").first
    tile.wait_for()
    assert tile.get_attribute("data-kind") == "image"
    page.wait_for_function("document.querySelector('[data-testid=gen-image-gallery-item-image]').complete")

    infer.get_by_test_id("infer-kind-speech").click()
    speech = infer.get_by_test_id("infer-view-speech")
    speech.get_by_test_id("gen-speech-base").select_option("base")
    speech.get_by_test_id("gen-speech-input-text").fill("一文目。二文目。")
    assert speech.get_by_test_id("gen-speech-stream").is_checked()
    speech.get_by_test_id("gen-speech-run").click()
    speech.get_by_test_id("gen-speech-player-audio").wait_for(timeout=30_000)
    assert int(speech.get_by_test_id("gen-speech-player").get_attribute("data-chunks")) == 2
    assert speech.get_by_test_id("gen-speech-player").get_attribute("data-first-chunk-ms") is not None
    screenshot(page, "toy-generate")

    # training samples arrive in the job view while it runs; no merge button for this modality
    if not (toy_server.home / "datasets" / "toymedia" / "pets").is_dir():
        toy_server.client.post("/api/datasets/upload", data={"modality": "toymedia"}, files={"file": ("pets.zip", zip_bytes())})
    job = toy_server.client.post("/train/start", json={"modality": "toymedia", "base_model": "base", "dataset": "pets",
                                                       "output_name": "toy-ui", "preset": "fast"}).json()["job_id"]
    page.get_by_test_id("tab-history").click()
    panel(page, "history").get_by_test_id(f"job-follow-{job}").click()
    samples = panel(page, "train").get_by_test_id("job-samples-item")
    samples.first.wait_for(timeout=60_000)
    assert toy_server.wait_job(job)["status"] == "completed"
    # an ended job opened from the history shows its samples too (they came only through the live stream, so
    # a job that ended before the page followed it showed none), each once
    page.get_by_test_id("tab-history").click()
    panel(page, "history").get_by_test_id(f"job-follow-{job}").click()
    panel(page, "train").get_by_test_id("job-samples-item").first.wait_for(timeout=10_000)
    assert samples.count() == len((toy_server.home / "runs" / job / "samples.jsonl").read_text().splitlines()) == 2
    # two follows of one job at once (a 表示 click that mounts the 学習 tab, whose restore follows the running
    # training too): only the latest writes into the view, so its samples and log lines are there once
    page.evaluate("async (id) => { const { app } = await import('/static/js/app.js');"
                  " app.followTraining(id); app.followTraining(id); }", job)
    samples.first.wait_for(timeout=10_000)
    page.wait_for_load_state("networkidle")  # both follows' requests answered
    log = panel(page, "train").get_by_test_id("job-log").inner_text().splitlines()
    assert samples.count() == 2 and len(log) == len(set(log)) and any("job completed" in line for line in log), log
    page.get_by_test_id("tab-history").click()
    panel(page, "history").get_by_test_id("adapter-eval-toy-ui").wait_for()
    assert panel(page, "history").get_by_test_id("adapter-merge-toy-ui").count() == 0
    # the Hub push (the host's target, offered for every modality) opens the export form with its parameters
    panel(page, "history").get_by_test_id("adapter-hub-toy-ui").click()
    assert page.get_by_test_id("export-target").input_value() == "hub"
    assert page.get_by_test_id("export-name").input_value() == "toy-ui-hub"
    assert page.get_by_test_id("export-hub-private").is_checked()  # private unless the user says otherwise
    page.get_by_test_id("export-hub-repo_id").fill("me/toy-ui")
    page.get_by_test_id("export-start").click()  # no token in this workspace: refused with the words to fix it
    page.get_by_text("hf_token", exact=False).first.wait_for()
    assert not (toy_server.home / "exports" / "toymedia" / "toy-ui-hub").exists()
    page.keyboard.press("Escape")
    expected = "the server responded with a status of 400"  # the refusal above, as the browser logs it
    watch.console_errors = [e for e in watch.console_errors if expected not in e]
    watch.assert_clean()


def test_a_modality_declared_twice_is_named_and_chosen_in_the_system_tab(page_pool: PagePool, tmp_path: Path) -> None:
    home = tmp_path / "ws"
    (home / "plugins").mkdir(parents=True)
    (home / "plugins" / "other_text.py").write_text(
        "from lora_factory import hookimpl\n@hookimpl\ndef describe_modalities():\n"
        "    return [{'id': 'text', 'label_ja': '別テキスト', 'label_en': 'Other text'}]\n", encoding="utf-8")
    with running_server(home) as srv:
        page = page_pool.page({"width": 1280, "height": 900})
        page.set_default_timeout(30_000)  # Playwright's default, which this test was written for
        try:
            page.goto(srv.url + "/#system")
            page.wait_for_selector("body[data-ready='true']")
            conflict = page.get_by_test_id("plugin-conflict-text")
            conflict.wait_for()
            assert "lora_factory.plugins.text" in conflict.inner_text() and "other_text" in conflict.inner_text()
            page.get_by_test_id("plugin-owner-text").select_option("other_text")
            page.get_by_test_id("plugin-owner-apply-text").click()
            page.wait_for_function("() => document.querySelector('[data-testid=plugin-conflict-text]')?.innerText.includes('使用中: other_text')")
            assert srv.client.get("/api/modalities").json()["modalities"][0]["plugin"] == "other_text"
        finally:
            page_pool.release(page)
