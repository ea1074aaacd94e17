"""Merge a LoRA adapter into its base and save a standalone model.

Why: a merged model runs anywhere (llama.cpp converters, vLLM, plain transformers) without peft, and
answers exactly like base + adapter. Always merged in full precision, never into 4-bit weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lora_factory.kit import LoRAFactoryError
from lora_factory.kit.files import write_text_atomic


def merge_text_adapter(spec: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """``spec``: ``base_model``, ``adapter`` (absolute paths), ``output_name``; writes into ``ctx.output_dir``."""
    from peft import PeftModel

    from lora_factory.kit.model_card import library_versions, render_model_card
    from lora_factory.plugins.text.loading import load_causal_lm, load_tokenizer

    base = Path(str(spec.get("base_model", "")))
    adapter = Path(str(spec.get("adapter", "")))
    if not (adapter / "adapter_config.json").is_file():
        raise LoRAFactoryError("ADAPTER_NOT_FOUND", f"アダプタ「{adapter}」に adapter_config.json がありません。",
                               f"The adapter '{adapter}' has no adapter_config.json.", 404,
                               detail={"field": "adapter", "path": str(adapter)})
    trust = bool(spec.get("trust_remote_code", False))
    ctx.log(f"merge {adapter.name} into {base.name}")
    ctx.progress(0, 3)
    model = load_causal_lm(base, "none", trust, device="cpu")
    tokenizer = load_tokenizer(adapter if (adapter / "tokenizer_config.json").is_file() else base, trust)
    ctx.progress(1, 3)
    try:
        merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    except Exception as exc:  # noqa: BLE001
        raise LoRAFactoryError("ADAPTER_LOAD_FAILED", f"アダプタをマージできません: {exc}",
                               f"Could not merge the adapter: {exc}", 500,
                               detail={"path": str(adapter), "reason": f"{type(exc).__name__}: {exc}"}) from exc
    ctx.progress(2, 3)
    out = Path(ctx.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    parameters = int(sum(p.numel() for p in merged.parameters()))
    info = {"merged_from": {"base_model": spec.get("base_model_ref") or str(base),
                            "adapter": spec.get("adapter_ref") or str(adapter)},
            "parameters": parameters, "versions": library_versions()}
    write_text_atomic(out / "merge_info.json", json.dumps(info, ensure_ascii=False, indent=2))
    write_text_atomic(out / "README.md", render_model_card(
        title=str(spec.get("output_name") or out.name), base_model=info["merged_from"]["base_model"],
        dataset=None, params={"adapter": info["merged_from"]["adapter"]}, metrics={"parameters": parameters},
        versions=info["versions"], kind="merged model"))
    ctx.progress(3, 3)
    return {"parameters": parameters, "path": str(out)}
