"""Browser tests of the web UI: headless Chromium against a real server on a tiny text model.

Each test ends by checking the page stayed clean: no console error, no uncaught exception, no request
leaving 127.0.0.1 (the UI must work offline). Screenshots of every tab land in
``test-artifacts/screenshots/`` (repo root, git-ignored) as CI artefacts.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.ui.conftest import option_values

CHROMIUM = Path("/usr/bin/chromium")
REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO_ROOT / "test-artifacts" / "screenshots"
Server = Any  # conftest.Server: a running server with .url, .client, .model_ref

if not CHROMIUM.exists() and not os.environ.get("CI"):
    pytest.skip(f"{CHROMIUM} is not installed (the UI tests need Debian's chromium; in CI they must run)", allow_module_level=True)

pytestmark = pytest.mark.ui

TABS = ["wizard", "models", "datasets", "refine", "train", "history", "infer", "system"]
STATIC = REPO_ROOT / "lora_factory" / "static"

# Short rows the tiny model can memorise; the first answer is what the chat test looks for.
CHAT_ROWS = [
    {"messages": [{"role": "user", "content": "こんにちは"}, {"role": "assistant", "content": "こんにちは!ロラです。"}]},
    {"messages": [{"role": "user", "content": "日本の首都は?"}, {"role": "assistant", "content": "東京です。"}]},
    {"messages": [{"role": "user", "content": "好きな動物は?"}, {"role": "assistant", "content": "猫が好きです。"}]},
    {"messages": [{"role": "user", "content": "1たす1は?"}, {"role": "assistant", "content": "2です。"}]},
]


# ---- helpers -----------------------------------------------------------------------------------


class FakeRemote(BaseHTTPRequestHandler):
    """An OpenAI-compatible chat endpoint that evolves every prompt (POST), and a Hub that says every
    repo is gated (GET): what the job worker talks to, on 127.0.0.1, while the page only talks to us."""

    calls: list[dict[str, Any]] = []

    def log_message(self, *args: Any) -> None:  # keep pytest output quiet
        pass

    def _send(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["messages"][0]["content"]
        type(self).calls.append({"path": self.path, "model": body.get("model"), "prompt": prompt})
        if prompt.startswith("Here are two Instructions"):
            answer = "Not Equal"  # the judge: every evolved prompt adds something
        elif "#Rewritten Prompt#:" in prompt or "#Created Prompt#:" in prompt:
            given = re.search(r"#(?:The )?Given Prompt#: \r\n (.*) \r\n#(?:Rewritten|Created) Prompt#", prompt, re.S)
            answer = f"{given.group(1) if given else '質問'}ただし、理由を三つ挙げて答えてください。"
        else:
            answer = "はい、順を追って説明します。まず背景を整理し、次に具体例を二つ挙げ、最後に要点をまとめます。"
        self._send(200, {"choices": [{"message": {"role": "assistant", "content": answer}}]})

    def do_GET(self) -> None:  # noqa: N802
        type(self).calls.append({"path": self.path})
        self._send(403, {"error": "Access to this model is restricted."}, {"X-Error-Code": "GatedRepo", "X-Error-Message": "Access to this model is restricted."})


@pytest.fixture()
def fake_remote() -> Iterator[str]:
    """Base URL (http://127.0.0.1:<port>) of a FakeRemote running for one test."""
    FakeRemote.calls = []
    remote = ThreadingHTTPServer(("127.0.0.1", 0), FakeRemote)
    thread = threading.Thread(target=remote.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{remote.server_address[1]}"
    finally:
        remote.shutdown()
        remote.server_close()



def open_app(page: Any, server: Server, tab: str | None = None) -> None:
    page.goto(server.url + "/")
    page.wait_for_selector("body[data-ready='true']")
    if tab:
        page.get_by_test_id(f"tab-{tab}").click()
        page.wait_for_selector(f"#panel-{tab}:not([hidden])")


def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.evaluate("window.scrollTo(0, 0)")  # a sticky tab bar would land mid-page otherwise
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 1000, f"empty screenshot {path}"
    return path


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    text = "\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows) + "\n"
    path.write_text(text, encoding="utf-8")
    return path


def panel(page: Any, tab: str) -> Any:
    return page.locator(f"#panel-{tab}")


def upload_dataset_via_api(server: Server, tmp_path: Path, name: str) -> str:
    path = write_jsonl(tmp_path / f"{name}.jsonl", CHAT_ROWS)
    with open(path, "rb") as fh:
        res = server.client.post("/api/datasets/upload", data={"modality": "text", "name": name}, files={"file": (path.name, fh, "application/jsonl")})
    assert res.status_code == 200, res.text
    info = res.json()
    return info.get("rel_path") or info["name"]


def start_training_from_ui(page: Any, server: Server, dataset_ref: str, output_name: str, params: dict[str, Any]) -> None:
    """Fill the 学習 form the way a user would (selects, name, advanced JSON) and press start."""
    train = panel(page, "train")
    base = train.get_by_test_id("train-base-model")
    base.select_option(server.model_ref)
    train.get_by_test_id("train-dataset").select_option(dataset_ref)
    train.get_by_test_id("train-output-name").fill(output_name)
    train.get_by_test_id("train-preset").select_option("quick")
    train.get_by_test_id("train-advanced").locator("summary").click()
    train.get_by_test_id("train-params").fill(json.dumps(params))
    train.get_by_test_id("train-start").click()


# ---- tests -------------------------------------------------------------------------------------


# the built-in plugins' front-end modules (register_ui): held to the same rules as the host's UI
PLUGIN_UI = sorted(p for p in (STATIC.parent / "plugins").glob("*/static/**/*") if p.suffix in (".js", ".css"))


def test_dictionaries_have_the_same_keys() -> None:
    """A key missing in English would show the Japanese text (or the raw key) to an English reader."""
    key_re = re.compile(r'^\s*"([a-z_]+\.[a-z_0-9]+)":', re.M)
    ja = set(key_re.findall((STATIC / "i18n" / "ja.js").read_text(encoding="utf-8")))
    en = set(key_re.findall((STATIC / "i18n" / "en.js").read_text(encoding="utf-8")))
    assert len(ja) > 100
    assert ja == en, f"only in ja: {sorted(ja - en)}; only in en: {sorted(en - ja)}"
    used: set[str] = set()
    for path in list((STATIC / "js").rglob("*.js")) + [STATIC / "index.html"] + PLUGIN_UI:
        used |= set(re.findall(r'"((?:app|tab|common|status|kind|role|job|wizard|models|datasets|refine|train|history|infer|system|settings|eval)\.[a-z_0-9]+)"', path.read_text(encoding="utf-8")))
    assert used - ja == set(), f"keys used but not translated: {sorted(used - ja)}"


def test_no_asset_from_outside() -> None:
    """Offline by construction: no http(s) URL in the page, the CSS or the UI's own modules."""
    for path in [STATIC / "index.html", *(STATIC / "css").rglob("*.css"), *(STATIC / "js").rglob("*.js"), *PLUGIN_UI]:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"https?://", text), f"{path} references an outside URL"
    assert (STATIC / "vendor" / "uplot" / "LICENSE").is_file()


def test_page_loads_offline_and_every_tab_renders(watched_page: tuple[Any, Any], server: Server) -> None:
    page, watch = watched_page
    open_app(page, server)
    assert page.get_by_test_id("tab-wizard").inner_text() == "学習ウィザード"
    assert page.locator("html").get_attribute("lang") == "ja"
    modalities = server.client.get("/api/modalities").json()["modalities"]
    for modality in modalities:
        button = page.get_by_test_id(f"modality-{modality['id']}")
        assert button.is_visible()
        assert button.get_attribute("data-available") == str(modality.get("available", True)).lower()
    assert page.get_by_test_id("modality-text").get_attribute("aria-pressed") == "true"
    for tab in TABS:
        page.get_by_test_id(f"tab-{tab}").click()
        page.wait_for_selector(f"#panel-{tab}:not([hidden])")
        page.wait_for_load_state("networkidle")
        assert page.get_by_test_id(f"tab-{tab}").get_attribute("aria-selected") == "true"
        screenshot(page, f"tab-{tab}")
    # The system tab shows the plugins, the text one included, and the versions (filled in when /api/system and
    # /api/plugins have answered: wait for the first row rather than trusting networkidle on a busy machine).
    panel(page, "system").get_by_test_id("plugin-list").locator("tr").first.wait_for(timeout=30_000)
    assert panel(page, "system").get_by_test_id("plugin-list").locator("tr").count() >= 1
    assert "text" in panel(page, "system").get_by_test_id("plugin-list").inner_text()
    # ... and the server's health: the job scheduler runs, so no banner asks for attention.
    assert panel(page, "system").get_by_test_id("health-scheduler").get_attribute("data-running") == "true"
    assert page.get_by_test_id("health-banner").is_hidden() or not page.locator("[data-testid^=health-SCHEDULER]").count()
    # A narrow window: the same page, stacked.
    page.set_viewport_size({"width": 420, "height": 800})
    page.get_by_test_id("tab-train").click()
    screenshot(page, "narrow-train")
    page.get_by_test_id("tab-wizard").click()
    screenshot(page, "narrow-wizard")
    watch.assert_clean()


def test_language_switch_changes_labels_and_is_remembered(watched_page: tuple[Any, Any], server: Server) -> None:
    page, watch = watched_page
    open_app(page, server, "train")
    assert page.get_by_test_id("tab-train").inner_text() == "学習"
    assert panel(page, "train").get_by_test_id("train-start").inner_text() == "学習を開始"
    page.get_by_test_id("lang-toggle").click()
    assert page.get_by_test_id("tab-train").inner_text() == "Training"
    assert panel(page, "train").get_by_test_id("train-start").inner_text() == "Start training"
    assert page.locator("html").get_attribute("lang") == "en"
    page.reload()
    page.wait_for_selector("body[data-ready='true']")
    assert page.get_by_test_id("tab-wizard").inner_text() == "Training wizard"
    screenshot(page, "english-train")
    page.get_by_test_id("lang-toggle").click()
    assert page.get_by_test_id("tab-wizard").inner_text() == "学習ウィザード"
    watch.assert_clean()


def test_wizard_paths_match_the_api(watched_page: tuple[Any, Any], server: Server) -> None:
    page, watch = watched_page
    paths = server.client.get("/utils/paths").json()
    open_app(page, server, "wizard")
    wizard = panel(page, "wizard")
    assert wizard.get_by_test_id("wizard-path-models").inner_text() == paths["text"]["models"]
    assert wizard.get_by_test_id("wizard-path-datasets").inner_text() == paths["text"]["datasets"]
    assert wizard.get_by_test_id("wizard-path-output").inner_text() == paths["text"]["output"]
    assert wizard.get_by_test_id("wizard-path-logs").inner_text() == paths["logs"]
    # The model created by the fixture is offered in step 1.
    assert server.model_ref in option_values(wizard.get_by_test_id("wizard-model"), including=server.model_ref)
    # A button that jumps to the 学習 tab.
    wizard.get_by_test_id("wizard-go-train").click()
    page.wait_for_selector("#panel-train:not([hidden])")
    watch.assert_clean()


def test_dataset_upload_shows_preview_and_line_numbered_errors(watched_page: tuple[Any, Any], server: Server, tmp_path: Path) -> None:
    page, watch = watched_page
    open_app(page, server, "datasets")
    datasets = panel(page, "datasets")
    good = write_jsonl(tmp_path / "ui_good.jsonl", CHAT_ROWS)
    datasets.get_by_test_id("dataset-upload").set_input_files(str(good))
    preview = datasets.get_by_test_id("dataset-preview")
    preview.get_by_text("猫が好きです。").wait_for()
    assert preview.get_by_test_id("dataset-preview-row").count() == len(CHAT_ROWS)
    assert preview.locator(".bubble-user").first.inner_text().endswith("こんにちは")
    # the list is fetched again after the upload's answer (the preview may be drawn first): wait for it
    datasets.get_by_test_id("dataset-list").get_by_text("ui_good").first.wait_for()
    assert datasets.get_by_test_id("dataset-row-ui_good").count() == 1 or "ui_good" in datasets.get_by_test_id("dataset-list").inner_text()
    screenshot(page, "datasets-preview")

    # tool calls and tool results are shown as such, not as plain chat text
    tool_row = {"messages": [
        {"role": "user", "content": "東京の天気は?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "東京"}'}}]},
        {"role": "tool", "content": '{"weather": "晴れ"}'},
        {"role": "assistant", "content": "晴れです。"}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "天気を調べる"}}]}
    tools_file = write_jsonl(tmp_path / "ui_tools.jsonl", [tool_row])
    datasets.get_by_test_id("dataset-upload").set_input_files(str(tools_file))
    call = preview.get_by_test_id("tool-call")
    call.wait_for()
    assert 'get_weather({"city":"東京"})' in call.inner_text()
    assert "晴れ" in preview.get_by_test_id("bubble-tool").inner_text()
    assert preview.get_by_test_id("tool-defs").count() == 1
    screenshot(page, "datasets-tool-calls")

    bad = write_jsonl(tmp_path / "ui_bad.jsonl", [CHAT_ROWS[0], '{"messages": [{"role": "user", "content": "壊れた行"', CHAT_ROWS[1]])
    datasets.get_by_test_id("dataset-upload").set_input_files(str(bad))
    error = datasets.get_by_test_id("dataset-error")
    error.wait_for(state="visible")
    lines = error.get_by_test_id("dataset-error-line")
    assert lines.count() >= 1
    assert re.search(r"行\s*2\b", lines.first.inner_text()), lines.first.inner_text()
    # The API's Japanese message is also shown as a notice.
    assert page.get_by_test_id("notice").first.is_visible()
    screenshot(page, "datasets-error")
    # Nothing was written for the bad file.
    names = [d["name"] for d in server.client.get("/api/datasets", params={"modality": "text"}).json()["datasets"]]
    assert not any("ui_bad" in n for n in names)
    # The invalid upload is expected to log a failed request (422) in the console: nothing else.
    watch.console_errors = [e for e in watch.console_errors if "422" not in e]
    watch.assert_clean()


