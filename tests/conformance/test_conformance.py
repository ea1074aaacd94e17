"""The host contract, for every installed modality: each hook its plugin implements is really called
(pluggy's hook-call monitoring across the server, the job workers and the inference worker), through
the same services the REST API and the CLI use. Built-in modalities bring their scenario in
``lora_factory/plugins/<m>/conformance.py``; the test plugins and the documented example bring theirs here."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from lora_factory.core.plugin_host.host import DEFAULT_PLUGINS
from lora_factory.kit.conformance import Scenario, check_conformance
from tests.audio.conftest import AUDIO_MODELS
from tests.conftest import DUMMY_PLUGIN, REPO

TOY = REPO / "tests" / "host" / "plugins" / "toy_media_plugin.py"
BIGRAM = REPO / "examples" / "bigram_plugin.py"
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")


def _lines(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")
    return folder / name


def _toy_folder(folder: Path) -> Path:
    for stem in ("a", "b"):
        (folder / f"{stem}.png").parent.mkdir(parents=True, exist_ok=True)
        (folder / f"{stem}.png").write_bytes(PNG)
        (folder / f"{stem}.txt").write_text(f"item {stem}", encoding="utf-8")
    return folder


def _dummy_index(home: Path) -> str:
    folder = home / "datasets" / "dummy" / "index"
    _lines(folder, "x.txt", "x\ny\n")
    (folder / "index.json").write_text(json.dumps({"files": ["x.txt"]}))
    return "datasets/dummy/index/index.json"


def _single_file(folder: Path) -> Path:
    header = json.dumps({"__metadata__": {"format": "pt"}}).encode()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.safetensors").write_bytes(len(header).to_bytes(8, "little") + header)
    return folder / "model.safetensors"


TEST_SCENARIOS = {
    "dummy": ([DUMMY_PLUGIN], Scenario(
        modality="dummy", make_dataset=lambda f: _lines(f, "data.txt", "a\nb\nc\n"), preset="fast",
        train_params={"steps": 2}, infer={"messages": [{"role": "user", "content": "abc"}]},
        suite=[{"prompt": "abc", "contains": ["cba"]}], refine_operations=[{"op": "upper", "params": {}}],
        eval_dataset=True, make_index=_dummy_index, export={"target": "txt"})),
    "toymedia": ([TOY], Scenario(
        modality="toymedia", make_dataset=_toy_folder, preset="fast",
        infer={"task": "image", "input": {"prompt": "x"}, "params": {"seed": 1}},
        suite=[{"input": {"prompt": "x"}, "checks": [{"type": "bright"}]}],
        refine_operations=[{"op": "upper", "params": {}}], make_single_file=_single_file)),
    "bigram": ([BIGRAM], Scenario(
        modality="bigram", make_dataset=lambda f: _lines(f, "greet.txt", "こんにちは\nこんばんは\n"),
        infer={"messages": [{"role": "user", "content": "こ"}]})),
}


def builtin_scenarios() -> dict[str, tuple[list[Path], Scenario]]:
    found = {}
    for module in DEFAULT_PLUGINS:
        try:
            scenario = importlib.import_module(f"{module}.conformance").scenario()
        except ModuleNotFoundError:
            continue  # a built-in without a scenario fails test_every_builtin_modality_has_a_scenario
        found[scenario.modality] = ([], scenario)
    return found


ALL = {**builtin_scenarios(), **TEST_SCENARIOS}


def test_every_builtin_modality_has_a_scenario():
    from lora_factory.core.plugin_host.host import PluginHost

    host = PluginHost(load_entry_points=False)
    declared = [m for m, d in host.modalities().items() if d.get("available")]
    assert sorted(declared) == sorted(m for m, (files, _) in ALL.items() if not files)


def test_every_hookspec_is_exercised_by_some_scenario(tmp_path):
    """Each scenario proves the hooks its plugin implements are called; together they cover every spec."""
    import shutil

    from lora_factory.core.plugin_host.hook_docs import hook_functions
    from lora_factory.core.plugin_host.host import PluginHost

    covered: set[str] = set()
    for modality, (files, scenario) in ALL.items():
        plugins_dir = tmp_path / modality
        plugins_dir.mkdir()
        for path in files:
            shutil.copy(path, plugins_dir / Path(path).name)
        host = PluginHost(plugins_dir=plugins_dir, load_entry_points=False)
        owner = host.owner(scenario.modality)
        covered |= set(next(r.hooks for r in host.records if r.name == owner))
    assert covered == {name for name, _ in hook_functions()}


# The built-in modalities' tiny base models come from the session's ``lora-factory tiny-model`` builds
# (shared with the end-to-end tests) and are imported as the base; building them is tested there, by the
# UI tests (the tiny-model job) and by the test plugins' scenarios here, which still build theirs.
TINY_BASES = {"text": (("text", "--out", "models/text/tiny"),),
              "image": (("image", "--out", "models/image/tiny"),),
              "audio": AUDIO_MODELS}


@pytest.mark.parametrize("modality", sorted(ALL))
def test_every_implemented_hook_is_really_called(modality, tmp_path, tiny_workspaces):
    files, scenario = ALL[modality]
    base = None
    if modality in TINY_BASES:
        template = tiny_workspaces.template(*TINY_BASES[modality])
        base = template / TINY_BASES[modality][0][2]
    report = check_conformance(tmp_path / "ws", scenario, plugin_files=files, base_model=base)
    assert report["implemented"], report
    assert not report["missing"], f"hooks of {report['owner']} never called: {report['missing']}"
    assert "describe_modalities" in report["called"] and "train" in report["called"]
