"""The image generation view against what A1111 users bring (headless Chromium, real server): a dropped
A1111 PNG's clip skip, hashes and Karras schedule are restored, its ``<lora:…>`` tags leave no ``, ,``
gaps, and the form has a clip-skip field that goes into the request."""

from __future__ import annotations

import pytest

from tests.ui.test_ui import CHROMIUM, open_app

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is not installed", allow_module_level=True)

pytestmark = pytest.mark.ui

A1111_TEXT = ("1girl, solo, <lora:mychar:0.7>, masterpiece\nNegative prompt: lowres\n"
              "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 5, Size: 512x768, "
              'Model hash: 0123456789, Model: anything, Clip skip: 2, Lora hashes: "mychar: abcdef012345", Version: v1.10.1')


def test_a1111_parameters_restore_clip_skip_hashes_and_karras(watched_page, server):
    page, watch = watched_page
    open_app(page, server)
    modules = server.client.get("/api/ui/modules").json()["modules"]
    static = next(m["static"] for m in modules if m["modality"] == "image")  # the image plugin's front-end
    got = page.evaluate("""async ([text, root]) => {
      const common = await import(root + "common.js");
      const view = await import(root + "generate.js");
      const settings = common.parseA1111(text);
      const panel = document.createElement("div");
      const mounted = view.mountImageView(panel, {modality: "image", info: () => ({})});
      mounted.apply(settings);
      return {settings, clipSkip: panel.querySelector("[data-testid='gen-clip-skip']").value,
              scheduler: panel.querySelector("[data-testid='gen-scheduler']").value};
    }""", [A1111_TEXT, static])
    settings = got["settings"]
    assert settings["prompt"] == "1girl, solo, masterpiece"
    assert settings["scheduler"] == "dpmpp_2m_karras" and got["scheduler"] == "dpmpp_2m_karras"
    assert settings["clip_skip"] == 2 and got["clipSkip"] == "2"
    assert settings["model_hash"] == "0123456789" and settings["lora_hashes"] == {"mychar": "abcdef012345"}
    watch.assert_clean()