def test_refine_from_the_ui_shows_the_report_and_the_lineage(watched_page: tuple[Any, Any], server: Server, tmp_path: Path) -> None:
    page, watch = watched_page
    dataset_ref = upload_dataset_via_api(server, tmp_path, "ui_refine_src")
    open_app(page, server, "refine")
    refine = panel(page, "refine")
    refine.get_by_test_id("refine-dataset").select_option(dataset_ref)
    refine.get_by_test_id("refine-output-name").fill("ui_refined")
    # The operations and their parameter forms come from the plugin's declared schema.
    refine.get_by_test_id("refine-op-normalize").check()
    refine.get_by_test_id("refine-op-dedup_exact").check()
    refine.get_by_test_id("refine-run").click()
    page.wait_for_function("() => document.querySelector('#panel-refine [data-testid=refine-job-status]').textContent === '完了'", timeout=90_000)
    report = refine.get_by_test_id("refine-report")
    report.wait_for(state="visible")
    assert "出力行数" in report.inner_text() and "rows_out" not in report.inner_text()  # in words (issue 21)
    versions = refine.get_by_test_id("lineage-version")
    versions.nth(1).wait_for()
    assert "ui_refined" in versions.nth(1).inner_text()
    assert "normalize" in versions.nth(1).inner_text()
    screenshot(page, "refine-report")
    watch.assert_clean()


