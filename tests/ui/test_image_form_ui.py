"""The image forms' small defects, in a real browser: no literal "null" under refine operations, Japanese
hints under Japanese labels in the training form, checkbox rows with a hint keeping their width at 1366
and 1920 px, and dataset tiles' fields in the UI language."""

from __future__ import annotations

import re

import pytest

from tests.ui.test_ui import CHROMIUM, open_app

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is not installed", allow_module_level=True)

pytestmark = pytest.mark.ui


def _open(page, server, tab: str) -> None:
    open_app(page, server)
    page.get_by_test_id("modality-image").click()
    page.get_by_test_id(f"tab-{tab}").click()
    page.wait_for_selector(f"#panel-{tab}:not([hidden])")


def test_image_refine_and_training_forms_read_right(watched_page, server):
    page, watch = watched_page
    for audio_or_image in ("image", "audio"):
        open_app(page, server)
        page.get_by_test_id(f"modality-{audio_or_image}").click()
        page.get_by_test_id("tab-refine").click()
        ops = page.locator("#panel-refine [data-testid='refine-ops']")
        ops.locator(".op").first.wait_for()
        assert "null" not in ops.inner_text(), audio_or_image
    _open(page, server, "train")
    hints = page.locator("#panel-train [data-testid='train-form'] .hint").all_text_contents()
    described = [t for t in hints if t.strip()]
    assert described, "the image training form shows its hints"
    english = [t for t in described if not re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", t)]
    assert not english, f"English hints under Japanese labels: {english}"
    for width in (1366, 1920):
        page.set_viewport_size({"width": width, "height": 900})
        page.locator("#panel-train [data-testid='train-advanced'] summary").first.click() \
            if not page.locator("#panel-train [data-testid='train-advanced']").first.get_attribute("open") else None
        widths = page.evaluate("""() => [...document.querySelectorAll("#panel-train .field.check")]
            .filter((row) => row.querySelector(".hint") && row.offsetParent)
            .map((row) => row.querySelector(".hint").getBoundingClientRect().width)""")
        assert widths and min(widths) > 120, (width, widths)  # a hint of 4-5 characters was ~50 px wide
    labels = page.evaluate("""async () => {
      const fb = await import("/static/js/widgets/folder_browser.js");
      return [fb.metaLine([["size", "64x96"]], 0), fb.metaLine([["repeats", 4]], 0)];
    }""")
    assert labels == ["サイズ: 64x96", "繰り返し: 4"]
    watch.assert_clean()


def test_image_adapter_page_downloads_the_kohya_file_and_shows_sample_thumbnails(watched_page, server):
    """An adapter folder as image training writes it (kohya file, samples/, training_config.json)."""
    import io
    import json

    from PIL import Image

    page, watch = watched_page
    folder = server.home / "lora_adapters" / "image" / "ui-thumbs"
    (folder / "samples").mkdir(parents=True, exist_ok=True)
    (folder / "ui-thumbs.safetensors").write_bytes(b"kohya-bytes")
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 40, 40)).save(buf, format="PNG")
    (folder / "samples" / "step000002-0.png").write_bytes(buf.getvalue())
    (folder / "training_config.json").write_text(json.dumps({
        "modality": "image", "architecture": "sd15", "kohya_file": "ui-thumbs.safetensors",
        "result": {"samples": ["step000002-0.png"], "final_loss": 0.1}}), encoding="utf-8")
    _open(page, server, "history")
    page.get_by_test_id("adapter-view-ui-thumbs").click()
    detail = page.get_by_test_id("adapter-detail")
    link = detail.get_by_test_id("adapter-weights-download")
    assert link.inner_text().endswith("ui-thumbs.safetensors")
    assert server.client.get(link.get_attribute("href")).content == b"kohya-bytes"
    thumb = detail.get_by_test_id("adapter-sample").first
    thumb.wait_for()
    page.wait_for_function("document.querySelector(\"[data-testid='adapter-sample']\").naturalWidth === 32")
    labels = page.evaluate("""async () => Object.keys((await import("/static/js/tabs/history.js"))
        .labelled({final_loss: 0.1, steps_per_s: 2}))""")
    assert labels == ["最終損失", "ステップ/秒"]
    watch.assert_clean()


def test_sample_prompts_are_lines_and_the_generation_view_has_an_epoch_grid(watched_page, server):
    """Issue 17 items 6 / 16: the image schema's ``sample_prompts`` is edited one prompt a line (kohya's prompt
    file), not as a raw JSON box; the generation view's grid takes epochs too."""
    page, watch = watched_page
    _open(page, server, "train")
    schema = server.client.get("/api/modalities").json()
    image = next(m for m in (schema.get("modalities") or schema) if m["id"] == "image")
    prop = image["train_params_schema"]["properties"]["sample_prompts"]
    read = page.evaluate("""async (prop) => {
      const { schemaForm } = await import("/static/js/schema_form.js");
      const form = schemaForm({ type: "object", properties: { sample_prompts: prop } },
                              { idPrefix: "t", values: { sample_prompts: ["a cat --w 512"] } });
      document.body.append(form.root);
      const box = form.root.querySelector("[data-testid='t-sample_prompts']");
      const shown = box.value;
      box.value = "1girl --n lowres --d 7\\n\\n  mychar, smile  \\n";
      box.dispatchEvent(new Event("input", { bubbles: true }));
      const out = { tag: box.tagName, shown, values: form.values().sample_prompts };
      form.root.remove();
      return out;
    }""", prop)
    assert read == {"tag": "TEXTAREA", "shown": "a cat --w 512", "values": ["1girl --n lowres --d 7", "mychar, smile"]}
    _open(page, server, "infer")
    assert page.get_by_test_id("gen-epoch-grid").count() == 1
    watch.assert_clean()
