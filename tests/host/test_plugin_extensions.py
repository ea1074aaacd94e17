"""Plugins extend the server, the CLI and the UI (``register_routes``, ``register_commands``,
``register_ui``), behind the same guard as the host's routes; and the host depends on no plugin."""

from __future__ import annotations

import ast
import json

import pytest
from fastapi.testclient import TestClient

from lora_factory.app import create_app
from lora_factory.cli import main
from lora_factory.routes.guard import TOKEN_FILE
from tests.conftest import REPO

EVIL = "http://evil.example:8081"

EXTENDING_PLUGIN = '''
from pathlib import Path

from lora_factory.kit import hookimpl

HERE = Path(__file__).parent / "greeter_static"


@hookimpl
def register_routes(register, workspace):
    from fastapi import APIRouter

    router = APIRouter()

    @router.get("/hello")
    def hello():
        return {"hello": workspace.home.name}

    @router.post("/note")
    def note(body: dict):
        (workspace.home / "note.txt").write_text(body["text"], encoding="utf-8")
        return {"ok": True}

    register(router)
    register(router, modality="text")  # not this plugin's modality: refused


@hookimpl
def register_commands(register):
    def configure(parser):
        parser.add_argument("name")

    def run(args, workspace):
        print(f"hello {args.name} from {workspace.home.name}")
        return 3

    register("greet", run, help="say hello", configure=configure)
    register("train", run)  # the host's own: refused


@hookimpl
def register_ui(register):
    register(HERE, script="greeter.js")
    register(HERE, script="../greeter_plugin.py")  # outside its folder: refused
'''


@pytest.fixture
def greeter_home(dummy_home):
    plugins = dummy_home / "plugins"
    (plugins / "greeter_plugin.py").write_text(EXTENDING_PLUGIN, encoding="utf-8")
    (plugins / "greeter_static").mkdir()
    (plugins / "greeter_static" / "greeter.js").write_text("export const greeting = 'hi';\n", encoding="utf-8")
    return dummy_home


def _errors(client: TestClient) -> list[str]:
    plugins = {p["name"]: p for p in client.get("/api/plugins").json()["plugins"]}
    return plugins["greeter_plugin"]["extension_errors"]


def test_hook_register_routes_under_the_plugin_prefix_behind_the_guard(greeter_home):
    with TestClient(create_app(greeter_home, start_scheduler=False)) as c:
        assert c.get("/api/plugins/greeter_plugin/hello").json() == {"hello": greeter_home.name}
        assert c.post("/api/plugins/greeter_plugin/note", json={"text": "ok"}).json() == {"ok": True}
        # a page on another site cannot make the browser post to a plugin's route
        r = c.post("/api/plugins/greeter_plugin/note", json={"text": "evil"}, headers={"Origin": EVIL})
        assert r.status_code == 403 and r.json()["error"]["code"] == "CROSS_ORIGIN_REFUSED"
        assert (greeter_home / "note.txt").read_text(encoding="utf-8") == "ok"
        # scoped to a modality it does not own: not mounted, and said why
        assert c.get("/api/text/hello").status_code == 404
        assert any("modality 'text' is not served by this plugin" in e for e in _errors(c))