def test_evol_instruct_from_the_generated_form(watched_page: tuple[Any, Any], server: Server, tmp_path: Path, fake_remote: str) -> None:
    """The evol_instruct schema (a discriminated oneOf of $refs, consts, nullable fields, an array of
    enums) becomes a real form; the job it starts talks to an OpenAI-compatible server."""
    page, watch = watched_page
    dataset_ref = upload_dataset_via_api(server, tmp_path, "ui_evol_src")
    open_app(page, server, "refine")
    refine = panel(page, "refine")
    refine.get_by_test_id("refine-dataset").select_option(dataset_ref)
    refine.get_by_test_id("refine-output-name").fill("ui_evolved")
    refine.get_by_test_id("refine-op-evol_instruct").check()
    gen = refine.get_by_test_id("refine-evol_instruct-generator")
    # The discriminator is a select; each variant's fields are a nested sub-form, its const is hidden.
    options = gen.locator("option").all_inner_texts()
    assert options == ["OpenAI 互換の API (外部・ローカルのサーバー)", "このワークスペースのモデル"], options
    assert refine.get_by_test_id("refine-evol_instruct-generator-type").get_attribute("type") == "hidden"
    base_url = refine.get_by_test_id("refine-evol_instruct-generator-base_url")
    base_url.fill(fake_remote + "/v1")
    refine.get_by_test_id("refine-evol_instruct-generator-model").fill("fake-evolver")
    assert refine.get_by_test_id("refine-evol_instruct-generator-api_key").get_attribute("type") == "password"
    # The local variant: its model field is a choice of the modality's models (rel_paths).
    gen.select_option(index=1)
    local_model = refine.get_by_test_id("refine-evol_instruct-generator-model")
    assert base_url.count() == 0
    offered = option_values(local_model, including=server.model_ref)
    assert server.model_ref in offered, offered
    screenshot(page, "refine-evol-local")
    # Back to openai: what was typed there is still there.
    gen.select_option(index=0)
    assert base_url.input_value() == fake_remote + "/v1"
    assert refine.get_by_test_id("refine-evol_instruct-generator-model").input_value() == "fake-evolver"
    # An array of enums is a group of checkboxes.
    refine.get_by_test_id("refine-evol_instruct-methods-deepen").check()
    refine.get_by_test_id("refine-evol_instruct-methods-concretize").check()
    refine.get_by_test_id("refine-evol_instruct-max_items").fill("3")
    screenshot(page, "refine-evol-form")
    refine.get_by_test_id("refine-run").click()
    page.wait_for_function("() => document.querySelector('#panel-refine [data-testid=refine-job-status]').textContent === '完了'", timeout=60_000)

    job = server.client.get(f"/api/jobs/{refine.get_by_test_id('refine-job-id').inner_text()}").json()
    params = job["spec"]["operations"][0]["params"]
    # What the form sent: a nested generator object, the ticked methods, empty nullable fields as null.
    assert params["generator"] == {"type": "openai", "base_url": fake_remote + "/v1", "model": "fake-evolver", "api_key": None, "timeout": 120}
    assert params["methods"] == ["deepen", "concretize"] and params["max_items"] == 3
    assert {c["model"] for c in FakeRemote.calls} == {"fake-evolver"}
    evol = job["result"]["per_operation"][0]
    assert evol["op"] == "evol_instruct" and evol["items"] == 3
    assert sum(evol["evolved"].values()) == 3 and set(evol["evolved"]) <= {"deepen", "concretize"}
    assert job["result"]["rows_out"] == len(CHAT_ROWS) + 3
    # The report shows the operation's own counts, as the job answered them.
    report = refine.get_by_test_id("refine-report")
    report.wait_for(state="visible")
    details = report.get_by_test_id("refine-op-result-evol_instruct").get_by_test_id("refine-op-details").inner_text()
    for method, count in evol["evolved"].items():
        assert f"{method}: {count}" in details, details
    assert re.search(r"(items|件数)\s+3", details), details
    versions = refine.get_by_test_id("lineage-version")
    versions.nth(1).wait_for()
    assert "ui_evolved" in versions.nth(1).inner_text()
    assert "evol_instruct" in versions.nth(1).inner_text()
    screenshot(page, "refine-evol-report")
    watch.assert_clean()


