"""The text modality's conformance scenario: a memorisable chat set, two training steps, a chat, a
regression suite with eval loss, a normalising refine, a merge, a GGUF export and a ``dataset_info.json`` import."""

from __future__ import annotations

import json
from pathlib import Path

from lora_factory.kit.conformance import Scenario

ROWS = [("日本の首都は?", "東京です。"), ("富士山の高さは?", "3776メートルです。"), ("挨拶をして", "こんにちは!"),
        ("1たす1は?", "2です。")]


def _dataset(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "memo.jsonl"
    path.write_text("\n".join(json.dumps({"instruction": q, "output": a}, ensure_ascii=False) for q, a in ROWS) + "\n",
                    encoding="utf-8")
    return path


def _index(home: Path) -> str:
    folder = home / "datasets" / "text" / "llamafactory"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "demo.json").write_text(json.dumps([{"instruction": q, "input": "", "output": a} for q, a in ROWS],
                                                 ensure_ascii=False), encoding="utf-8")
    (folder / "dataset_info.json").write_text(json.dumps({"demo": {"file_name": "demo.json"}}), encoding="utf-8")
    return "datasets/text/llamafactory/dataset_info.json"


def scenario() -> Scenario:
    return Scenario(
        modality="text",
        make_dataset=_dataset,
        train_params={"max_steps": 2, "save_steps": 1000},
        infer={"messages": [{"role": "user", "content": "日本の首都は?"}], "params": {"max_new_tokens": 4}},
        suite=[{"prompt": "日本の首都は?", "max_length": 500}],
        refine_operations=[{"op": "normalize", "params": {}}],
        eval_dataset=True,
        make_index=_index,
        export={"target": "gguf", "params": {"outtype": "q8_0"}},
        timeout_s=300,
    )
