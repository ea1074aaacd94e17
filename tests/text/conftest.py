"""Fixtures for the text plugin's ML tests: one tiny model per session, a memorisable chat set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lora_factory.kit.testing import FakeJobContext, temp_workspace

# Short, distinctive answers the tiny model can memorise in a few dozen steps.
MEMO_ROWS = [
    ("日本の首都は?", "東京です。"),
    ("富士山の高さは?", "3776メートルです。"),
    ("あなたの名前は?", "ロラです。"),
    ("好きな動物は?", "猫が好きです。"),
    ("一番高い山は?", "富士山です。"),
    ("挨拶をして", "こんにちは!"),
    ("1たす1は?", "2です。"),
    ("LoRAとは?", "少ないパラメータで調整する方法です。"),
]




def write_chat_jsonl(path: Path, rows: list[tuple[str, str]], system: str | None = None) -> Path:
    lines = []
    for question, answer in rows:
        messages = [{"role": "system", "content": system}] if system else []
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        lines.append(json.dumps({"messages": messages}, ensure_ascii=False))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lora_factory.plugins.text.tiny_model import build_tiny_text_model

    out = tmp_path_factory.mktemp("tiny") / "tiny-chat"
    build_tiny_text_model(out, seed=0)
    return out


@pytest.fixture(scope="session")
def memo_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_chat_jsonl(tmp_path_factory.mktemp("data") / "memo.jsonl", MEMO_ROWS)


def make_ctx(home: Path, job_id: str = "job1", kind: str = "train", **kwargs) -> FakeJobContext:
    return FakeJobContext(temp_workspace(home), job_id, kind=kind, modality="text", **kwargs)


@pytest.fixture
def ctx_factory():
    """``ctx_factory(home, job_id, kind=..., stop_after=..., resume_checkpoint=...)`` -> the kit's
    ``FakeJobContext`` (a real job context that records ``records``, ``lines``, ``samples``)."""
    return make_ctx


@pytest.fixture(scope="session")
def trained_adapter(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path, memo_dataset: Path) -> dict:
    """One quick-preset run shared by the train, inference, merge and eval tests."""
    from lora_factory.plugins.text.presets import resolve_train_spec
    from lora_factory.plugins.text.train import train_text_adapter

    home = tmp_path_factory.mktemp("ws")
    ctx = make_ctx(home, "shared_train")
    spec = {"base_model": str(tiny_model), "dataset": str(memo_dataset), "dataset_options": {},
            "preset": "quick", "params": {"num_epochs": 30, "save_steps": 1000}, "output_name": "memo",
            "base_model_ref": "models/text/tiny-chat", "dataset_ref": "datasets/text/memo.jsonl"}
    result = train_text_adapter(resolve_train_spec(spec), ctx)
    return {"result": result, "path": Path(ctx.output_dir), "ctx": ctx}