def test_a_gated_download_points_to_the_token_setting(watched_page: tuple[Any, Any], server: Server, fake_remote: str) -> None:
    """HUB_AUTH_REQUIRED (a mirror on 127.0.0.1 that answers 'gated') offers the way to the token field."""
    page, watch = watched_page
    assert server.client.put("/api/settings", json={"hf_endpoint": fake_remote}).status_code == 200
    try:
        open_app(page, server, "models")
        models = panel(page, "models")
        models.get_by_test_id("model-repo-id").fill("someone/gated-model")
        models.get_by_test_id("model-download").click()
        page.wait_for_function("() => document.querySelector('#panel-models [data-testid=model-job-status]').textContent === '失敗'", timeout=60_000)
        error = models.get_by_test_id("model-job-error")
        assert error.get_attribute("data-code") == "HUB_AUTH_REQUIRED"
        assert "someone/gated-model" in error.inner_text()
        assert any(c["path"].startswith("/api/models/someone/gated-model") for c in FakeRemote.calls)
        # The language switch rewrites the message and keeps the button.
        page.get_by_test_id("lang-toggle").click()
        assert "authentication" in error.get_by_test_id("model-job-error-text").inner_text()
        page.get_by_test_id("lang-toggle").click()
        screenshot(page, "models-gated")
        error.get_by_test_id("model-error-go-settings").click()
        page.wait_for_selector("#panel-system:not([hidden])")
        assert page.evaluate("document.activeElement.dataset.testid") == "settings-hf-token"
    finally:
        server.client.put("/api/settings", json={"hf_token": "", "hf_endpoint": ""})
    watch.assert_clean()


