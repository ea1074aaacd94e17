"""Owner dispatch: a drop-in plugin with no guard clause, next to a real text job, changes nothing;
two plugins declaring the same modality are both named and the documented rule (or the setting) picks."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from lora_factory.app import create_app
from tests.conftest import REPO, wait_for
from tests.text.conftest import MEMO_ROWS, write_chat_jsonl

GREEDY = REPO / "tests" / "host" / "plugins" / "greedy_plugin.py"


def test_a_drop_in_without_guard_cannot_take_over_a_text_job(tmp_path, server_factory, tiny_workspaces):
    home = tmp_path / "ws"
    # lora-factory tiny-model with the greedy plugin dropped in first (built once per session, copied here)
    tiny_workspaces.copy(home, ("text", "--out", "models/text/tiny"), plugins=[GREEDY])
    assert (home / "plugins" / "greedy_plugin.py").is_file()
    write_chat_jsonl(home / "datasets" / "text" / "memo.jsonl", MEMO_ROWS)
    server = server_factory(home)
    with server.client() as c:
        plugins = {p["name"]: p for p in c.get("/api/plugins").json()["plugins"]}
        assert plugins["greedy_plugin"]["ok"] and plugins["greedy_plugin"]["modalities"] == ["greedy"]
        info = c.get("/api/datasets/text/memo.jsonl").json()
        assert info["format"] == "openai" and info["rows"] == len(MEMO_ROWS)
        assert c.get("/api/models?modality=text").json()["models"][0]["architecture"] != "Hijacked"
        job = c.post("/train/start", json={"base_model": "tiny", "dataset": "memo.jsonl", "output_name": "mine",
                                           "preset": "quick", "params": {"max_steps": 2}}).json()["job_id"]
        job = wait_for(c, job, ("completed", "failed"), timeout=180)
        assert job["status"] == "completed", job
        assert "hijacked" not in json.dumps(job["result"]) and job["spec"]["params"]["max_steps"] == 2
        adapter = home / "lora_adapters" / "text" / "mine"
        assert (adapter / "adapter_config.json").is_file() and not (adapter / "hijacked.txt").exists()
        answer = c.post("/api/infer/chat", json={"base_model": "tiny", "adapter": "mine", "stream": False,
                                                 "messages": [{"role": "user", "content": "日本の首都は?"}],
                                                 "params": {"max_new_tokens": 4}}).json()
        assert "HIJACKED" not in answer["text"]


def test_two_plugins_declaring_one_modality_are_named_and_the_setting_picks(tmp_path):
    home = tmp_path / "ws"
    (home / "plugins").mkdir(parents=True)
    (home / "plugins" / "other_text.py").write_text(
        "from lora_factory import hookimpl\n"
        "@hookimpl\n"
        "def describe_modalities():\n"
        "    return [{'id': 'text', 'label_ja': '別テキスト', 'label_en': 'Other text'}]\n"
        "@hookimpl\n"
        "def inspect_model(modality, path):\n"
        "    return {'architecture': 'OtherText'}\n", encoding="utf-8")
    (home / "models" / "text" / "m").mkdir(parents=True)
    with TestClient(create_app(home, start_scheduler=False)) as c:
        body = c.get("/api/plugins").json()
        conflict = body["conflicts"][0]
        assert conflict["modality"] == "text" and conflict["owner"] == "lora_factory.plugins.text"
        assert set(conflict["plugins"]) == {"lora_factory.plugins.text", "other_text"}
        other = next(p for p in body["plugins"] if p["name"] == "other_text")
        assert other["shadowed"] == ["text"] and other["modalities"] == []
        assert c.get("/api/models?modality=text").json()["models"][0].get("architecture") != "OtherText"
        assert c.put("/api/settings", json={"modality_owners": {"text": "other_text"}}).status_code == 200
        mods = {m["id"]: m for m in c.get("/api/modalities").json()["modalities"]}
        assert mods["text"]["plugin"] == "other_text" and mods["text"]["label_en"] == "Other text"
        assert mods["text"]["also_declared_by"] == ["lora_factory.plugins.text"]
        assert c.get("/api/models?modality=text").json()["models"][0]["architecture"] == "OtherText"
