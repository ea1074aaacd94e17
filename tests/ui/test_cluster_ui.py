"""The System tab's Ray cluster card: the settings saved from the form, an unreachable cluster said in words.

No Ray is needed: the address is checked (a TCP connection) before anything of Ray runs. The card with a
real cluster's nodes is checked through the API in tests/cluster.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.ui.conftest import PagePool, running_server

pytestmark = pytest.mark.ui


def test_the_cluster_card_saves_the_settings_and_says_when_the_cluster_does_not_answer(page_pool: PagePool, tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    with running_server(tmp_path / "ws") as srv:
        page = page_pool.page({"width": 1280, "height": 900})
        page.set_default_timeout(30_000)  # Playwright's default, which this test was written for
        try:
            page.goto(srv.url + "/#system")
            page.wait_for_selector("body[data-ready='true']")
            state = page.get_by_test_id("cluster-state")
            page.wait_for_function("() => document.querySelector('[data-testid=cluster-state]')?.dataset.state === 'local'")
            page.get_by_test_id("cluster-address").fill(address)
            page.get_by_test_id("cluster-workers").fill("1")
            page.get_by_test_id("cluster-resources").fill('{"CPU": 2}')
            page.get_by_test_id("cluster-save").click()
            page.wait_for_function("() => document.querySelector('[data-testid=cluster-state]')?.dataset.state === 'unreachable'")
            assert address in state.inner_text() and "接続できません" in state.inner_text()  # the UI speaks Japanese first
            settings = srv.client.get("/api/settings").json()
            assert settings["cluster_address"] == address and settings["cluster_resources_per_worker"] == {"CPU": 2.0}
            assert page.get_by_test_id("cluster-resources").input_value() == '{"CPU":2}'
            page.get_by_test_id("cluster-address").fill("")
            page.get_by_test_id("cluster-save").click()
            page.wait_for_function("() => document.querySelector('[data-testid=cluster-state]')?.dataset.state === 'local'")
            assert srv.client.get("/api/settings").json()["cluster_address"] is None
        finally:
            page_pool.release(page)
