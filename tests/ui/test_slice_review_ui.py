"""Browser test of the slice review (voice studio): the proposed cuts drawn over the waveform, a cut's
edge dragged with the mouse, a cut split at the cursor and two merged, then saved as a new dataset
version cut exactly as shown, in headless Chromium against the session's server."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
import soundfile as sf

from tests.audio.synthetic import recording_with_pauses

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists() and not os.environ.get("CI"):
    pytest.skip(f"{CHROMIUM} is not installed", allow_module_level=True)

pytestmark = pytest.mark.ui


def _items(page) -> list[tuple[float, float]]:  # noqa: ANN001
    return [(float(a), float(b)) for a, b in page.eval_on_selector_all(
        "[data-testid=slice-item]", "els => els.map(e => [e.dataset.start, e.dataset.end])")]


def test_slice_review_drag_split_merge_and_save(watched_page, server) -> None:  # noqa: ANN001
    buffer = io.BytesIO()
    sf.write(buffer, recording_with_pauses(16000)[0], 16000, format="WAV")
    res = server.client.post("/api/datasets/upload", data={"modality": "audio", "name": "review-recs"},
                             files={"files": ("take1.wav", buffer.getvalue())})
    assert res.status_code == 200, res.text
    page, watch = watched_page
    page.goto(server.url + "/#voice")
    page.get_by_test_id("modality-audio").click()
    page.get_by_test_id("tab-voice").click()
    page.get_by_test_id("slice-dataset").select_option("review-recs")
    page.wait_for_function("document.querySelectorAll('[data-testid=slice-item]').length === 4", timeout=60_000)
    cuts = _items(page)
    assert page.get_by_test_id("slice-recording").input_value() == "take1.wav"

    # drag the first cut's start edge 1 s to the right (canvas x is proportional to time)
    canvas = page.get_by_test_id("slice-canvas")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    duration = 18.6
    x_of = lambda t: box["x"] + t / duration * box["width"]  # noqa: E731
    y = box["y"] + box["height"] / 2
    page.mouse.move(x_of(cuts[0][0]), y)
    page.mouse.down()
    page.mouse.move(x_of(cuts[0][0] + 1.0), y, steps=5)
    page.mouse.up()
    moved = _items(page)
    assert abs(moved[0][0] - (cuts[0][0] + 1.0)) < 0.1 and moved[0][1] == cuts[0][1]

    # click inside the last cut, split it there; select the 2nd and merge it with the 3rd
    middle = (cuts[3][0] + cuts[3][1]) / 2
    page.mouse.click(x_of(middle), y)
    page.get_by_test_id("slice-split").click()
    assert len(_items(page)) == 5
    page.get_by_test_id("slice-item").nth(1).click()
    page.get_by_test_id("slice-merge").click()
    edited = _items(page)
    assert len(edited) == 4 and edited[1] == (cuts[1][0], cuts[2][1])
    assert abs(edited[2][1] - middle) < 0.1 and edited[3][0] == edited[2][1]

    # the silence settings propose again; then put the edit back and save it as a new version
    page.get_by_test_id("slice-min-seconds").fill("4")
    page.get_by_test_id("slice-detect").click()
    page.wait_for_function("document.querySelectorAll('[data-testid=slice-item]').length === 2")
    assert "2" in page.get_by_test_id("slice-status").inner_text()  # the two left out are counted
    page.get_by_test_id("slice-min-seconds").fill("2")
    page.get_by_test_id("slice-detect").click()
    page.wait_for_function("document.querySelectorAll('[data-testid=slice-item]').length === 4")
    page.get_by_test_id("slice-item").nth(0).click()
    page.get_by_test_id("slice-merge").click()
    saved_cuts = _items(page)
    page.get_by_test_id("slice-output").fill("review-recs-v2")
    page.get_by_test_id("slice-save").click()
    page.wait_for_function("['completed', 'failed'].includes(document.querySelector('[data-testid=slice-status]')"
                           ".dataset.status)", timeout=180_000)
    assert page.get_by_test_id("slice-status").get_attribute("data-status") == "completed", server.log_tail()
    rows = [json.loads(line) for line in
            (server.home / "datasets" / "audio" / "review-recs-v2" / "slices.jsonl").read_text().splitlines()]
    assert [(r["start"], r["end"]) for r in rows] == [(round(a, 3), round(b, 3)) for a, b in saved_cuts]
    watch.assert_clean()
