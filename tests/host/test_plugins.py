"""The plugin contract: documented hooks, a test per hook, drop-ins, broken plugins, the example."""

from __future__ import annotations

import inspect
import os
import re
import shutil
import subprocess
import sys

from fastapi.testclient import TestClient

from lora_factory.app import create_app
from lora_factory.core.plugin_host import hookspecs
from lora_factory.core.plugin_host.host import PluginHost
from tests.conftest import REPO, wait_for


def hook_specs() -> dict[str, inspect.Signature]:
    return {name: inspect.signature(fn) for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
            if hasattr(fn, "lora_factory_spec")}


def plain_signature(name: str, sig: inspect.Signature) -> str:
    """``name(a: str, b: dict[str, Any]) -> ret`` with the annotations as written in hookspecs.py."""
    params = ", ".join(f"{p.name}: {p.annotation}" for p in sig.parameters.values())
    return f"{name}({params}) -> {sig.return_annotation}"


def test_every_hook_is_documented_under_its_exact_signature():
    docs = (REPO / "docs" / "plugins.md").read_text(encoding="utf-8")
    headings = re.findall(r"^### `(.+)`$", docs, flags=re.MULTILINE)
    for name, sig in hook_specs().items():
        assert plain_signature(name, sig) in headings, f"docs/plugins.md lacks `{plain_signature(name, sig)}`"


def test_the_hook_reference_is_generated_from_the_hookspecs():
    """docs/plugins.md is the one place hooks are described, and it says what the docstrings say."""
    from lora_factory.core.plugin_host.hook_docs import current_section, render

    section = current_section((REPO / "docs" / "plugins.md").read_text(encoding="utf-8"))
    assert section == render(), "run: python -m lora_factory.core.plugin_host.hook_docs --write"


