"""The README.md written next to every adapter (and merged model).

Why: an adapter folder copied out of the workspace must still say what it is: which base model,
which dataset version, which parameters, and how well it trained, in both languages.
"""

from __future__ import annotations

import json
from typing import Any


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def render_model_card(
    title: str,
    base_model: str,
    dataset: str | None,
    params: dict[str, Any],
    metrics: dict[str, Any],
    versions: dict[str, str],
    kind: str = "LoRA adapter",
) -> str:
    """Markdown with a YAML header that the Hugging Face Hub understands (``base_model``, ``library_name``)."""
    lines = [
        "---",
        f"base_model: {json.dumps(base_model, ensure_ascii=False)}",
        "library_name: peft" if kind == "LoRA adapter" else "library_name: transformers",
        "tags: [lora-factory, lora]",
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
    if versions:
        lines += ["", "## バージョン / versions", ""]
        lines += [f"- {k} {v}" for k, v in versions.items()]
    if kind == "LoRA adapter":
        lines += [
            "",
            "## 使い方 / usage",
            "",
            "```python",
            "from transformers import AutoModelForCausalLM, AutoTokenizer",
            "from peft import PeftModel",
            f"base = AutoModelForCausalLM.from_pretrained({json.dumps(base_model, ensure_ascii=False)})",
            'model = PeftModel.from_pretrained(base, "<this folder>")',
            'tokenizer = AutoTokenizer.from_pretrained("<this folder>")',
            "```",
        ]
    return "\n".join(lines) + "\n"


def library_versions() -> dict[str, str]:
    """Versions that decide whether a run can be reproduced."""
    import importlib.metadata as md

    out = {}
    for name in ("torch", "transformers", "peft", "bitsandbytes", "lora-factory"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    return out
