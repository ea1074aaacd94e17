"""The README.md and ``training_config.json`` written next to every adapter, for every modality.

Why: an adapter folder copied out of the workspace must still say what it is (base model, dataset
version, parameters, results, library versions), in both languages, and the Hugging Face Hub must
understand its header. This module is the one place that writes that metadata.
"""

from __future__ import annotations

import importlib.metadata as md
import json
from pathlib import Path
from typing import Any

from lora_factory.core.storage.workspace import write_text_atomic

DEFAULT_LIBRARIES = ("torch", "transformers", "peft", "diffusers", "bitsandbytes", "lora-factory")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def library_versions(names: tuple[str, ...] | list[str] = DEFAULT_LIBRARIES) -> dict[str, str]:
    """Versions that decide whether a run can be reproduced (installed ones only)."""
    out = {}
    for name in names:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    return out


def render_model_card(
    title: str,
    base_model: str,
    dataset: str | None,
    params: dict[str, Any],
    metrics: dict[str, Any],
    versions: dict[str, str],
    kind: str = "LoRA adapter",
    library_name: str | None = None,
    usage: str | None = None,
    tags: list[str] | None = None,
    extra_sections: dict[str, str] | None = None,
) -> str:
    """Markdown with a YAML header that the Hugging Face Hub understands (``base_model``, ``library_name``).

    :param usage: a code block (without fences) showing how to load the result with plain libraries.
    :param extra_sections: heading -> markdown body, appended before the versions.
    """
    library = library_name or ("peft" if kind == "LoRA adapter" else "transformers")
    all_tags = ["lora-factory", "lora", *(tags or [])]
    lines = [
        "---",
        f"base_model: {json.dumps(base_model, ensure_ascii=False)}",
        f"library_name: {library}",
        f"tags: [{', '.join(all_tags)}]",
        "---",
        "",
        f"# {title}",
        "",
        f"LoRA Factory で作成した {'LoRA アダプタ' if kind == 'LoRA adapter' else 'マージ済みモデル'}です。"
        f" / A {kind} made with LoRA Factory.",
        "",
        "| 項目 / item | 値 / value |",
        "|---|---|",
        f"| ベースモデル / base model | `{base_model}` |",
    ]
    if dataset:
        lines.append(f"| データセット / dataset | `{dataset}` |")
    lines += ["", "## パラメータ / parameters", "", "| key | value |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in params.items()]
    if metrics:
        lines += ["", "## 結果 / metrics", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in metrics.items() if v is not None]
    for heading, body in (extra_sections or {}).items():
        lines += ["", f"## {heading}", "", body.rstrip()]
    if versions:
        lines += ["", "## バージョン / versions", ""]
        lines += [f"- {k} {v}" for k, v in versions.items()]
    if usage:
        lines += ["", "## 使い方 / usage", "", "```python", usage.strip("\n"), "```"]
    return "\n".join(lines) + "\n"


def write_adapter_metadata(
    out_dir: Path,
    *,
    modality: str,
    spec: dict[str, Any],
    params: dict[str, Any],
    result: dict[str, Any],
    usage: str | None = None,
    library_name: str = "peft",
    libraries: tuple[str, ...] | list[str] = DEFAULT_LIBRARIES,
    card_metrics: tuple[str, ...] | None = None,
    extra: dict[str, Any] | None = None,
    extra_sections: dict[str, str] | None = None,
    tags: list[str] | None = None,
) -> dict[str, Any]:
    """Write ``training_config.json`` and ``README.md`` into ``out_dir`` (atomically); return the config.

    ``training_config.json`` is what the host reads back for listings (base model, dataset, preset,
    parameters, result) and what a re-run or a comparison needs; keep its keys stable.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    versions = library_versions(libraries)
    config = {
        "modality": modality,
        "preset": spec.get("preset"),
        "params": params,
        "base_model": spec.get("base_model_ref") or str(spec.get("base_model")),
        "dataset": spec.get("dataset_ref") or (str(spec["dataset"]) if spec.get("dataset") else None),
        "dataset_options": spec.get("dataset_options") or {},
        "output_name": spec.get("output_name"),
        "result": result,
        "versions": versions,
        **(extra or {}),
    }
    write_text_atomic(out_dir / "training_config.json", json.dumps(config, ensure_ascii=False, indent=2, default=str))
    metrics = {k: result.get(k) for k in card_metrics} if card_metrics else dict(result)
    card = render_model_card(
        title=str(spec.get("output_name") or out_dir.name),
        base_model=config["base_model"],
        dataset=config["dataset"],
        params=params,
        metrics=metrics,
        versions=versions,
        library_name=library_name,
        usage=usage,
        tags=tags,
        extra_sections=extra_sections,
    )
    write_text_atomic(out_dir / "README.md", card)
    return config
