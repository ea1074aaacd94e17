"""The System tab lists the devices and what runs on each; the training form's picker sends ``devices``;
a job's page shows its devices.

Two simulated devices (``LORA_FACTORY_DEVICES=cpu:2``) and the dummy test plugin's train job stand in
for GPUs and a training run: what is checked is the listing and the request, not training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.ui.conftest import PagePool, option_values, running_server

pytestmark = pytest.mark.ui


def test_the_system_tab_lists_the_devices_and_the_picker_sends_them(page_pool: PagePool, dummy_home: Path) -> None:
    with running_server(dummy_home, {"LORA_FACTORY_DEVICES": "cpu:2"}) as srv:
        r = srv.client.post("/train/start", json={"base_model": "base", "dataset": "data.txt", "output_name": "busy",
                                                  "modality": "dummy", "devices": ["cpu:1"],
                                                  "params": {"steps": 600, "delay": 0.1}})
        assert r.status_code == 200, r.text
        job_id = r.json()["job_id"]
        page = page_pool.page({"width": 1280, "height": 900})
        page.set_default_timeout(30_000)  # Playwright's default, which this test was written for
        try:
            page.goto(srv.url + "/#system")
            page.wait_for_selector("body[data-ready='true']")
            page.wait_for_function(
                "id => document.querySelector('[data-testid=\"device-holder-cpu:1\"]')?.dataset.job === id", arg=job_id)
            rows = page.get_by_test_id("device-list").locator("tr")
            assert rows.count() == 2
            assert "模擬デバイス 0" in page.get_by_test_id("device-row-cpu:0").inner_text()  # Japanese first
            assert "空き" in page.get_by_test_id("device-holder-cpu:0").inner_text()
            assert "busy" in page.get_by_test_id("device-holder-cpu:1").inner_text()

            sent: list[dict] = []

            def capture(route: Any) -> None:
                sent.append(route.request.post_data_json)
                route.fulfill(status=422, content_type="application/json",
                              body='{"error": {"code": "X", "message": "stop here", "message_ja": "ここまで"}}')

            page.route("**/train/start", capture)
            page.goto(srv.url + "/#train")
            picker = page.get_by_test_id("train-devices")
            picker.wait_for(state="visible")
            values = option_values(picker, including='["cpu:1"]')
            assert values == ["", "0", "1", "2", '["cpu:0"]', '["cpu:1"]']
            picker.select_option("2")
            page.get_by_test_id("train-start").click()
            page.wait_for_function("() => document.querySelector('#notices')?.textContent.includes('ここまで')")
            assert sent and sent[0]["devices"] == 2

            # the job's page (followed from the History tab) says where it runs
            page.goto(srv.url + "/#history")
            # the jobs list follows the modality chosen at the top: show every modality's jobs
            page.get_by_test_id("history-modality").select_option("")
            # the list redraws its rows while a job runs (every 2 s, and at each filter change): on a slow runner a
            # click's actionability checks saw the button replaced again and again for 30 s. A dispatched click
            # finds the row's current button and clicks it in one step.
            follow = page.get_by_test_id(f"job-follow-{job_id}")
            follow.wait_for(state="visible")
            follow.dispatch_event("click")
            shown = page.locator("#panel-train").get_by_test_id("job-devices")
            shown.wait_for(state="visible")
            assert shown.inner_text() == "cpu:1"
        finally:
            page_pool.release(page)
            srv.client.post(f"/api/jobs/{job_id}/cancel")