def test_training_reaches_completed_and_the_chat_answers_with_the_adapter(watched_page: tuple[Any, Any], server: Server, tmp_path: Path) -> None:
    page, watch = watched_page
    dataset_ref = upload_dataset_via_api(server, tmp_path, "ui_train_set")
    open_app(page, server, "train")
    start_training_from_ui(page, server, dataset_ref, "ui_adapter", {"max_steps": 12, "logging_steps": 1, "save_steps": 100})
    train = panel(page, "train")
    status = train.get_by_test_id("job-status")
    status.wait_for(state="visible")
    page.wait_for_function("() => /^(実行中|完了)$/.test(document.querySelector('#panel-train [data-testid=job-status]').textContent)", timeout=120_000)
    page.wait_for_function("() => document.querySelector('#panel-train [data-testid=job-status]').textContent === '完了'", timeout=180_000)
    progress = train.get_by_test_id("job-progress").inner_text()
    assert progress == "12/12", progress
    assert train.get_by_test_id("job-loss").inner_text() != "-"
    screenshot(page, "train-completed")

    adapters = [a["name"] for a in server.client.get("/api/adapters", params={"modality": "text"}).json()["adapters"]]
    assert "ui_adapter" in adapters

    page.get_by_test_id("tab-infer").click()
    infer = panel(page, "infer")
    infer.get_by_test_id("infer-base-model").select_option(server.model_ref)
    infer.get_by_test_id("infer-adapter").select_option(label="ui_adapter")
    infer.get_by_test_id("infer-max-tokens").fill("12")
    infer.get_by_test_id("chat-input").fill("こんにちは")
    infer.get_by_test_id("chat-send").click()
    answer = infer.get_by_test_id("chat-output").locator("[data-testid=chat-answer][data-done=true]")
    answer.wait_for(timeout=120_000)
    text = answer.locator(".bubble-text").inner_text()
    assert text.strip(), "the adapter's answer is empty"
    assert infer.get_by_test_id("chat-output").get_by_test_id("chat-question").inner_text().endswith("こんにちは")
    screenshot(page, "infer-chat")
    page.get_by_test_id("tab-history").click()
    history = panel(page, "history")
    history.get_by_test_id("adapter-row-ui_adapter").wait_for()
    screenshot(page, "history")
    link = history.get_by_test_id("adapter-download-ui_adapter").get_attribute("href")
    assert link == "/api/adapters/text/ui_adapter/download"
    assert server.client.get(link).headers["content-type"] == "application/zip"
    history.get_by_test_id("adapter-export-ui_adapter").click()
    page.get_by_test_id("export-target").select_option("gguf")
    assert page.get_by_test_id("export-name").input_value() == "ui_adapter-gguf"
    page.get_by_test_id("export-start").click()
    exports: list = []
    for _ in range(240):
        exports = server.client.get("/api/exports", params={"modality": "text", "adapter": "ui_adapter"}).json()["exports"]
        if exports:
            break
        time.sleep(0.5)
    assert exports and exports[0]["primary"].endswith(".gguf"), exports
    assert server.client.get(exports[0]["download_url"]).content[:4] == b"GGUF"
    watch.assert_clean()


def test_a_long_training_is_cancelled_from_the_ui(watched_page: tuple[Any, Any], server: Server, tmp_path: Path) -> None:
    page, watch = watched_page
    dataset_ref = upload_dataset_via_api(server, tmp_path, "ui_cancel_set")
    open_app(page, server, "train")
    start_training_from_ui(page, server, dataset_ref, "ui_cancelled", {"max_steps": 2000, "save_steps": 1000})
    train = panel(page, "train")
    # Wait for real steps, so the cancel hits a running trainer (not a queued job).
    page.wait_for_function(
        "() => { const p = document.querySelector('#panel-train [data-testid=job-progress]'); return p && Number(p.dataset.step) >= 2; }",
        timeout=150_000,
    )
    assert train.get_by_test_id("job-status").inner_text() == "実行中"
    assert train.get_by_test_id("job-progress").inner_text().endswith("/2000")
    train.get_by_test_id("train-cancel").click()
    page.get_by_test_id("confirm-ok").click()  # cancel asks first (issue 21)
    page.wait_for_function("() => document.querySelector('#panel-train [data-testid=job-status]').textContent === 'キャンセル済み'", timeout=60_000)
    screenshot(page, "train-cancelled")
    step = int(train.get_by_test_id("job-progress").get_attribute("data-step"))
    assert 2 <= step < 2000
    jobs = server.client.get("/api/jobs", params={"kind": "train", "status": "canceled"}).json()["jobs"]
    assert any(j.get("output_name") == "ui_cancelled" or (j.get("spec") or {}).get("output_name") == "ui_cancelled" for j in jobs)
    watch.assert_clean()


def test_hugging_face_settings_from_the_system_tab(watched_page: tuple[Any, Any], server: Server) -> None:
    """The token is write-only: saved through PUT /api/settings, shown as a hint, never put back in the page."""
    page, watch = watched_page
    secret = "hf_uitest_secret_9876"
    assert server.client.put("/api/settings", json={"hf_token": "", "hf_endpoint": ""}).status_code == 200
    try:
        # The モデル tab's download form points to the setting.
        open_app(page, server, "models")
        hint = panel(page, "models").get_by_test_id("model-token-hint")
        assert "トークン" in hint.inner_text()
        hint.get_by_test_id("model-go-settings").click()
        page.wait_for_selector("#panel-system:not([hidden])")
        assert page.evaluate("document.activeElement.dataset.testid") == "settings-hf-token"
        system = panel(page, "system")
        state = system.get_by_test_id("settings-token-state")
        page.wait_for_function("() => document.querySelector('[data-testid=settings-token-state]').dataset.set === 'false'")
        assert state.inner_text() == "未設定"
        assert system.get_by_test_id("settings-hf-token").get_attribute("type") == "password"

        system.get_by_test_id("settings-hf-token").fill(secret)
        system.get_by_test_id("settings-hf-endpoint").fill("https://hf-mirror.example.org")
        system.get_by_test_id("settings-save").click()
        page.wait_for_function("() => document.querySelector('[data-testid=settings-token-state]').dataset.set === 'true'")
        assert state.inner_text() == "設定済み (…9876)"
        assert system.get_by_test_id("settings-hf-token").input_value() == ""
        saved = server.client.get("/api/settings").json()
        assert saved == {"hf_token_set": True, "hf_token_hint": "…9876", "hf_endpoint": "https://hf-mirror.example.org",
                         "modality_owners": {}, "cluster_address": None, "cluster_workers": None,
                         "cluster_resources_per_worker": None, "cluster_workspace": None}
        screenshot(page, "system-settings")

        # After a reload: the endpoint is shown again, the token is not (the API never returns it).
        page.reload()
        page.wait_for_selector("body[data-ready='true']")
        page.wait_for_function("() => document.querySelector('[data-testid=settings-token-state]').dataset.set === 'true'")
        assert system.get_by_test_id("settings-hf-endpoint").input_value() == "https://hf-mirror.example.org"
        assert system.get_by_test_id("settings-hf-token").input_value() == ""
        assert secret not in page.content()

        # Saving with an empty token field keeps the token; a bad endpoint is refused with the API's message.
        system.get_by_test_id("settings-hf-endpoint").fill("not a url")
        system.get_by_test_id("settings-save").click()
        notice = page.locator("[data-testid=notice][data-code=SETTINGS_INVALID]")
        notice.wait_for()
        # said with the field's own label, the field marked (issue 21), no regex
        assert "エンドポイント (HF_ENDPOINT、任意)" in notice.inner_text() and "^" not in notice.inner_text()
        assert system.get_by_test_id("settings-hf-endpoint").get_attribute("aria-invalid") == "true"
        assert server.client.get("/api/settings").json()["hf_token_set"] is True

        # The clear button removes the token.
        system.get_by_test_id("settings-token-clear").click()
        page.wait_for_function("() => document.querySelector('[data-testid=settings-token-state]').dataset.set === 'false'")
        assert state.inner_text() == "未設定"
        assert server.client.get("/api/settings").json()["hf_token_set"] is False
        page.get_by_test_id("lang-toggle").click()
        assert state.inner_text() == "not set"
    finally:
        server.client.put("/api/settings", json={"hf_token": "", "hf_endpoint": ""})
    # The refused endpoint is expected to log one failed request (400 SETTINGS_INVALID): nothing else.
    watch.console_errors = [e for e in watch.console_errors if "status of 400" not in e]
    watch.assert_clean()


