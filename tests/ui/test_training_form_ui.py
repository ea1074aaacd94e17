"""The newcomer's training form and wizard (issue 21 items 6, 7, 9, 13, 15-17), in Chromium at 1366 × 768.

One model behind the JSON box and the generated form; the command preview that parses back to the very
request the form sends; the estimate; saved settings; a wizard run that ends with its result and next
steps (also after a reload); the Japanese UI without English; Evol-Instruct's model choice, the format
it writes and a re-run's new name. Each test uses the session's server (tests/ui/conftest.py).
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lora_factory.cli import build_parser, train_request
from tests.ui.conftest import PagePool, option_values
from tests.ui.test_ui import CHAT_ROWS, panel, screenshot, upload_dataset_via_api, write_jsonl

pytestmark = pytest.mark.ui

Server = Any


@pytest.fixture()
def new_page(page_pool: PagePool, server: Server) -> Iterator[Any]:
    """``new_page(lang)``: a page as in a fresh context at 1366 × 768 in that UI language, opened on the app;
    every page must end without console errors or uncaught exceptions."""
    pages, problems = [], []

    def make(lang: str = "ja", tab: str | None = None) -> Any:
        page = page_pool.page({"width": 1366, "height": 768}, f"try {{ localStorage.getItem('lora_factory.lang') || "
                              f"localStorage.setItem('lora_factory.lang', '{lang}'); }} catch (e) {{}}")
        pages.append(page)
        page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        page.goto(server.url + "/" + (f"#{tab}" if tab else ""))
        page.wait_for_selector("body[data-ready='true']")
        if tab:
            page.wait_for_selector(f"#panel-{tab}:not([hidden])")
        return page

    yield make
    for page in pages:
        page_pool.release(page)
    assert not problems, problems


def change(locator: Any, value: str) -> None:
    """Type into a form field and leave it (the change event the form listens to)."""
    locator.fill(value)
    locator.dispatch_event("change")


def overrides(train: Any) -> dict[str, Any]:
    text = train.get_by_test_id("train-params").input_value()
    return json.loads(text) if text.strip() else {}


def choose_run(train: Any, server: Server, dataset_ref: str, name: str) -> None:
    train.get_by_test_id("train-base-model").select_option(server.model_ref)
    train.get_by_test_id("train-dataset").select_option(dataset_ref)
    change(train.get_by_test_id("train-output-name"), name)


def test_the_json_box_and_the_form_are_one_model_and_say_which_wins(new_page: Any) -> None:
    page = new_page("ja", "train")
    train = panel(page, "train")
    train.get_by_test_id("train-preset").select_option("quick")
    train.get_by_test_id("train-advanced").locator("summary").click()
    assert overrides(train) == {}  # nothing differs from the preset yet
    steps = train.get_by_test_id("train-param-max_steps")
    assert steps.input_value() == "60"
    rule = train.get_by_test_id("train-steps-rule")
    assert "最大ステップ数 60 が優先" in rule.inner_text() and "エポック数 30" in rule.inner_text()
    # JSON -> form
    train.get_by_test_id("train-params").fill('{"max_steps": 600}')
    assert steps.input_value() == "600" and "600" in rule.inner_text()
    # form -> JSON (both edits kept)
    change(train.get_by_test_id("train-param-rank"), "8")
    assert overrides(train) == {"max_steps": 600, "rank": 8}
    change(steps, "-1")
    assert overrides(train) == {"max_steps": -1, "rank": 8}
    assert "エポック数 30 で長さが決まります" in rule.inner_text()
    # a value equal to the preset's is no override
    change(train.get_by_test_id("train-param-rank"), "16")
    assert overrides(train) == {"max_steps": -1}
    # broken JSON: said next to the box, the form keeps the last good model
    train.get_by_test_id("train-params").fill('{"rank": ')
    assert train.get_by_test_id("train-params-error").is_visible()
    assert steps.input_value() == "-1"
    train.get_by_test_id("train-params").fill("{}")
    assert not train.get_by_test_id("train-params-error").is_visible()
    assert steps.input_value() == "60" and train.get_by_test_id("train-param-rank").input_value() == "16"
    screenshot(page, "form-one-model-ja")

    page = new_page("en", "train")
    train = panel(page, "train")
    train.get_by_test_id("train-preset").select_option("quick")
    assert "max_steps 60 wins" in train.get_by_test_id("train-steps-rule").text_content()


def test_grpo_lists_the_reward_functions_it_can_name(new_page: Any) -> None:
    """Under the method, while it learns from rewards: the rewards GET /api/rewards lists (built-ins here; a
    plugin's come the same way, with its name: tests/host/test_plugin_extensions.py)."""
    page = new_page("ja", "train")
    train = panel(page, "train")
    box = train.get_by_test_id("train-rewards")
    assert not box.is_visible()
    train.get_by_test_id("train-method").select_option("grpo")
    box.wait_for(state="visible")
    item = box.get_by_test_id("train-reward-exact_answer")
    item.wait_for()
    assert item.get_attribute("data-source") == "builtin" and "答え列と一致" in item.inner_text()
    names = box.locator("li code").evaluate_all("els => els.map(e => e.textContent)")
    assert {"exact_answer", "numeric_answer", "regex", "length", "japanese_ratio", "json", "judge"} <= set(names)
    train.get_by_test_id("train-method").select_option("dpo")
    box.wait_for(state="hidden")


def test_the_estimate_counts_rows_and_says_the_memory(new_page: Any, server: Server, tmp_path: Path) -> None:
    dataset_ref = upload_dataset_via_api(server, tmp_path, "est_rows")
    for lang, steps_text, memory_word in (("ja", "4 ステップ", "パラメータ"), ("en", "4 steps", "parameters")):
        page = new_page(lang, "train")
        train = panel(page, "train")
        choose_run(train, server, dataset_ref, f"est_{lang}")
        train.get_by_test_id("train-advanced").locator("summary").click()
        # 4 rows × 2 epochs ÷ batch 2 = 4 optimizer steps
        train.get_by_test_id("train-params").fill('{"max_steps": -1, "num_epochs": 2, "batch_size": 2}')
        box = train.get_by_test_id("train-estimate-box")
        page.wait_for_function("() => document.querySelector('#panel-train [data-testid=train-estimate-box]').dataset.totalSteps === '4'")
        assert box.get_by_test_id("estimate-steps").inner_text().startswith(steps_text)
        memory = box.get_by_test_id("estimate-memory").inner_text()
        assert "RAM" in memory and memory_word in memory and box.get_attribute("data-fits") == "true"
        screenshot(page, f"estimate-{lang}")


def test_command_preview_parses_to_the_request_and_the_run_ends_with_next_steps(new_page: Any, server: Server, tmp_path: Path) -> None:
    """Over 20 s: a real 3-step run through the worker, since what is under test is where a run ends."""
    dataset_ref = upload_dataset_via_api(server, tmp_path, "cmd_rows")
    page = new_page("ja", "train")
    train = panel(page, "train")
    choose_run(train, server, dataset_ref, "cmd_adapter")
    train.get_by_test_id("train-advanced").locator("summary").click()
    train.get_by_test_id("train-params").fill('{"max_steps": 3, "save_steps": 100}')
    change(train.get_by_test_id("train-param-rank"), "8")
    train.get_by_test_id("train-show-command").click()
    cli = train.get_by_test_id("train-command-cli")
    page.wait_for_function("() => document.querySelector('#panel-train [data-testid=train-command-cli]').textContent.includes('rank=8')")
    shown_cli, shown_curl = cli.inner_text(), train.get_by_test_id("train-command-curl").inner_text()
    screenshot(page, "train-command")
    with page.expect_request(lambda r: r.url.endswith("/train/start") and r.method == "POST") as sent:
        train.get_by_test_id("train-start").click()
    body = sent.value.post_data_json
    argv = shlex.split(shown_cli)
    args = build_parser(with_plugins=False).parse_args(argv[1:])
    # devices: None is "the default" (the form sends no devices key when the picker is left on it)
    assert train_request(args).model_dump(exclude_none=True) == {**body, "trust_remote_code": False}
    assert body["params"] == {"max_steps": 3, "save_steps": 100, "rank": 8}
    curl = shlex.split(shown_curl)
    assert json.loads(curl[curl.index("-d") + 1])["params"] == body["params"]

    # the name on screen stays the adapter's while it trains; the run ends with its result and next steps
    assert train.get_by_test_id("train-output-name").input_value() == "cmd_adapter"
    result = train.get_by_test_id("train-result")
    result.wait_for(state="visible", timeout=180_000)
    assert result.get_attribute("data-status") == "completed"
    assert "cmd_adapter" in result.get_by_test_id("train-result-message").inner_text()
    for step in ("infer", "eval", "history"):
        assert result.get_by_test_id(f"train-result-{step}").is_visible()
    assert train.get_by_test_id("train-output-name").input_value() != "cmd_adapter"
    # the finished job's speed now estimates the next run on this model
    train.get_by_test_id("train-estimate").click()
    page.wait_for_function("() => /過去 \\d+ 件/.test(document.querySelector('#panel-train [data-testid=estimate-time]').textContent)")
    screenshot(page, "train-result")

    # 推論で比較: the chat with that base and adapter, side by side, and the demo model's warning
    result.get_by_test_id("train-result-infer").click()
    infer = panel(page, "infer")
    page.wait_for_function("() => (document.querySelector('#panel-infer [data-testid=infer-adapter]') || {}).value?.endsWith('cmd_adapter')")
    assert infer.get_by_test_id("infer-compare").is_checked()
    assert infer.get_by_test_id("infer-base-model").input_value() == server.model_ref
    assert "意味のない" in infer.get_by_test_id("chat-demo-note").inner_text()
    screenshot(page, "infer-after-training")

    # start from that job's settings: its preset and the parameters it was given come back
    page.get_by_test_id("tab-train").click()
    train.get_by_test_id("train-params").fill("{}")
    job_id = train.get_by_test_id("job-id").inner_text()
    train.get_by_test_id("train-from-job").select_option(job_id)
    train.get_by_test_id("train-from-job-apply").click()
    assert overrides(train) == {"max_steps": 3, "save_steps": 100, "rank": 8}
    assert train.get_by_test_id("train-dataset").input_value() == dataset_ref


def test_saved_settings_by_name_and_as_a_file(new_page: Any, tmp_path: Path) -> None:
    page = new_page("ja", "train")
    train = panel(page, "train")
    train.get_by_test_id("train-preset").select_option("quick")
    train.get_by_test_id("train-advanced").locator("summary").click()
    train.get_by_test_id("train-params").fill('{"rank": 8, "learning_rate": 0.001}')
    train.get_by_test_id("train-settings-save").click()
    page.get_by_test_id("settings-name-input").fill("my-settings")
    page.get_by_test_id("settings-name-ok").click()
    train.get_by_test_id("train-params").fill("{}")
    assert train.get_by_test_id("train-param-rank").input_value() == "16"
    train.get_by_test_id("train-settings-list").select_option("my-settings")
    train.get_by_test_id("train-settings-load").click()
    assert overrides(train) == {"rank": 8, "learning_rate": 0.001}
    assert train.get_by_test_id("train-param-rank").input_value() == "8"
    with page.expect_download() as download:
        train.get_by_test_id("train-settings-export").click()
    exported = json.loads(Path(download.value.path()).read_text(encoding="utf-8"))
    assert exported["kind"] == "lora_factory.train_settings" and exported["modality"] == "text"
    assert exported["preset"] == "quick" and exported["params"] == {"rank": 8, "learning_rate": 0.001}

    # kept across a reload; a file read back is listed and applied
    page.reload()
    page.wait_for_selector("#panel-train:not([hidden])")
    train = panel(page, "train")
    assert "my-settings" in train.get_by_test_id("train-settings-list").locator("option").all_inner_texts()
    shared = tmp_path / "shared.json"
    shared.write_text(json.dumps(dict(exported, name="from-file", params={"rank": 4})), encoding="utf-8")
    train.get_by_test_id("train-settings-import").set_input_files(str(shared))
    train.get_by_test_id("train-advanced").locator("summary").click()
    assert overrides(train) == {"rank": 4}
    assert train.get_by_test_id("train-settings-list").input_value() == "from-file"
    # a file of another kind is refused in words
    wrong = tmp_path / "wrong.json"
    wrong.write_text('{"hello": 1}', encoding="utf-8")
    train.get_by_test_id("train-settings-import").set_input_files(str(wrong))
    page.get_by_test_id("notice").filter(has_text="学習設定のファイルではありません").wait_for()
    screenshot(page, "train-saved-settings")


def test_the_wizard_offers_the_method_and_ends_with_its_result_after_a_reload(new_page: Any, server: Server, tmp_path: Path) -> None:
    """Over 20 s: a real (3-step) wizard run, then a reload that must show its result."""
    dataset_ref = upload_dataset_via_api(server, tmp_path, "wiz_rows")
    page = new_page("ja", "wizard")
    wizard = panel(page, "wizard")
    methods = wizard.get_by_test_id("wizard-method").locator("option").evaluate_all("els => els.map(e => e.value)")
    assert methods == ["sft", "dpo", "kto", "orpo", "simpo", "grpo"]
    assert "60 ステップ" in wizard.get_by_test_id("wizard-preset-description").inner_text()
    wizard.get_by_test_id("wizard-model").select_option(server.model_ref)
    wizard.get_by_test_id("wizard-dataset").select_option(dataset_ref)
    wizard.get_by_test_id("wizard-preset").select_option("quick")
    wizard.get_by_test_id("wizard-output-name").fill("wizard_adapter")
    sent: list[dict[str, Any]] = []

    def shorter(route: Any) -> None:
        """What the wizard sent is kept; the run itself is cut to 3 steps (60 take minutes on a busy CI)."""
        body = route.request.post_data_json
        sent.append(body)
        route.continue_(post_data=json.dumps({**body, "params": {**body["params"], "max_steps": 3}}))

    page.route("**/train/start", shorter)
    wizard.get_by_test_id("wizard-method").select_option("sft")
    wizard.get_by_test_id("wizard-start").click()
    page.wait_for_function("() => !document.querySelector('#panel-wizard [data-testid=wizard-job-view]').hidden")
    assert sent[0]["params"] == {} and sent[0]["preset"] == "quick"  # sft is the quick preset's own method
    assert wizard.get_by_test_id("wizard-output-name").input_value() == "wizard_adapter"
    result = wizard.get_by_test_id("wizard-result")
    result.wait_for(state="visible", timeout=240_000)
    assert result.get_attribute("data-adapter") == "wizard_adapter"
    assert "アダプタ「wizard_adapter」ができました" in result.get_by_test_id("wizard-result-message").inner_text()
    assert "意味のない" in result.get_by_test_id("wizard-result-note").inner_text()  # the tiny model is a demo
    screenshot(page, "wizard-result")
    page.reload()
    page.wait_for_selector("#panel-wizard:not([hidden])")
    wizard = panel(page, "wizard")
    wizard.get_by_test_id("wizard-result").wait_for(state="visible")
    assert wizard.get_by_test_id("wizard-resumed").is_visible()
    assert "wizard_adapter" in wizard.get_by_test_id("wizard-result-message").inner_text()
    page.get_by_test_id("lang-toggle").click()
    result = wizard.get_by_test_id("wizard-result")
    assert "the adapter 'wizard_adapter' is ready" in result.get_by_test_id("wizard-result-message").inner_text()
    assert result.get_by_test_id("wizard-result-infer").inner_text() == "Compare in inference"
    screenshot(page, "wizard-result-en")
    result.get_by_test_id("wizard-result-history").click()
    page.wait_for_selector("#panel-history:not([hidden])")


ENGLISH_IN_JAPANESE = ["LoRA rank r", "Conversations longer than", "completions sampled per prompt", "sft: instruction",
                       "shorter rows are removed", "compare whole rows"]


def test_no_english_in_the_japanese_forms(new_page: Any) -> None:
    page = new_page("ja", "train")
    train = panel(page, "train")
    train.get_by_test_id("train-preset").select_option("standard")
    assert "家庭用 GPU" in train.get_by_test_id("train-preset-description").inner_text()
    train.locator("details").filter(has=page.get_by_test_id("train-preset-params")).locator("summary").click()
    labels = train.get_by_test_id("train-preset-table").locator("th").all_inner_texts()
    assert labels[0] == "LoRA ランク (r)" and "rank" not in labels and "num_epochs" not in labels
    train.get_by_test_id("train-advanced").locator("summary").click()
    text = train.inner_text()
    assert not [s for s in ENGLISH_IN_JAPANESE if s in text], [s for s in ENGLISH_IN_JAPANESE if s in text]
    assert train.get_by_test_id("train-param-overlong_rows").locator("option").all_inner_texts() == ["切り詰める", "除外する"]
    page.get_by_test_id("tab-refine").click()
    refine = panel(page, "refine")
    refine.get_by_test_id("refine-op-evol_instruct").check()
    refine.get_by_test_id("refine-op-filter").check()
    options = refine.get_by_test_id("refine-evol_instruct-generator").locator("option").all_inner_texts()
    assert "openai" not in options and "local" not in options and len(options) == 2
    assert "制約を加える" in refine.get_by_test_id("refine-evol_instruct-methods").inner_text()
    text = refine.inner_text()
    assert not [s for s in ENGLISH_IN_JAPANESE if s in text]
    screenshot(page, "refine-japanese")
    # the voice inference form
    page.get_by_test_id("modality-audio").click()
    page.get_by_test_id("tab-infer").click()
    speech = panel(page, "infer")
    speech.locator("label", has_text="読み上げる文").first.wait_for()
    assert "Text *" not in speech.inner_text()
    screenshot(page, "voice-infer-japanese")

    # the same form in English keeps its English words
    page = new_page("en", "train")
    train = panel(page, "train")
    train.get_by_test_id("train-advanced").locator("summary").click()
    assert "LoRA rank r" in train.inner_text()
    assert train.get_by_test_id("train-param-overlong_rows").locator("option").all_inner_texts() == ["cut at max_length", "leave out"]
    page.get_by_test_id("lang-toggle").click()  # and the switch relabels the generated form
    assert "LoRA rank r" not in train.inner_text() and "LoRA ランク (r)" in train.inner_text()


def test_evol_offers_the_models_and_refine_says_format_and_new_version_names(new_page: Any, server: Server, tmp_path: Path) -> None:
    rows = [{"instruction": r["messages"][0]["content"], "output": r["messages"][1]["content"]} for r in CHAT_ROWS]
    path = write_jsonl(tmp_path / "alpaca_src.jsonl", rows)
    with open(path, "rb") as fh:
        res = server.client.post("/api/datasets/upload", data={"modality": "text", "name": "alpaca_src"}, files={"file": (path.name, fh, "application/jsonl")})
    assert res.status_code == 200, res.text
    ref = res.json().get("rel_path") or res.json()["name"]
    page = new_page("ja", "refine")
    refine = panel(page, "refine")
    refine.get_by_test_id("refine-dataset").select_option(ref)
    note = refine.get_by_test_id("refine-format-note")
    assert note.is_visible() and "alpaca" in note.inner_text() and "openai" in note.inner_text()
    refine.get_by_test_id("refine-op-evol_instruct").check()
    refine.get_by_test_id("refine-evol_instruct-generator").select_option(index=1)
    model = refine.get_by_test_id("refine-evol_instruct-generator-model")
    assert model.evaluate("el => el.tagName") == "SELECT"
    assert server.model_ref in option_values(model, including=server.model_ref)
    screenshot(page, "refine-evol-models")

    # a re-run of a refine whose output exists writes "<name>-v2", and says so
    job = server.client.post("/api/datasets/refine", json={"modality": "text", "dataset": ref, "output_name": "rr_set",
                                                           "operations": [{"op": "normalize", "params": {}}]}).json()
    assert server.wait_job(job["job_id"])["status"] == "completed"
    page.get_by_test_id("tab-history").click()
    button = panel(page, "history").get_by_test_id(f"history-rerun-{job['job_id']}")
    button.click()
    notice = page.get_by_test_id("notice").filter(has_text="rr_set-v2")
    notice.wait_for()
    assert "既にある" in notice.inner_text()
    rerun = [j for j in server.client.get("/api/jobs", params={"kind": "refine"}).json()["jobs"] if j.get("parent_job") == job["job_id"]]
    assert rerun and rerun[0]["output_name"] == "rr_set-v2"
    server.wait_job(rerun[0]["job_id"])
    assert re.search(r"rr_set-v2", notice.inner_text())