def test_a_plugin_route_needs_the_token_beyond_loopback(greeter_home):
    app = create_app(greeter_home, start_scheduler=False, bind_host="0.0.0.0", port=8081)
    token = (greeter_home / TOKEN_FILE).read_text().strip()
    with TestClient(app, base_url="http://192.168.1.20:8081") as c:
        assert c.get("/api/plugins/greeter_plugin/hello").json()["error"]["code"] == "TOKEN_REQUIRED"
        assert c.post("/api/plugins/greeter_plugin/note", json={"text": "x"}).status_code == 401
        assert not (greeter_home / "note.txt").exists()
        ok = c.get("/api/plugins/greeter_plugin/hello", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200 and ok.json() == {"hello": greeter_home.name}


def test_hook_register_commands_adds_a_cli_command(greeter_home, capsys):
    assert main(["--home", str(greeter_home), "greet", "world"]) == 3
    assert capsys.readouterr().out.strip() == f"hello world from {greeter_home.name}"
    assert main(["greet", "again", "--home", str(greeter_home)]) == 3  # --home after the command too
    with pytest.raises(SystemExit):  # the host's train keeps its own arguments: the plugin's was refused
        main(["--home", str(greeter_home), "train", "x"])
    capsys.readouterr()
    assert main(["plugins", "--home", str(greeter_home)]) == 0
    listing = capsys.readouterr().out
    assert "refused: register_commands: the command 'train' already exists" in listing
    assert "refused: register_ui:" in listing and "outside" in listing


def test_hook_register_ui_serves_the_static_folder_and_lists_the_module(greeter_home):
    with TestClient(create_app(greeter_home, start_scheduler=False)) as c:
        modules = [m for m in c.get("/api/ui/modules").json()["modules"] if m["plugin"] == "greeter_plugin"]
        assert modules == [{"plugin": "greeter_plugin", "url": "/static/plugins/greeter_plugin/greeter.js",
                            "static": "/static/plugins/greeter_plugin/", "modality": None}]
        r = c.get(modules[0]["url"])
        assert r.status_code == 200 and "greeting" in r.text
        assert c.get("/static/plugins/greeter_plugin/../greeter_plugin.py").status_code == 404
        assert any("outside" in e for e in _errors(c))
        # the built-in audio plugin's voice studio comes the same way, for its modality
        audio = [m for m in c.get("/api/ui/modules").json()["modules"] if m["modality"] == "audio"]
        assert [m["url"].rsplit("/", 1)[-1] for m in audio] == ["voice.js"]
        assert "registerTab" in c.get(audio[0]["url"]).text
        assert c.get("/static/js/app.js").status_code == 200  # the host's UI is still served beside


def test_audio_dictionary_routes_come_from_the_plugin_and_keep_their_paths(tmp_path):
    with TestClient(create_app(tmp_path / "ws", start_scheduler=False)) as c:
        assert c.get("/api/audio/dictionary").json() == {"entries": []}
        entries = [{"surface": "東京", "reading": "とーきょー"}]
        assert c.put("/api/audio/dictionary", json={"entries": entries}).json()["entries"][0]["reading"] == "とーきょー"
        bad = c.put("/api/audio/dictionary", json={"entries": [{"surface": "", "reading": "あ"}]})
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "DICTIONARY_INVALID"
        read = c.post("/api/audio/read", json={"text": "東京に行きます。"}).json()
        assert read["normalized"].startswith("とーきょー")
        assert c.put("/api/audio/dictionary", json={"entries": entries}, headers={"Origin": EVIL}).status_code == 403
        tags = {op.get("tags", [""])[0] for p in c.get("/openapi.json").json()["paths"].values() for op in p.values()}
        assert "plugin: lora_factory.plugins.audio" in tags


def test_audio_dictionary_cli_command(tmp_path, capsys):
    home = str(tmp_path / "ws")
    assert main(["--home", home, "audio-dictionary", "add", "東京", "とーきょー"]) == 0
    assert json.loads(capsys.readouterr().out)["entries"] == [{"surface": "東京", "reading": "とーきょー", "note": ""}]
    assert main(["--home", home, "audio-dictionary", "read", "東京に行きます。"]) == 0
    assert json.loads(capsys.readouterr().out)["normalized"].startswith("とーきょー")
    assert main(["--home", home, "audio-dictionary", "add", "x", "!!!"]) == 2
    assert "DICTIONARY_INVALID" in capsys.readouterr().err
    assert main(["--home", home, "audio-dictionary", "remove", "東京"]) == 0
    assert json.loads(capsys.readouterr().out)["entries"] == []
    with TestClient(create_app(home, start_scheduler=False)) as c:  # the same file as the REST API's
        assert c.get("/api/audio/dictionary").json() == {"entries": []}


def test_openai_audio_routes_find_their_modality_in_the_plugins_descriptions(dummy_home, monkeypatch):
    monkeypatch.setenv("LORA_FACTORY_LOAD_PLUGINS", "dummy_plugin")  # no plugin serves speech
    with TestClient(create_app(dummy_home, start_scheduler=False)) as c:
        r = c.post("/v1/audio/speech", json={"model": "base", "input": "こんにちは"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "TASK_UNAVAILABLE"
        mods = {m["id"]: m for m in c.get("/api/modalities").json()["modalities"]}
        # the labels of a built-in left out come from its own description, not from the host
        assert not mods["audio"]["available"] and (mods["audio"]["label_ja"], mods["audio"]["label_en"]) == ("音声", "Audio")
        assert c.get("/api/audio/dictionary").status_code == 404  # its routes came with it


HOST_FILES = [*(REPO / "lora_factory" / "core").rglob("*.py"), *(REPO / "lora_factory" / "routes").rglob("*.py"),
              REPO / "lora_factory" / "app.py", REPO / "lora_factory" / "cli.py", REPO / "lora_factory" / "cli_generate.py"]


def test_the_host_imports_no_plugin():
    offenders = []
    for path in HOST_FILES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            offenders += [f"{path.relative_to(REPO)}: {n}" for n in names if n.startswith("lora_factory.plugins")]
    assert not offenders, offenders


def test_the_host_names_no_builtin_plugin_but_in_default_plugins():
    """Only ``DEFAULT_PLUGINS`` names a built-in plugin: no other string of the host (code or docstring)."""
    offenders = []
    for path in HOST_FILES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        allowed = {id(c) for node in ast.walk(tree) if isinstance(node, ast.AnnAssign | ast.Assign)
                   and "DEFAULT_PLUGINS" in ast.unparse(node.targets[0] if isinstance(node, ast.Assign) else node.target)
                   for c in ast.walk(node)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in allowed:
                if "lora_factory.plugins" in node.value:
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.value!r}")
    assert not offenders, offenders


def test_the_documented_extension_example_works(dummy_home, capsys):
    """The greeter of docs/plugins.md, copied as a newcomer would: its route, its command, its tab's module."""
    import re

    docs = (REPO / "docs" / "plugins.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(# <workspace>/plugins/greeter.py.*?)```", docs, flags=re.S).group(1)
    js = re.search(r"```js\n(// <workspace>/plugins/greeter_static/greeter.js.*?)```", docs, flags=re.S).group(1)
    (dummy_home / "plugins" / "greeter.py").write_text(code, encoding="utf-8")
    (dummy_home / "plugins" / "greeter_static").mkdir()
    (dummy_home / "plugins" / "greeter_static" / "greeter.js").write_text(js, encoding="utf-8")
    with TestClient(create_app(dummy_home, start_scheduler=False)) as c:
        assert c.get("/api/plugins/greeter/hello").json() == {"workspace": dummy_home.name}
        assert "/static/plugins/greeter/greeter.js" in [m["url"] for m in c.get("/api/ui/modules").json()["modules"]]
        assert "registerTab" in c.get("/static/plugins/greeter/greeter.js").text
    assert main(["--home", str(dummy_home), "greet", "world"]) == 0
    assert capsys.readouterr().out.strip() == "hello world"


def test_every_hook_has_a_test():
    """Each hookspec has a ``test_hook_<name>`` test somewhere in tests/ (datasette's rule)."""
    import re

    from lora_factory.core.plugin_host.hook_docs import hook_functions

    source = "\n".join(p.read_text(encoding="utf-8") for p in (REPO / "tests").rglob("test_*.py"))
    missing = {name for name, _ in hook_functions() if not re.search(rf"def test_hook_{name}[_(]", source)}
    assert not missing, f"write a test_hook_<name> test for: {sorted(missing)}"


REWARD_PLUGIN = '''
from lora_factory.kit import hookimpl


@hookimpl
def register_reward_functions(register):
    register("shout", lambda prompts, completions, answers: [float(c.endswith("!")) for c in completions],
             description_ja="感嘆符で終われば 1", description_en="1 when it ends with !")
    register("exact_answer", lambda p, c, a: [0.0] * len(c))  # a built-in's name: refused
    register("no spaces", lambda p, c, a: [0.0] * len(c))  # not a name: refused
'''


def test_hook_register_reward_functions_lists_and_serves_a_drop_in_reward(dummy_home, capsys):
    """A drop-in ``.py`` with only this hook adds a reward: GET /api/rewards lists it beside the text plugin's
    built-ins with its plugin, the kit hands it to the method by name, and taken or malformed names are refused
    and listed with the plugin (in the API and in the job log)."""
    from lora_factory.core.storage.workspace import Workspace
    from lora_factory.kit.rewards import plugin_rewards

    (dummy_home / "plugins" / "reward_plugin.py").write_text(REWARD_PLUGIN, encoding="utf-8")
    with TestClient(create_app(dummy_home, start_scheduler=False)) as c:
        rewards = {r["name"]: r for r in c.get("/api/rewards").json()["rewards"]}
        assert rewards["shout"] == {"name": "shout", "plugin": "reward_plugin", "source": "plugin", "modality": None,
                                    "description_ja": "感嘆符で終われば 1", "description_en": "1 when it ends with !"}
        assert rewards["exact_answer"]["source"] == "builtin" and rewards["exact_answer"]["modality"] == "text"
        assert {"numeric_answer", "regex", "length", "japanese_ratio", "json", "judge"} <= set(rewards)
        plugins = {p["name"]: p for p in c.get("/api/plugins").json()["plugins"]}
        errors = plugins["reward_plugin"]["extension_errors"]
        assert any("'exact_answer' already exists" in e for e in errors)
        assert any("'no spaces' is not a reward name" in e for e in errors)
    assert main(["plugins", "--home", str(dummy_home)]) == 0
    assert "refused: register_reward_functions: the reward 'exact_answer' already exists" in capsys.readouterr().out
    lines: list[str] = []
    found = plugin_rewards(Workspace(dummy_home), taken={"exact_answer"}, log=lines.append)
    assert sorted(found) == ["dummy_reversed", "shout"]  # the dummy plugin (in dummy_home) registers one too
    assert found["shout"]([""], ["やった!", "はい"], ["", ""]) == [1.0, 0.0]
    assert found["dummy_reversed"](["abc", "abc"], ["cba", "abc"], ["", ""]) == [1.0, 0.0]
    assert any("reward_plugin" in line and "'exact_answer' already exists" in line for line in lines)