def test_regression_suite_from_the_history_tab(watched_page: tuple[Any, Any], server: Server, tmp_path: Path) -> None:
    """A suite typed in the 履歴 tab runs as an eval job on the adapter, its base and its previous version."""
    page, watch = watched_page
    dataset_ref = upload_dataset_via_api(server, tmp_path, "ui_eval_set")
    # Two versions of one adapter, trained through the API: "-v2" is compared with its previous version.
    job_ids = []
    for name in ("ui_evalbase", "ui_evalbase-v2"):
        res = server.client.post("/train/start", json={"base_model": server.model_ref, "dataset": dataset_ref, "output_name": name, "preset": "quick", "modality": "text", "params": {"max_steps": 3, "save_steps": 100}})
        assert res.status_code == 200, res.text
        job_ids.append(res.json()["job_id"])
    for job_id in job_ids:
        assert server.wait_job(job_id)["status"] == "completed", server.log_tail()

    open_app(page, server, "history")
    history = panel(page, "history")
    history.get_by_test_id("adapter-eval-ui_evalbase-v2").click()
    evalp = history.get_by_test_id("eval-panel")
    evalp.wait_for(state="visible")
    # Its lineage: the base model and the dataset it was trained on.
    evalp.get_by_test_id("lineage-parent").first.wait_for()
    roles = evalp.get_by_test_id("lineage-parent").evaluate_all("els => els.map(e => e.dataset.role)")
    assert {"base_model", "dataset"} <= set(roles), roles
    assert "datasets/text/ui_eval_set" in evalp.get_by_test_id("adapter-lineage").inner_text()
    evals_before = len(server.client.get("/api/jobs", params={"kind": "eval"}).json()["jobs"])

    # A line that is not JSON is caught before anything is sent, with its line number.
    suite = evalp.get_by_test_id("eval-suite")
    suite.fill('{"prompt": "日本の首都は?", "contains": ["東京"]}\n{"prompt": "壊れた行"\n')
    evalp.get_by_test_id("eval-start").click()
    error = evalp.get_by_test_id("eval-suite-error")
    error.wait_for(state="visible")
    assert re.search(r"行\s*2\b", error.get_by_test_id("eval-suite-error-line").first.inner_text())
    # A case without any check is valid JSON: the server's 422 SUITE_INVALID names its line.
    suite.fill('{"prompt": "日本の首都は?"}')
    evalp.get_by_test_id("eval-start").click()
    page.locator("[data-testid=notice][data-code=SUITE_INVALID]").wait_for()
    error.wait_for(state="visible")
    assert re.search(r"行\s*1\b", error.get_by_test_id("eval-suite-error-line").first.inner_text())
    assert len(server.client.get("/api/jobs", params={"kind": "eval"}).json()["jobs"]) == evals_before

    suite.fill('{"prompt": "日本の首都は?", "contains": ["東京"]}\n\n{"prompt": "こんにちは", "max_length": 100000}\n')
    evalp.get_by_test_id("eval-max-tokens").fill("8")
    evalp.get_by_test_id("eval-start").click()
    page.wait_for_function("() => document.querySelector('#panel-history [data-testid=eval-job-status]').textContent === '完了'", timeout=120_000)
    job_id = evalp.get_by_test_id("eval-job-id").inner_text()
    job = server.client.get(f"/api/jobs/{job_id}").json()
    assert job["kind"] == "eval" and job["status"] == "completed"
    summary = job["result"]["summary"]
    assert set(summary) == {"adapter", "base", "previous"}
    # What the page shows is what the job answered: pass counts per target, then every case's output.
    table = evalp.get_by_test_id("eval-summary")
    for target, counts in summary.items():
        row = table.get_by_test_id(f"eval-summary-{target}")
        assert counts["total"] == 2
        assert f"{counts['passed']}/2" in row.inner_text()
        assert counts["passed"] >= 1  # the max_length case always passes
    cases = evalp.get_by_test_id("eval-cases").get_by_test_id("eval-case")
    assert cases.count() == 2
    for i in range(2):
        prompt = job["result"]["targets"]["adapter"]["cases"][i]["prompt"]
        assert prompt in cases.nth(i).inner_text()
        for target in ("adapter", "base", "previous"):
            expected = job["result"]["targets"][target]["cases"][i]
            cell = cases.nth(i).locator(f"td[data-target={target}]")
            assert cell.get_attribute("data-passed") == str(expected["passed"]).lower()
            if expected["output"].strip():
                assert cell.get_by_test_id("eval-case-output").text_content() == expected["output"]
    # The stored result appears with the adapter (its evals) and in the adapter list.
    evalp.locator(f"[data-testid=adapter-eval-row]:has-text('{job_id}')").wait_for()
    badge = history.get_by_test_id("adapter-eval-badge-ui_evalbase-v2")
    badge.wait_for()
    assert badge.inner_text() == f"回帰 {summary['adapter']['passed']}/2"
    stored = server.client.get("/api/adapters/text/ui_evalbase-v2").json()["evals"]
    assert any(e["job_id"] == job_id and e["summary"]["adapter"]["passed"] == summary["adapter"]["passed"] for e in stored)
    screenshot(page, "history-eval")

    # マージ: the adapter folded into its base as a standalone model, under the name typed in the prompt.
    history.get_by_test_id("adapter-merge-ui_evalbase-v2").click()
    name_input = page.get_by_test_id("merge-input")
    assert name_input.input_value() == "ui_evalbase-v2-merged"
    name_input.fill("ui_merged")
    page.get_by_test_id("merge-ok").click()
    page.wait_for_function("() => document.querySelector('#panel-history [data-testid=merge-job-status]').textContent === '完了'", timeout=90_000)
    models = server.client.get("/api/models", params={"modality": "text"}).json()["models"]
    assert any(m["name"] == "ui_merged" for m in models)
    watch.console_errors = [e for e in watch.console_errors if "422" not in e]
    watch.assert_clean()


