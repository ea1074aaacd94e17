"""An example third-party plugin: a character-bigram "language model" modality, no torch needed.

Drop this file into ``<workspace>/plugins/`` (or publish it with an entry point in the
``lora_factory`` group) and the modality ``bigram`` appears in the UI, the API and the CLI next to the
built-in ones: its own folders, presets, dataset validation, training as a job with live progress and
cancel, and chat through ``/api/infer/chat`` and ``/v1/chat/completions``.

What it trains is deliberately small but real: the "base model" is a folder with ``counts.json``
(character bigram counts, possibly empty) and the "adapter" is the counts learned from a ``.txt``
dataset, added on top of the base at inference time. A test loads this file, so it cannot rot.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from lora_factory.kit import InferenceSession, JobContext, LoRAFactoryError, hookimpl

__version__ = "1.0.0"
MODALITY = "bigram"


@hookimpl
def describe_modalities() -> list[dict[str, Any]]:
    """Declare the modality; the host creates models/bigram, datasets/bigram, lora_adapters/bigram."""
    return [{
        "id": MODALITY,
        "label_ja": "文字バイグラム(サンプル)",
        "label_en": "Character bigram (example)",
        "presets": {"quick": {"epochs": 3, "smoothing": 0.1}, "standard": {"epochs": 10, "smoothing": 0.01}},
        "default_preset": "quick",
        "dataset_formats": ["text"],
        "dataset_extensions": [".txt"],
        "supports": ["chat", "tiny_model"],
    }]


@hookimpl
def resolve_train_spec(modality: str, spec: dict[str, Any]) -> dict[str, Any] | None:
    """Merge the preset with the user's params and refuse bad values before the job is queued."""
    if modality != MODALITY:
        return None
    presets = describe_modalities()[0]["presets"]
    if spec.get("preset") not in presets:
        raise LoRAFactoryError("UNKNOWN_PRESET", f"不明なプリセット: {spec.get('preset')}",
                               f"Unknown preset: {spec.get('preset')}", detail={"known": list(presets)})
    params = dict(presets[spec["preset"]]) | dict(spec.get("params") or {})
    if not isinstance(params.get("epochs"), int) or params["epochs"] < 1:
        raise LoRAFactoryError("INVALID_TRAIN_PARAMS", "epochs は 1 以上の整数です。", "epochs must be an integer >= 1.",
                               detail={"field": "epochs"})
    return dict(spec, params=params)


@hookimpl
def download_model(modality: str, spec: dict[str, Any], ctx: JobContext) -> dict[str, Any] | None:
    """Only the offline demo "model" (empty counts) is offered; a real plugin would fetch weights here."""
    if modality != MODALITY:
        return None
    if spec.get("source") != "tiny":
        raise LoRAFactoryError("UNSUPPORTED_SOURCE", "このサンプルはデモ用モデルの作成のみ対応です。",
                               "This example only builds the demo model.")
    (ctx.output_dir / "counts.json").write_text("{}", encoding="utf-8")
    ctx.progress(1, 1)
    return {"path": str(ctx.output_dir)}


@hookimpl
def inspect_dataset(modality: str, path: str, options: dict[str, Any]) -> dict[str, Any] | None:
    """Validate a UTF-8 text file: every non-empty line is a training sample."""
    if modality != MODALITY:
        return None
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise LoRAFactoryError("DATASET_ENCODING", "UTF-8 で保存してください。", "Save the file as UTF-8.",
                               http_status=422, detail={"errors": [{"line": 1, "reason": str(exc)}]}) from exc
    samples = [line for line in lines if line.strip()]
    if not samples:
        raise LoRAFactoryError("DATASET_EMPTY", "データセットが空です。", "The dataset is empty.", http_status=422)
    return {"format": "text", "rows": len(samples), "stats": {"rows": len(samples)},
            "preview": [{"text": s} for s in samples[: int(options.get("preview_rows", 5))]]}


@hookimpl
def inspect_model(modality: str, path: str) -> dict[str, Any] | None:
    if modality != MODALITY:
        return None
    counts = json.loads((Path(path) / "counts.json").read_text(encoding="utf-8"))
    return {"architecture": "CharBigram", "parameters": sum(len(v) for v in counts.values())}


@hookimpl
def train(modality: str, spec: dict[str, Any], ctx: JobContext) -> dict[str, Any] | None:
    """Count bigrams epoch by epoch (one step per line), reporting the running negative log-likelihood."""
    if modality != MODALITY:
        return None
    import math

    params = spec["params"]
    lines = [line for line in Path(spec["dataset"]).read_text(encoding="utf-8").splitlines() if line.strip()]
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    max_steps = params["epochs"] * len(lines)
    step = 0
    nll = 0.0
    for _epoch in range(params["epochs"]):
        for line in lines:
            if ctx.should_stop():
                break
            text = "^" + line + "$"
            nll = 0.0
            for a, b in zip(text, text[1:]):
                total = sum(counts[a].values())
                nll -= math.log((counts[a][b] + params["smoothing"]) / (total + params["smoothing"] * 256))
                counts[a][b] += 1
            step += 1
            ctx.progress(step, max_steps, loss=nll / max(len(text) - 1, 1))
            time.sleep(float(params.get("step_delay", 0)))
    (ctx.output_dir / "adapter_counts.json").write_text(json.dumps(counts, ensure_ascii=False), encoding="utf-8")
    return {"final_loss": nll, "steps": step, "stopped": ctx.should_stop()}


@hookimpl
def infer(modality: str, request: dict[str, Any], session: InferenceSession) -> Any:
    """Continue the last message character by character from base + adapter counts (streamed)."""
    if modality != MODALITY:
        return None
    key = (request["base_model"], request.get("adapter"))
    if key not in session.cache:  # loaded once per process, like a real model
        counts: dict[str, Counter[str]] = defaultdict(Counter)
        for source in [Path(request["base_model"]) / "counts.json"] + (
                [Path(request["adapter"]) / "adapter_counts.json"] if request.get("adapter") else []):
            for a, row in json.loads(source.read_text(encoding="utf-8")).items():
                counts[a].update(row)
        session.cache[key] = counts
    counts = session.cache[key]
    params = request.get("params") or {}
    rng = random.Random(params.get("seed", 0))
    prompt = request["messages"][-1]["content"] if request.get("messages") else request.get("prompt", "")

    def events() -> Any:
        current, out = (prompt[-1:] or "^"), []
        for _ in range(int(params.get("max_new_tokens", 40))):
            row = counts.get(current)
            if not row:
                break
            chars, weights = zip(*row.items())
            current = chars[weights.index(max(weights))] if not params.get("temperature") else rng.choices(chars, weights)[0]
            if current == "$":
                break
            out.append(current)
            yield {"type": "token", "text": current}
        yield {"type": "done", "text": "".join(out), "usage": {"prompt_tokens": len(prompt), "completion_tokens": len(out)}}

    return events()