def test_builtin_plugins_use_the_kit_not_the_core():
    """A built-in plugin is written as a third party would write one: of LoRA Factory it imports
    ``lora_factory.kit`` only (not the core, not the package root, not another plugin), and so do the
    examples. Its own modules (``lora_factory.plugins.<itself>``) are its own business."""
    import ast

    def allowed(name: str, own: str | None) -> bool:
        if name != "lora_factory" and not name.startswith("lora_factory."):
            return True  # not ours: torch, pydantic, the example's own package ...
        if name == "lora_factory.kit" or name.startswith("lora_factory.kit."):
            return True
        return own is not None and (name == own or name.startswith(own + "."))

    offenders = []
    plugins = REPO / "lora_factory" / "plugins"
    for path in [*plugins.rglob("*.py"), *(REPO / "examples").rglob("*.py")]:
        rel = path.relative_to(REPO)
        own = f"lora_factory.plugins.{rel.parts[2]}" if rel.parts[:2] == ("lora_factory", "plugins") \
            and len(rel.parts) > 3 else None
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
                if node.module == "lora_factory":  # `from lora_factory import kit` is the kit too
                    names = [f"lora_factory.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            offenders += [f"{rel}: {n}" for n in names if not allowed(n, own)]
    assert not offenders, offenders


def test_the_documented_first_plugin_works(tmp_path, server_factory):
    """The 30-line plugin of docs/plugins.md, copied as a newcomer would: demo model, training, chat."""
    docs = (REPO / "docs" / "plugins.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(# <workspace>/plugins/echo_plugin.py.*?)```", docs, flags=re.S).group(1)
    home = tmp_path / "ws"
    (home / "plugins").mkdir(parents=True)
    (home / "plugins" / "echo_plugin.py").write_text(code, encoding="utf-8")
    server = server_factory(home)
    with server.client() as c:
        job = c.post("/api/models/tiny", json={"modality": "echo", "name": "empty"}).json()["job_id"]
        assert wait_for(c, job, ("completed", "failed"))["status"] == "completed"
        files = {"file": ("lines.txt", "おはよう\nこんにちは\n".encode(), "text/plain")}
        assert c.post("/api/datasets/upload", data={"modality": "echo"}, files=files).status_code == 200
        job = c.post("/train/start", json={"base_model": "empty", "dataset": "lines.txt", "output_name": "e",
                                           "modality": "echo"}).json()["job_id"]
        job = wait_for(c, job, ("completed", "failed"))
        assert job["status"] == "completed" and job["max_steps"] == 2, job
        answer = c.post("/api/infer/chat", json={"modality": "echo", "base_model": "empty", "adapter": "e",
                                                 "messages": [{"role": "user", "content": "?"}], "stream": False}).json()
        assert answer["text"] == "おはよう\nこんにちは"


def test_hook_describe_modalities_declares_folders_and_listing(dummy_home):
    app = create_app(dummy_home, start_scheduler=False)
    with TestClient(app) as c:
        mods = {m["id"]: m for m in c.get("/api/modalities").json()["modalities"]}
        assert mods["dummy"]["available"] and mods["dummy"]["label_ja"] == "ダミー"
        assert mods["text"]["available"] and mods["text"]["presets"]
        assert mods["image"]["available"] and mods["image"]["plugin"] == "lora_factory.plugins.image"
        assert all(m["reason"] for m in mods.values() if not m["available"])  # a built-in id nobody serves says why
        paths = c.get("/utils/paths").json()
        assert paths["dummy"]["models"] == str(dummy_home.resolve() / "models" / "dummy")
    for top in ("models", "datasets", "lora_adapters"):
        assert (dummy_home / top / "dummy").is_dir()


def test_broken_drop_in_plugin_is_reported_and_skipped(dummy_home):
    (dummy_home / "plugins" / "broken.py").write_text("import does_not_exist_anywhere\n")
    (dummy_home / "plugins" / "bad_syntax.py").write_text("def (:\n")
    (dummy_home / "plugins" / "bad_modality.py").write_text(
        "from lora_factory import hookimpl\n@hookimpl\ndef describe_modalities():\n    return [{'id': 'Bad Id!'}]\n")
    app = create_app(dummy_home, start_scheduler=False)
    with TestClient(app) as c:
        plugins = {p["name"]: p for p in c.get("/api/plugins").json()["plugins"]}
        assert "ModuleNotFoundError" in plugins["broken"]["error"]
        assert "SyntaxError" in plugins["bad_syntax"]["error"]
        assert "describe_modalities" in plugins["bad_modality"]["error"]
        assert plugins["dummy_plugin"]["ok"] and plugins["dummy_plugin"]["version"] == "0.0.1"
        assert plugins["lora_factory.plugins.text"]["source"] == "builtin"
        assert c.get("/utils/paths").status_code == 200


def test_load_plugins_env_restricts(dummy_home, monkeypatch):
    monkeypatch.setenv("LORA_FACTORY_LOAD_PLUGINS", "dummy_plugin")
    host = PluginHost(plugins_dir=dummy_home / "plugins")
    assert [r.name for r in host.records] == ["dummy_plugin"]
    assert host.modalities()["text"]["available"] is False


def test_example_plugin_trains_and_chats_end_to_end(tmp_path, server_factory):
    home = tmp_path / "ws"
    (home / "plugins").mkdir(parents=True)
    shutil.copy(REPO / "examples" / "bigram_plugin.py", home / "plugins" / "bigram_plugin.py")
    server = server_factory(home)
    with server.client() as c:
        job = c.post("/api/models/tiny", json={"modality": "bigram", "name": "empty"}).json()["job_id"]
        assert wait_for(c, job, ("completed", "failed"))["status"] == "completed"
        files = {"file": ("greet.txt", "こんにちは\nこんばんは\n".encode(), "text/plain")}
        r = c.post("/api/datasets/upload", data={"modality": "bigram"}, files=files)
        assert r.status_code == 200, r.text
        job = c.post("/train/start", json={"base_model": "empty", "dataset": "greet.txt", "output_name": "hello",
                                           "preset": "quick", "modality": "bigram"}).json()["job_id"]
        job = wait_for(c, job, ("completed", "failed"))
        assert job["status"] == "completed" and job["max_steps"] == 6
        answer = c.post("/api/infer/chat", json={"modality": "bigram", "base_model": "empty", "adapter": "hello",
                                                 "messages": [{"role": "user", "content": "こ"}], "stream": False}).json()
        assert answer["text"].startswith("ん")


def test_the_tutorial_package_installs_with_its_entry_point_and_runs_a_job(tmp_path, server_factory):
    """examples/lora-factory-memo as a user installs it: pip builds it into a private folder (nothing is
    installed globally), its own tests pass against that copy, and a server that has it on its path finds it
    through its entry point, makes a demo model, trains an adapter as a job and chats with it."""
    source = tmp_path / "src"
    shutil.copytree(REPO / "examples" / "lora-factory-memo", source,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".pytest_cache"))
    site = tmp_path / "site"
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                          "--disable-pip-version-check", "--target", str(site), str(source)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "memo = lora_factory_memo" in (site / "lora_factory_memo-0.1.0.dist-info" / "entry_points.txt").read_text()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])]))
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(source)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "3 passed" in out.stdout, out.stdout + out.stderr

    home = tmp_path / "ws"
    server = server_factory(home, PYTHONPATH=env["PYTHONPATH"], LORA_FACTORY_NO_ENTRY_POINTS="0")
    with server.client() as c:
        plugins = {p["name"]: p for p in c.get("/api/plugins").json()["plugins"]}
        assert plugins["memo"]["source"] == "entry_point" and plugins["memo"]["version"] == "0.1.0", plugins["memo"]
        job = c.post("/api/models/tiny", json={"modality": "memo", "name": "empty"}).json()["job_id"]
        assert wait_for(c, job, ("completed", "failed"))["status"] == "completed"
        files = {"file": ("qa.tsv", "日本の首都は?\t東京です。\n".encode(), "text/tab-separated-values")}
        assert c.post("/api/datasets/upload", data={"modality": "memo"}, files=files).status_code == 200
        bad = c.post("/train/start", json={"base_model": "empty", "dataset": "qa.tsv", "output_name": "m",
                                           "modality": "memo", "params": {"epochs": 0}})
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "INVALID_TRAIN_PARAMS"
        job = c.post("/train/start", json={"base_model": "empty", "dataset": "qa.tsv", "output_name": "m",
                                           "preset": "thorough", "modality": "memo"}).json()["job_id"]
        job = wait_for(c, job, ("completed", "failed"))
        assert job["status"] == "completed" and job["max_steps"] == 3, job
        answer = c.post("/api/infer/chat", json={"modality": "memo", "base_model": "empty", "adapter": "m", "stream": False,
                                                 "messages": [{"role": "user", "content": "日本の首都は？"}]}).json()
        assert answer["text"] == "東京です。", answer


def test_server_start_imports_no_torch(tmp_path):
    """Nor numpy: the plugins describe their forms (the audio refine operations, the speech parameters) from
    modules of parameters only, so every server start and CLI call saves its import (~0.1 s of CPU)."""
    code = ("import sys; from lora_factory.app import create_app; create_app(sys.argv[1]); "
            "bad = [m for m in ('torch', 'transformers', 'peft', 'diffusers', 'datasets', 'bitsandbytes', 'numpy') "
            "if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_openapi_and_offline_docs(dummy_home):
    app = create_app(dummy_home, start_scheduler=False)
    with TestClient(app) as c:
        assert "/train/start" in c.get("/openapi.json").json()["paths"]
        page = c.get("/docs").text
        assert "/docs-assets/swagger-ui-bundle.js" in page and "cdn" not in page.lower()
        assert c.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