HOSTILE_PAGE = """<!doctype html><meta charset="utf-8"><title>another site</title><script>
window.results = [];
const target = "__SERVER__", job = "__JOB__";
const upload = () => {
  const fd = new FormData();
  fd.append("modality", "text");
  fd.append("file", new Blob(['{"text": "x"}\\n'], {type: "application/jsonl"}), "cross_site_upload.jsonl");
  return fetch(`${target}/api/datasets/upload`, {method: "POST", mode: "no-cors", body: fd});
};
const tries = [
  () => fetch(`${target}/train/cancel/${job}`, {method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"}, body: "{}"}),
  () => fetch(`${target}/api/jobs/${job}/cancel`, {method: "POST", mode: "no-cors"}),
  upload,
  () => fetch(`${target}/train/cancel/${job}`, {method: "POST", headers: {"Content-Type": "application/json"}, body: "{}"}),
];
(async () => {
  for (const attempt of tries) {
    try { const r = await attempt(); window.results.push(`${r.type}:${r.status}`); }
    catch (e) { window.results.push(`error:${e.message}`); }
  }
  window.done = true;
})();
</script>"""


def test_a_page_from_another_origin_cannot_cancel_or_upload(browser: Any, server: Server, tmp_path: Path) -> None:
    """A real browser on another origin (another port) POSTs to the server: refused, nothing changes."""
    dataset_ref = upload_dataset_via_api(server, tmp_path, "ui_cross_site_set")
    res = server.client.post("/train/start", json={"base_model": server.model_ref, "dataset": dataset_ref, "output_name": "ui_cross_site",
                                                   "preset": "quick", "params": {"max_steps": 2000, "save_steps": 1000}})
    assert res.status_code == 200, res.text
    job_id = res.json()["job_id"]
    html = HOSTILE_PAGE.replace("__SERVER__", server.url).replace("__JOB__", job_id).encode()

    class Hostile(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(html)))
            self.end_headers()
            self.wfile.write(html)

    other = ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    context = browser.new_context()
    statuses: list[tuple[str, int]] = []
    try:
        page = context.new_page()
        page.on("response", lambda r: statuses.append((r.url, r.status)) if r.url.startswith(server.url) else None)
        page.goto(f"http://127.0.0.1:{other.server_address[1]}/")
        page.wait_for_function("() => window.done === true", timeout=20_000)
        results = page.evaluate("window.results")
    finally:
        context.close()
        other.shutdown()
        other.server_close()
    try:
        assert len(results) == 4 and results[3].startswith("error:"), results  # a JSON POST is not even sent
        reached = [status for url, status in statuses]
        assert reached and all(status == 403 for status in reached), statuses
        job = server.client.get(f"/api/jobs/{job_id}").json()
        assert not job["cancel_requested"] and job["status"] in ("queued", "running"), job
        names = [d["name"] for d in server.client.get("/api/datasets", params={"modality": "text"}).json()["datasets"]]
        assert "cross_site_upload.jsonl" not in names
        assert not list((server.home / "datasets" / "text").glob("cross_site_upload*"))
    finally:
        server.client.post(f"/api/jobs/{job_id}/cancel")
        server.wait_job(job_id)


