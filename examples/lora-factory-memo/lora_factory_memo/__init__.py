"""The "memo" modality, LoRA Factory's tutorial plugin: question/answer pairs learned by heart.

The base "model" is ``memo.json`` (pairs it already knows: none for the demo model); training reads a
``.tsv`` dataset (``question<TAB>answer`` per line) epoch by epoch and saves the pairs as the adapter;
chat answers the known question closest to the user's (the last adapter's ``min_similarity`` decides
when to answer "?"). The version the host shows is the package's (``pyproject.toml``). Small, but every piece is the real thing:
presets validated once in the server, progress, cancel, atomic writes, streamed tokens, a cache.
"""

import json
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from lora_factory.kit import InferenceSession, JobContext, LoRAFactoryError, files, hookimpl, media, presets


class MemoParams(BaseModel, extra="forbid"):  # a typo in a parameter name is an error, not ignored
    epochs: int = Field(1, ge=1, le=100)
    min_similarity: float = Field(0.3, ge=0.0, le=1.0, description="below this, answer '?'")


PRESETS = {"quick": {}, "thorough": {"epochs": 3, "min_similarity": 0.5}}


@hookimpl
def describe_modalities() -> list[dict[str, Any]]:
    return [{"id": "memo", "label_ja": "暗記メモ", "label_en": "Memo", "presets": PRESETS, "default_preset": "quick",
             "dataset_extensions": [".tsv"], "inference_kinds": ["chat"], "supports": ["chat", "tiny_model"],
             "train_params_schema": presets.schema_for(MemoParams)}]


def read_pairs(path: str | Path) -> list[tuple[str, str]]:
    rows = [line.split("\t") for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    bad = [n for n, row in enumerate(rows, 1) if len(row) != 2] or ([] if rows else [1])
    if bad:
        raise LoRAFactoryError("DATASET_INVALID", f"{bad[0]} 行目が「質問<TAB>答え」ではありません。", f"Line {bad[0]}: "
                               "not question<TAB>answer.", 422, detail={"errors": [{"line": n} for n in bad]})
    return [(q.strip(), a.strip()) for q, a in rows]


@hookimpl
def inspect_dataset(path: str) -> dict[str, Any]:
    pairs = read_pairs(path)
    return {"format": "tsv", "rows": len(pairs), "preview": [{"text": f"{q} → {a}"} for q, a in pairs[:5]]}


@hookimpl
def download_model(spec: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    files.write_text_atomic(ctx.output_dir / "memo.json", json.dumps({"pairs": {}}))  # the demo model knows nothing
    ctx.progress(1, 1)
    return {"source": spec["source"]}


@hookimpl
def resolve_train_spec(spec: dict[str, Any]) -> dict[str, Any]:  # in the server: a bad value is a 4xx at once
    params = presets.resolve_params(MemoParams, PRESETS, spec.get("preset") or "quick", spec.get("params"))
    return dict(spec, params=params.model_dump())


@hookimpl
def train(spec: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    params = presets.validate_params(MemoParams, spec["params"])
    pairs = read_pairs(spec["dataset"])
    learned: dict[str, str] = {}
    steps = [pair for _ in range(params.epochs) for pair in pairs]
    for step, (question, answer) in enumerate(steps, 1):
        if ctx.should_stop():
            break
        learned[question] = answer
        ctx.progress(step, len(steps), loss=1 - len(learned) / len(dict(pairs)))  # share not yet known
    files.write_text_atomic(ctx.output_dir / "memo.json", json.dumps(
        {"pairs": learned, "min_similarity": params.min_similarity}, ensure_ascii=False))
    return {"pairs": len(learned), "stopped": ctx.should_stop()}


@hookimpl
def infer(request: dict[str, Any], session: InferenceSession) -> Any:
    key = (request["base_model"], *(a["path"] for a in request["adapters"]))  # the base, then each adapter
    if key not in session.cache:  # read once per process, like a real model
        tables = [json.loads(Path(folder, "memo.json").read_text(encoding="utf-8")) for folder in key]
        session.cache[key] = ({q: a for t in tables for q, a in t["pairs"].items()}, tables[-1].get("min_similarity", 0.3))
    pairs, threshold = session.cache[key]
    score, best = max(((SequenceMatcher(None, q, request["messages"][-1]["content"]).ratio(), q) for q in pairs),
                      default=(0.0, None))
    answer = pairs[best] if best is not None and score >= threshold else "?"
    return iter([*(media.token_event(ch) for ch in answer), media.done_event(text=answer)])
