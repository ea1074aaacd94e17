"""Browser tests of the app shell for a newcomer (issue 21): errors in words next to their field, no
literal "null", a running job that survives a reload and shows in the header, a 履歴 that refreshes
itself and names its jobs, cancel with confirmation / 途中 badge / 再開, Back and Forward between
tabs and out of dialogs.

They run at 1366 x 768 (the newcomer's laptop; 1920 x 1080 where the layout is the point) against the
session's one server (conftest ``server``); screenshots land in ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ui.conftest import PagePool
from tests.ui.test_ui import CHROMIUM, open_app, panel, screenshot, upload_dataset_via_api

if not CHROMIUM.exists():
    import os

    if not os.environ.get("CI"):
        pytest.skip(f"{CHROMIUM} is not installed", allow_module_level=True)

pytestmark = pytest.mark.ui

Server = Any
LAPTOP = {"width": 1366, "height": 768}
DESKTOP = {"width": 1920, "height": 1080}
# text nodes no screen may show: a JS value printed as it is, a regex from pydantic
LEAKS = re.compile(r"\b(null|undefined|NaN)\b|\[object Object\]")


@pytest.fixture()
def open_page(page_pool: PagePool) -> Iterator[Callable[..., Any]]:
    """open_page(lang, viewport) -> a page as in a fresh context with the UI language chosen up front."""
    pages: list[Any] = []

    def make(lang: str = "ja", viewport: dict[str, int] | None = None) -> Any:
        page = page_pool.page(viewport or LAPTOP, f"try {{ localStorage.setItem('lora_factory.lang', '{lang}'); "
                              "localStorage.setItem('lora_factory.modality', 'text'); } catch (e) {}")
        pages.append(page)
        page.page_errors = []  # type: ignore[attr-defined]
        page.on("pageerror", lambda exc: page.page_errors.append(str(exc)))
        return page

    yield make
    for page in pages:
        page_pool.release(page)


def visible_leaks(page: Any, root: str = "#panels > .panel:not([hidden])") -> list[str]:
    """Text nodes under root that show a raw JS value ("null", "undefined" ...)."""
    texts = page.evaluate(
        """(sel) => { const out = []; for (const root of document.querySelectorAll(sel)) {
             const w = document.createTreeWalker(root, NodeFilter.SHOW_TEXT); let n;
             while ((n = w.nextNode())) { if (n.parentElement.closest('[hidden]')) continue; out.push(n.textContent); } }
             return out; }""",
        root,
    )
    return [t for t in texts if LEAKS.search(t)]


def an_adapter(server: Server, tmp_path: Path) -> str:
    """The name of a text adapter of the session (test_ui.py trains some), else of a one-step training;
    the longest name, so its row is the widest."""
    adapters = server.client.get("/api/adapters", params={"modality": "text"}).json().get("adapters", [])
    if not adapters:
        dataset_ref = upload_dataset_via_api(server, tmp_path, "ui_shell_fit_set")
        res = server.client.post("/train/start", json={"modality": "text", "base_model": server.model_ref, "dataset": dataset_ref,
                                                       "output_name": "ui_shell_fit", "preset": "quick", "params": {"max_steps": 1}})
        assert res.status_code == 200, res.text
        assert server.wait_job(res.json()["job_id"])["status"] == "completed"
        adapters = server.client.get("/api/adapters", params={"modality": "text"}).json()["adapters"]
    return max(adapters, key=lambda a: len(a["name"]))["name"]


def notices(page: Any) -> list[str]:
    return [t.replace("×", "").strip() for t in page.locator("#notices [data-testid=notice]").all_inner_texts()]


# ---- 1: errors in words, next to their field ------------------------------------------------------


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_errors_name_the_field_by_its_label_and_mark_it(open_page: Callable[..., Any], server: Server, tmp_path: Path, lang: str) -> None:
    page = open_page(lang)
    open_app(page, server, "models")
    models = panel(page, "models")
    # an empty repo id: the sentence names 「リポジトリID」 / "Repo id", no regex, no "undefined"
    models.get_by_test_id("model-download").click()
    page.wait_for_selector("#panel-models [data-testid=field-error]")
    text = notices(page)[0]
    label = "リポジトリID" if lang == "ja" else "Repo id"
    assert label in text, text
    assert "^" not in text and "undefined" not in text and "repo_id" not in text and "pattern" not in text, text
    repo = models.get_by_test_id("model-repo-id")
    assert repo.get_attribute("aria-invalid") == "true"
    assert label in models.get_by_test_id("field-error").inner_text()
    screenshot(page, f"error-repo-id-{lang}")
    # typing into the field takes the mark away
    repo.fill("Qwen/Qwen2.5-0.5B")
    assert repo.get_attribute("aria-invalid") is None
    assert models.get_by_test_id("field-error").count() == 0

    # a wrong value in the advanced JSON: the sentence names the form's own label of max_steps
    dataset_ref = upload_dataset_via_api(server, tmp_path, f"ui_err_set_{lang}")
    page.get_by_test_id("tab-train").click()
    train = panel(page, "train")
    train.get_by_test_id("train-base-model").select_option(server.model_ref)
    train.get_by_test_id("train-dataset").select_option(dataset_ref)
    train.get_by_test_id("train-advanced").locator("summary").click()
    train.get_by_test_id("train-params").fill(json.dumps({"max_steps": "abc"}))
    train.get_by_test_id("train-start").click()
    page.wait_for_selector("#panel-train [data-testid=field-error]")
    text = notices(page)[0]
    steps_label = page.evaluate("() => document.querySelector(`label[for='${document.querySelector('[data-testid=train-param-max_steps]').id}']`).textContent")
    assert steps_label.replace("*", "").strip() in text, (steps_label, text)
    assert ("整数" if lang == "ja" else "whole number") in text, text
    assert "undefined" not in text and "行" not in text.split("」")[0], text
    assert train.get_by_test_id("train-param-max_steps").get_attribute("aria-invalid") == "true"

    # no dataset chosen: said in words (not 「パスが空です。」), the dataset select marked
    train.get_by_test_id("train-params").fill("{}")
    train.get_by_test_id("train-dataset").select_option("")
    train.get_by_test_id("train-start").click()
    page.wait_for_selector("#panel-train [data-testid=train-dataset][aria-invalid=true]")
    text = notices(page)[0]
    assert ("データセットが選ばれていません" if lang == "ja" else "No dataset is chosen") in text, text
    assert "パスが空" not in text and "path is empty" not in text
    screenshot(page, f"error-no-dataset-{lang}")

    # errors stay with what caused them: another tab does not show them; the stack is capped
    page.get_by_test_id("tab-models").click()
    assert notices(page) == []
    for _ in range(5):
        models.get_by_test_id("model-download").click()
        page.wait_for_timeout(150)
    page.wait_for_timeout(500)
    assert 1 <= len(notices(page)) <= 3, notices(page)
    assert not page.page_errors


# ---- 2: no literal "null" -------------------------------------------------------------------------


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_no_screen_shows_a_raw_null(open_page: Callable[..., Any], server: Server, lang: str) -> None:
    page = open_page(lang)
    open_app(page, server)
    found = {}
    for modality in ("text", "image", "audio"):
        page.get_by_test_id(f"modality-{modality}").click()
        for tab in ("datasets", "refine"):
            page.get_by_test_id(f"tab-{tab}").click()
            page.wait_for_selector(f"#panel-{tab}:not([hidden])")
            page.wait_for_timeout(300)
            if tab == "refine":  # every operation opened: its parameters and help text too
                for box in panel(page, "refine").locator("[data-testid^=refine-op-]").all():
                    if box.get_attribute("type") == "checkbox" and box.is_visible():
                        box.check()
            leaks = visible_leaks(page)
            if leaks:
                found[f"{modality}/{tab}"] = leaks
    assert not found, found
    assert not page.page_errors


# ---- 8: Back and Forward ----------------------------------------------------------------------------


def test_back_and_forward_move_between_tabs_and_close_dialogs(open_page: Callable[..., Any], server: Server) -> None:
    page = open_page("ja")
    open_app(page, server)
    for tab in ("models", "datasets", "history"):
        page.get_by_test_id(f"tab-{tab}").click()
        page.wait_for_selector(f"#panel-{tab}:not([hidden])")
    page.go_back()
    page.wait_for_selector("#panel-datasets:not([hidden])")
    page.go_back()
    page.wait_for_selector("#panel-models:not([hidden])")
    assert page.url.endswith("#models")
    page.go_forward()
    page.wait_for_selector("#panel-datasets:not([hidden])")
    page.go_forward()
    page.wait_for_selector("#panel-history:not([hidden])")
    # a dialog closes on Back, and the tab stays
    history = panel(page, "history")
    history.locator("[data-testid^=history-row-]").first.get_by_role("button", name="ログ").click()
    page.wait_for_selector("dialog[open][data-testid=modal]")
    page.go_back()
    page.wait_for_selector("dialog[data-testid=modal]", state="detached")
    assert page.url.endswith("#history")
    assert page.locator("#panel-history").is_visible()
    # a dialog closed by its button leaves no stray entry: one Back goes to the tab before
    history.locator("[data-testid^=history-row-]").first.get_by_role("button", name="ログ").click()
    page.get_by_test_id("modal-close").click()
    page.wait_for_selector("dialog[data-testid=modal]", state="detached")
    page.go_back()
    page.wait_for_selector("#panel-datasets:not([hidden])")
    assert not page.page_errors


# ---- 3, 4, 11, 12: a running job, the 履歴, cancel ----------------------------------------------------


def test_a_running_job_survives_a_reload_and_cancel_is_confirmed_partial_and_resumable(open_page: Callable[..., Any], server: Server, tmp_path: Path) -> None:
    """One long training serves four defects (a reload keeps it, 履歴 follows it live, cancel asks,
    the adapter of the cancelled run says 途中): a second training would double the slowest part."""
    dataset_ref = upload_dataset_via_api(server, tmp_path, "ui_shell_running")
    res = server.client.post("/train/start", json={
        "modality": "text", "base_model": server.model_ref, "dataset": dataset_ref, "output_name": "ui_shell_partial",
        "preset": "quick", "params": {"max_steps": 3000, "save_steps": 2},
    })
    assert res.status_code == 200, res.text
    job_id = res.json()["job_id"]
    try:
        page = open_page("ja")
        open_app(page, server, "train")
        # 3: a reload brings back the job card and the header counts the running job
        page.reload()
        page.wait_for_selector("body[data-ready='true']")
        train = panel(page, "train")
        page.wait_for_function(f"() => document.querySelector('#panel-train [data-testid=job-id]').textContent === '{job_id}'")
        assert train.get_by_test_id("job-view").is_visible()
        indicator = page.get_by_test_id("jobs-indicator")
        indicator.wait_for(state="visible")
        assert int(page.get_by_test_id("jobs-indicator-count").inner_text()) >= 1
        page.get_by_test_id("tab-datasets").click()
        indicator.locator("summary").click()
        page.get_by_test_id(f"jobs-indicator-{job_id}").click()
        page.wait_for_selector("#panel-train:not([hidden])")
        screenshot(page, "running-job-after-reload")

        # 12: cancel asks first; saying no keeps it running
        page.wait_for_function("() => Number(document.querySelector('#panel-train [data-testid=job-progress]').dataset.step) >= 3", timeout=150_000)
        train.get_by_test_id("train-cancel").click()
        page.get_by_test_id("confirm-dialog").wait_for()
        page.get_by_test_id("confirm-cancel").click()
        assert server.client.get(f"/api/jobs/{job_id}").json()["status"] == "running"

        # 4 and 11: the 履歴 names the job and follows it live
        page.get_by_test_id("tab-history").click()
        history = panel(page, "history")
        row = history.get_by_test_id(f"history-row-{job_id}")
        row.wait_for()
        assert row.get_attribute("data-status") == "running"
        assert history.get_by_test_id(f"history-name-{job_id}").inner_text() == "ui_shell_partial"
        assert "ui_shell_running" in history.get_by_test_id(f"history-dataset-{job_id}").inner_text()
        assert history.get_by_test_id(f"history-modality-{job_id}").inner_text() == "テキスト"
        assert server.client.post(f"/api/jobs/{job_id}/cancel").status_code == 200
        page.wait_for_selector(f"#panel-history [data-testid=history-row-{job_id}][data-status=canceled]", timeout=60_000)
        # 12: the adapter of the cancelled run says 途中, the job offers 再開
        history.get_by_test_id("adapter-partial-ui_shell_partial").wait_for(timeout=30_000)
        assert history.get_by_test_id("adapter-partial-ui_shell_partial").inner_text() == "途中"
        assert history.get_by_test_id(f"history-resume-{job_id}").is_visible()
        page.wait_for_function("() => document.querySelector('[data-testid=jobs-indicator]').hidden")
        screenshot(page, "history-after-cancel")

        # 12: the job card: no remaining time, a 再開 button
        page.go_back()
        page.wait_for_selector("#panel-train:not([hidden])")
        page.wait_for_function("() => document.querySelector('#panel-train [data-testid=job-status]').dataset.status === 'canceled'")
        assert train.get_by_test_id("job-eta").inner_text() == "-"
        assert train.get_by_test_id("job-resume").is_visible()
        assert not page.page_errors
    finally:
        server.client.post(f"/api/jobs/{job_id}/cancel")
        server.wait_job(job_id)


@pytest.mark.parametrize("viewport", [LAPTOP, DESKTOP], ids=["1366", "1920"])
def test_history_tables_fit_and_say_what_each_job_is(open_page: Callable[..., Any], server: Server, tmp_path: Path, viewport: dict[str, int]) -> None:
    page = open_page("ja", viewport)
    name = an_adapter(server, tmp_path)
    open_app(page, server, "history")
    history = panel(page, "history")
    history.get_by_test_id(f"adapter-row-{name}").wait_for()
    delete = history.get_by_test_id(f"adapter-delete-{name}")
    box = delete.bounding_box()
    assert box and box["x"] + box["width"] <= viewport["width"], (box, viewport)
    for wrap in history.locator(".table-wrap").all():
        assert wrap.evaluate("el => el.scrollWidth <= el.clientWidth + 1"), "a 履歴 table scrolls sideways"
    # jobs: filtered by the modality chosen at the top; the tiny demo model is not 「ダウンロード」
    assert page.get_by_test_id("history-modality").input_value() == "text"
    tiny = next(j for j in server.client.get("/api/jobs", params={"kind": "download"}).json()["jobs"] if j.get("output_name") == "tiny-ui")
    # the session's server has run many jobs by now: show the downloads only, so the tiny model's row is listed
    history.get_by_test_id("history-kind").select_option("download")
    assert history.get_by_test_id(f"history-kind-{tiny['id']}").inner_text() == "デモ用小型モデルの作成"
    assert history.get_by_test_id(f"history-name-{tiny['id']}").inner_text() == "tiny-ui"
    screenshot(page, f"history-{viewport['width']}")
    assert not page.page_errors


# ---- 5: results in words --------------------------------------------------------------------------


RAW_KEYS = ("size_bytes", "created_at", "cores_logical", "total_bytes", "rows_in", '{"min"', "tokens_per_s", "e+")


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_results_are_said_in_words_with_the_json_behind_a_toggle(open_page: Callable[..., Any], server: Server, tmp_path: Path, lang: str) -> None:
    name = an_adapter(server, tmp_path)
    page = open_page(lang)
    # adapter details: labels in the UI's language, dates and sizes formatted, opening at the top
    open_app(page, server, "history")
    page.get_by_test_id(f"adapter-view-{name}").click()
    dialog = page.locator("dialog[open][data-testid=modal]")
    dialog.wait_for()
    assert dialog.evaluate("el => el.scrollTop") == 0
    info = page.get_by_test_id("adapter-info").inner_text()
    assert ("作成日時" if lang == "ja" else "created") in info and ("サイズ" if lang == "ja" else "size") in info, info
    assert not any(k in info for k in RAW_KEYS), info
    assert not re.search(r"\d{4}-\d{2}-\d{2}T", info), info
    metrics = page.get_by_test_id("adapter-metrics").inner_text()
    assert not any(k in metrics for k in RAW_KEYS), metrics
    toggle = page.get_by_test_id("adapter-json")
    assert toggle.locator("summary").inner_text() == ("詳細 (JSON)" if lang == "ja" else "Details (JSON)")
    toggle.locator("summary").click()
    assert '"created_at"' in toggle.inner_text()
    screenshot(page, f"adapter-details-{lang}")
    page.get_by_test_id("modal-close").click()

    # dataset statistics: no JSON in the table
    upload_dataset_via_api(server, tmp_path, f"ui_words_{lang}")
    page.get_by_test_id("tab-datasets").click()
    page.get_by_test_id(f"dataset-view-ui_words_{lang}.jsonl").click()
    stats = page.get_by_test_id("dataset-stats-table")
    stats.wait_for()
    text = stats.inner_text()
    assert not any(k in text for k in RAW_KEYS) and "{" not in text, text
    assert ("行数" if lang == "ja" else "rows") in text, text

    # the System tab: the machine in words
    page.get_by_test_id("tab-system").click()
    page.get_by_test_id("system-cpu").wait_for()
    text = page.locator("#panel-system").inner_text()
    assert not any(k in text for k in RAW_KEYS), text
    screenshot(page, f"system-{lang}")
    assert not page.page_errors


# ---- 10: the Hub out of reach ------------------------------------------------------------------------


def test_an_unreachable_hub_offers_retry_the_offline_model_and_the_mirror(open_page: Callable[..., Any], server: Server) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on: the Hub is out of reach at once
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    assert server.client.put("/api/settings", json={"hf_endpoint": dead}).status_code == 200
    try:
        page = open_page("ja")
        open_app(page, server, "models")
        models = panel(page, "models")
        models.get_by_test_id("model-repo-id").fill("someone/far-away")
        models.get_by_test_id("model-download").click()
        # the card may first show the session's last failed download (restored): wait for this one
        job_id = ""
        for _ in range(100):
            jobs = server.client.get("/api/jobs", params={"kind": "download", "limit": 5}).json()["jobs"]
            job_id = next((j["id"] for j in jobs if (j.get("spec") or {}).get("repo_id") == "someone/far-away"), "")
            if job_id:
                break
            page.wait_for_timeout(100)
        assert job_id
        page.wait_for_function(f"() => document.querySelector('#panel-models [data-testid=model-job-id]').textContent === '{job_id}' && document.querySelector('#panel-models [data-testid=model-job-status]').dataset.status === 'failed'", timeout=90_000)
        assert models.get_by_test_id("model-job-error").get_attribute("data-code") == "HUB_UNREACHABLE"
        # no "0/0" and no remaining time for a download that never started
        assert not models.get_by_test_id("model-job-progress").is_visible()
        assert not models.get_by_test_id("model-job-eta").is_visible()
        help_box = models.get_by_test_id("model-error-help")
        assert help_box.is_visible()
        screenshot(page, "models-hub-unreachable")
        # kept after a reload
        page.reload()
        page.wait_for_selector("body[data-ready='true']")
        help_box.wait_for(timeout=30_000)
        # 再実行 starts the same download again (a new job), which fails the same way here
        failed = server.client.get("/api/jobs", params={"kind": "download", "limit": 1}).json()["jobs"][0]["id"]
        models.get_by_test_id("model-error-retry").click()
        page.wait_for_function(f"() => document.querySelector('#panel-models [data-testid=model-job-id]').textContent !== '{failed}'")
        page.wait_for_function("() => document.querySelector('#panel-models [data-testid=model-job-status]').dataset.status === 'failed'", timeout=90_000)
        # the offline model button on the same page, the mirror setting on the System tab
        models.get_by_test_id("model-error-tiny").click()
        assert page.evaluate("document.activeElement.dataset.testid") == "model-tiny"
        models.get_by_test_id("model-error-go-mirror").click()
        page.wait_for_selector("#panel-system:not([hidden])")
        page.wait_for_function("() => document.activeElement && document.activeElement.dataset.testid === 'settings-hf-endpoint'")
        assert not page.page_errors
    finally:
        server.client.put("/api/settings", json={"hf_endpoint": ""})


# ---- 14: the voice studio like the other tabs; the image base model with a placeholder -----------------


def test_voice_studio_uses_the_host_layout_and_image_base_model_has_a_placeholder(open_page: Callable[..., Any], server: Server) -> None:
    page = open_page("ja", DESKTOP)
    open_app(page, server)
    page.get_by_test_id("modality-audio").click()
    page.get_by_test_id("tab-voice").click()
    synth = page.get_by_test_id("voice-synth")
    synth.wait_for()
    # fields side by side (a grid, as the 学習 form), labels tied to their control, wide sliders
    tops = synth.locator(":scope > .field").evaluate_all("els => els.map(e => Math.round(e.getBoundingClientRect().top))")
    assert len(tops) >= 4 and len(set(tops)) < len(tops), tops
    assert page.evaluate("() => [...document.querySelectorAll('[data-testid=voice-synth] > .field > label')].every(l => l.htmlFor && document.getElementById(l.htmlFor))")
    assert page.get_by_test_id("voice-speed").bounding_box()["width"] >= 200
    # the dictionary: the host's list table, headers over their columns
    table = page.get_by_test_id("voice-dict-table")
    assert "list" in (table.get_attribute("class") or "")
    screenshot(page, "voice-studio-1920")
    # the image generation's base-model select starts with a placeholder
    page.get_by_test_id("modality-image").click()
    page.get_by_test_id("tab-infer").click()
    base = page.get_by_test_id("gen-base-model")
    base.wait_for()
    page.wait_for_function("() => document.querySelector('[data-testid=gen-base-model]').options.length > 0")
    first = base.locator("option").first
    assert first.get_attribute("value") == "" and first.inner_text() == "— モデルを選択 —"
    assert not page.page_errors


@pytest.mark.parametrize(("motion", "animation"), [("reduce", "none"), ("no-preference", "spin")])
def test_reduced_motion_stops_the_spinner(browser: Any, server: Server, motion: str, animation: str) -> None:
    """The OS's "reduce motion" setting stops the spinner and the streaming cursor's blink; without it
    they move (the browser fixture asks every other test's context for reduced motion)."""
    context = browser.new_context(viewport=LAPTOP, locale="ja-JP", reduced_motion=motion)
    try:
        page = context.new_page()
        open_app(page, server)
        names = page.evaluate(
            """() => { const spin = document.createElement('span'); spin.className = 'spinner';
                 const bubble = document.createElement('div'); bubble.className = 'bubble is-streaming';
                 bubble.innerHTML = '<span class="bubble-text">…</span>'; document.body.append(spin, bubble);
                 return [getComputedStyle(spin).animationName,
                         getComputedStyle(bubble.querySelector('.bubble-text'), '::after').animationName]; }""")
        assert names == [animation, "none" if animation == "none" else "blink"]
    finally:
        context.close()