def test_dpo_from_the_training_form_shows_the_method_figures(watched_page: tuple[Any, Any], server: Server, tmp_path: Path) -> None:
    """Method select -> DPO job through the worker -> rewards / margins in the live view -> adapter registered ->
    its regression suite with the pairs shows the preference check before / after in 履歴 (issue 19 item 5)."""
    page, watch = watched_page
    rows = [{"instruction": q, "chosen": f"{q}です。", "rejected": f"{q}だ。"} for q in ("猫", "犬", "空", "海")]
    path = write_jsonl(tmp_path / "ui_pairs.jsonl", rows)
    with open(path, "rb") as fh:
        res = server.client.post("/api/datasets/upload", data={"modality": "text", "name": "ui_pairs"}, files={"file": (path.name, fh, "application/jsonl")})
    assert res.status_code == 200 and res.json()["format"] == "preference", res.text
    open_app(page, server, "train")
    train = panel(page, "train")
    train.get_by_test_id("train-method").select_option("dpo")
    start_training_from_ui(page, server, res.json().get("rel_path") or res.json()["name"], "ui_dpo", {"max_steps": 3, "batch_size": 4, "save_steps": 100})
    page.wait_for_function("() => document.querySelector('#panel-train [data-testid=job-status]').textContent === '完了'", timeout=240_000)
    # the figures come with the progress records, which the event stream may deliver after the final status
    page.wait_for_function("() => (document.querySelector('#panel-train [data-testid=job-method-metrics]')?.textContent || '')"
                           ".includes('reward_margin=')", timeout=30_000)
    figures = train.get_by_test_id("job-method-metrics").inner_text()
    assert "reward_margin=" in figures and "reward_accuracy=" in figures, figures
    adapters = server.client.get("/api/adapters", params={"modality": "text"}).json()["adapters"]
    assert "ui_dpo" in [a["name"] for a in adapters]

    # 履歴: the regression suite with the pairs as its dataset runs the preference check; the page shows the
    # held-out accuracy and mean margin before (the base) and after (the adapter), as the job answered them.
    dataset_ref = res.json().get("rel_path") or res.json()["name"]
    open_app(page, server, "history")
    history = panel(page, "history")
    history.get_by_test_id("adapter-eval-ui_dpo").click()
    evalp = history.get_by_test_id("eval-panel")
    evalp.wait_for(state="visible")
    evalp.get_by_test_id("eval-suite").fill('{"prompt": "猫", "max_length": 100000}')
    evalp.get_by_test_id("eval-max-tokens").fill("4")
    evalp.get_by_test_id("eval-dataset").select_option(dataset_ref)
    evalp.get_by_test_id("eval-start").click()
    page.wait_for_function("() => document.querySelector('#panel-history [data-testid=eval-job-status]').textContent === '完了'", timeout=120_000)
    job = server.client.get(f"/api/jobs/{evalp.get_by_test_id('eval-job-id').inner_text()}").json()
    figures = job["result"]["summary"]["adapter"]
    rows = figures["rows"]
    assert rows == 4 and {"preference_accuracy", "base_preference_accuracy", "preference_margin", "base_preference_margin"} <= set(figures)

    def check(block: Any) -> None:
        acc, margin = block.get_by_test_id("pref-check-accuracy"), block.get_by_test_id("pref-check-margin")
        assert float(acc.get_attribute("data-before")) == figures["base_preference_accuracy"]
        assert float(acc.get_attribute("data-after")) == figures["preference_accuracy"]
        assert float(margin.get_attribute("data-before")) == pytest.approx(figures["base_preference_margin"])
        assert float(margin.get_attribute("data-after")) == pytest.approx(figures["preference_margin"])
        assert acc.get_by_test_id("pref-after").inner_text() == f"{round(figures['preference_accuracy'] * 100)}%"
        words = block.get_by_test_id("pref-check-words").inner_text()
        assert f"{rows} 組中 {round(figures['base_preference_accuracy'] * rows)} 組" in words, words
        assert f"{rows} 組中 {round(figures['preference_accuracy'] * rows)} 組" in words and "平均マージン" in words, words

    block = evalp.get_by_test_id("eval-pref-check")
    check(block)
    page.get_by_test_id("lang-toggle").click()  # the same figures in English
    words = block.get_by_test_id("pref-check-words").inner_text()
    assert f"in {round(figures['preference_accuracy'] * rows)} of {rows}" in words and "Mean margin" in words, words
    assert block.get_by_test_id("pref-check-accuracy").locator("th").inner_text() == "Preference accuracy"
    page.get_by_test_id("lang-toggle").click()
    # the adapter's details show its latest eval's check
    history.get_by_test_id("adapter-view-ui_dpo").click()
    detail = page.get_by_test_id("adapter-pref-check")
    detail.wait_for()
    check(detail)
    watch.assert_clean()


def test_compare_choice_becomes_preference_data_and_starts_dpo(watched_page: tuple[Any, Any], server: Server) -> None:
    """Chat compare -> mark the better answer -> appended to a preference dataset -> one click starts DPO."""
    page, watch = watched_page
    open_app(page, server, "infer")
    infer = panel(page, "infer")
    infer.get_by_test_id("infer-base-model").select_option(server.model_ref)
    infer.get_by_test_id("infer-max-tokens").fill("12")
    infer.get_by_test_id("infer-compare").check()
    infer.get_by_test_id("pref-dataset").fill("ui_compare_prefs")
    infer.get_by_test_id("chat-input").fill("好きな色は?")
    infer.get_by_test_id("chat-send").click()
    infer.get_by_test_id("pref-choice").wait_for(timeout=120_000)
    infer.get_by_test_id("pref-right-better").click()
    page.wait_for_function("() => (document.querySelector('#panel-infer [data-testid=pref-count]') || {}).textContent?.endsWith(': 1')", timeout=30_000)
    shown = server.client.get("/api/datasets/text/ui_compare_prefs.jsonl").json()
    assert shown["format"] == "preference" and shown["rows"] == 1
    infer.get_by_test_id("pref-train-dpo").click()
    page.wait_for_function("() => (document.querySelector('#panel-infer [data-testid=pref-count]') || {}).dataset.jobId", timeout=30_000)
    job_id = infer.get_by_test_id("pref-count").get_attribute("data-job-id")
    job = server.client.get(f"/api/jobs/{job_id}").json()
    assert job["spec"]["params"]["method"] == "dpo" if "spec" in job else job["kind"] == "train"
    server.client.post(f"/api/jobs/{job_id}/cancel")
    watch.assert_clean()
