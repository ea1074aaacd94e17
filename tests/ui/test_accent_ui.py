"""Browser test of the per-mora accent editor under the reading preview: a phrase's accent changed by
clicking a mora, saved to the user dictionary, and the preview then reads the text with that accent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists() and not os.environ.get("CI"):
    pytest.skip(f"{CHROMIUM} is not installed", allow_module_level=True)
pytest.importorskip("pyopenjtalk")

pytestmark = pytest.mark.ui


def test_accent_set_by_mora_is_saved_and_read(watched_page, server) -> None:  # noqa: ANN001
    page, watch = watched_page
    page.goto(server.url + "/#voice")
    page.get_by_test_id("modality-audio").click()
    page.get_by_test_id("tab-voice").click()
    page.get_by_test_id("voice-synth-text").fill("金沢に行く。")
    page.get_by_test_id("voice-read").click()
    phrase = page.get_by_test_id("accent-phrase").first
    phrase.wait_for()
    surface = phrase.get_by_test_id("accent-surface").inner_text().strip()
    assert surface.startswith("金沢")
    # the pitch falls after the 2nd mora: カ[ナ]ザワ...
    phrase.get_by_test_id("accent-mora").nth(1).click()
    assert phrase.get_by_test_id("accent-type").inner_text() == "2"
    phrase.get_by_test_id("accent-save").click()
    page.wait_for_function("document.querySelector('[data-testid=voice-normalized]') &&"
                           " document.querySelector('[data-testid=voice-normalized]').textContent.includes(']')")
    entries = server.client.get("/api/audio/dictionary").json()["entries"]
    saved = next(e for e in entries if e["surface"] == surface)
    assert saved["accent"] == 2
    normalized = page.get_by_test_id("voice-normalized").inner_text()
    assert normalized.startswith("カ[ナ]ザワ"), normalized
    assert "★" in page.get_by_test_id("accent-surface").first.inner_text()
    server.client.put("/api/audio/dictionary", json={"entries": [e for e in entries if e["surface"] != surface]})
    watch.assert_clean()
