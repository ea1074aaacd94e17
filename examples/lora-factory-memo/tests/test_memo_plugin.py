"""The memo plugin's own tests: its hooks called as the host calls them, on the kit's fakes, no server."""

from pathlib import Path

import lora_factory_memo as plugin
import pytest

from lora_factory.kit import LoRAFactoryError
from lora_factory.kit.testing import FakeInferenceSession, FakeJobContext, collect_events, temp_workspace

PAIRS = "日本の首都は?\t東京です。\n富士山の高さは?\t3776メートルです。\n"


@pytest.fixture
def ws(tmp_path):
    return temp_workspace(tmp_path / "ws", "memo")


def make_base(ws) -> Path:
    ctx = FakeJobContext(ws, "dl", kind="download", modality="memo")
    plugin.download_model(spec={"source": "tiny"}, ctx=ctx)
    return ctx.output_dir


def write_dataset(ws, text: str = PAIRS) -> Path:
    path = ws.datasets_dir("memo") / "qa.tsv"
    path.write_text(text, encoding="utf-8")
    return path


def chat(request: dict, session) -> dict:
    return collect_events(plugin.infer(request=request, session=session))


def test_train_reports_every_step_and_chat_answers_what_it_learned(ws):
    spec = plugin.resolve_train_spec(spec={"dataset": str(write_dataset(ws)), "preset": "thorough", "params": {}})
    assert spec["params"] == {"epochs": 3, "min_similarity": 0.5}
    ctx = FakeJobContext(ws, "train1", modality="memo")
    assert plugin.train(spec=spec, ctx=ctx) == {"pairs": 2, "stopped": False}
    assert [r["step"] for r in ctx.records] == [1, 2, 3, 4, 5, 6] and ctx.records[-1]["max_steps"] == 6
    assert ctx.records[0]["loss"] == 0.5 and ctx.records[-1]["loss"] == 0.0

    base, session = make_base(ws), FakeInferenceSession(workspace=ws)
    asked = {"base_model": str(base), "messages": [{"role": "user", "content": "日本の首都は?"}]}
    assert chat(dict(asked, adapters=[{"path": str(ctx.output_dir)}]), session)["text"] == "東京です。"
    assert chat(dict(asked, adapters=[]), session)["text"] == "?"  # the base knows nothing
    far = dict(asked, adapters=[{"path": str(ctx.output_dir)}], messages=[{"role": "user", "content": "猫"}])
    assert chat(far, session)["text"] == "?"  # below min_similarity
    assert len(session.cache) == 2  # base alone, base + adapter: each read once


def test_cancel_saves_what_was_learned(ws):
    spec = plugin.resolve_train_spec(spec={"dataset": str(write_dataset(ws)), "params": {"epochs": 5}})
    ctx = FakeJobContext(ws, "train2", modality="memo", stop_after=1)
    assert plugin.train(spec=spec, ctx=ctx) == {"pairs": 1, "stopped": True}
    assert len(ctx.records) == 1 and (ctx.output_dir / "memo.json").is_file()


def test_bad_values_and_bad_datasets_are_named(ws):
    with pytest.raises(LoRAFactoryError) as err:
        plugin.resolve_train_spec(spec={"preset": "quick", "params": {"epochs": 0}})
    assert err.value.code == "INVALID_TRAIN_PARAMS" and err.value.detail["field"] == "epochs"
    with pytest.raises(LoRAFactoryError) as err:
        plugin.resolve_train_spec(spec={"preset": "quick", "params": {"epoch": 2}})
    assert err.value.detail["field"] == "epoch"  # a typo is refused, not ignored
    with pytest.raises(LoRAFactoryError) as err:
        plugin.resolve_train_spec(spec={"preset": "slow", "params": {}})
    assert err.value.code == "UNKNOWN_PRESET"
    assert plugin.inspect_dataset(path=str(write_dataset(ws)))["rows"] == 2
    with pytest.raises(LoRAFactoryError) as err:
        plugin.inspect_dataset(path=str(write_dataset(ws, "質問だけ\n")))
    assert err.value.code == "DATASET_INVALID" and err.value.detail["errors"] == [{"line": 1}]
