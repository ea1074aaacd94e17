"""The browser tests' page pool (``tests/ui/conftest.PagePool``): a lent page starts as a page in a new context would.

The pool reuses browser contexts to save Chromium's CPU; what a test leaves in a context (local storage, cookies,
session storage, an init script, a window it opened) must not reach the next test's page, and two pages open at
once never share one.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.ui.conftest import CHROMIUM, PagePool

if not CHROMIUM.exists() and not os.environ.get("CI"):
    pytest.skip(f"{CHROMIUM} is not installed", allow_module_level=True)

pytestmark = pytest.mark.ui


def stored(page: Any) -> dict[str, Any]:
    return page.evaluate("() => ({local: {...localStorage}, session: {...sessionStorage}, cookie: document.cookie,"
                         " marked: Boolean(window.__marked)})")


def test_a_released_page_leaves_nothing_to_the_next(page_pool: PagePool, server: Any) -> None:
    first = page_pool.page({"width": 800, "height": 600}, "window.__marked = true")
    first.goto(server.url + "/")
    first.wait_for_selector("body[data-ready='true']")
    first.evaluate("() => { localStorage.setItem('lora_factory.lang', 'en'); sessionStorage.setItem('s', '1');"
                   " document.cookie = 'c=1; path=/'; }")
    assert stored(first)["local"]["lora_factory.lang"] == "en" and stored(first)["marked"]
    with first.expect_popup() as popup:  # a window the page opened goes with it
        first.evaluate("() => { window.open('/favicon.svg'); }")
    opened = popup.value
    first_context = first.context
    other = page_pool.page()  # open beside the first: its own context, not the first one's storage
    try:
        assert other.context is not first_context
        other.goto(server.url + "/favicon.svg")
        assert "lora_factory.lang" not in stored(other)["local"]
    finally:
        page_pool.release(other)
    page_pool.release(first)

    assert first.is_closed() and opened.is_closed()

    again = page_pool.page()
    try:
        assert again.context is first_context  # the last one released is lent again: the one the first page used
        again.goto(server.url + "/")
        again.wait_for_selector("body[data-ready='true']")
        state = stored(again)
        assert "lora_factory.lang" not in state["local"] and state["session"] == {} and state["cookie"] == ""
        assert not state["marked"] and again.viewport_size == {"width": 1280, "height": 800}
        assert again.evaluate("document.documentElement.lang") == "ja"  # the UI's default language again
    finally:
        page_pool.release(again)
