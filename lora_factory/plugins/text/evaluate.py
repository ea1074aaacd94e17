"""Held-out loss and perplexity of a base model or base + adapter on a dataset.

Why the training code path: the numbers are only comparable with the training loss when the rows
are templated, masked (assistant tokens only) and truncated exactly as during training.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from lora_factory.kit import LoRAFactoryError


def evaluate_text(spec: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """``spec``: ``base_model``, ``adapter`` (or None), ``dataset``, ``dataset_options``, ``params``
    (``max_length``, ``batch_size``, ``max_rows``, ``assistant_only_loss``) -> eval_loss, perplexity, rows, tokens."""
    import numpy as np
    import torch

    from lora_factory.plugins.text.batching import CausalCollator, SampleDataset
    from lora_factory.plugins.text.loading import load_causal_lm, load_tokenizer, pick_device
    from lora_factory.plugins.text.prepare import encoded_dataset, token_cache_root
    from lora_factory.plugins.text.train_data import IGNORE_INDEX, EncodeConfig, nothing_to_train

    params = dict(spec.get("params") or {})
    max_length = int(params.get("max_length", 1024))
    batch_size = max(1, int(params.get("batch_size", 4)))
    max_rows = params.get("max_rows")
    trust = bool(spec.get("trust_remote_code", False))
    base = Path(str(spec.get("base_model", "")))
    adapter = spec.get("adapter")
    dataset = Path(str(spec.get("dataset", "")))
    if not dataset.is_file():
        raise LoRAFactoryError("DATASET_NOT_FOUND", f"データセット「{dataset}」が見つかりません。",
                               f"The dataset '{dataset}' was not found.", 404, detail={"field": "dataset"})

    tok_source = Path(adapter) if adapter and (Path(adapter) / "tokenizer_config.json").is_file() else base
    tokenizer = load_tokenizer(tok_source, trust)
    if is_preference_dataset(dataset, spec.get("dataset_options") or {}):
        return evaluate_preference(spec, tokenizer, ctx)
    # the same samples (and the same token cache entry) as a training run with these settings
    cfg = EncodeConfig(max_length, bool(params.get("assistant_only_loss", True)),
                       str(params.get("overlong_rows", "truncate")), int(params.get("text_stride", 0)))
    log = ctx.log if ctx is not None else None
    data, cache = encoded_dataset(tokenizer, dataset, spec.get("dataset_options") or {}, cfg,
                              token_cache_root(ctx), log)
    selected = np.flatnonzero(data.rows < int(max_rows)) if max_rows else np.arange(len(data))
    if not len(selected):
        raise nothing_to_train(max_length)
    items = SampleDataset(data, selected)
    device = pick_device()
    model = load_causal_lm(base, "none", trust, device)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter))
    model.eval()
    collate = CausalCollator(tokenizer.pad_token_id)
    total_loss, total_tokens = 0.0, 0
    n_batches = (len(items) + batch_size - 1) // batch_size
    with torch.inference_mode():
        for b in range(n_batches):
            if ctx is not None and ctx.should_stop():
                break
            chunk = [items[i] for i in range(b * batch_size, min((b + 1) * batch_size, len(items)))]
            batch = {k: v.to(device) for k, v in collate(chunk).items()}
            labels = batch.pop("labels")
            logits = model(**batch).logits.float()
            # token-weighted mean over the whole set (not a mean of batch means)
            shift_logits, shift_labels = logits[:, :-1], labels[:, 1:]
            loss = torch.nn.functional.cross_entropy(
                shift_logits.reshape(-1, shift_logits.size(-1)), shift_labels.reshape(-1),
                ignore_index=IGNORE_INDEX, reduction="sum")
            total_loss += float(loss)
            total_tokens += int((shift_labels != IGNORE_INDEX).sum())
            if ctx is not None:
                ctx.progress(b + 1, n_batches, loss=float(loss) / max(1, int((shift_labels != IGNORE_INDEX).sum())))
    eval_loss = total_loss / max(1, total_tokens)
    return {"eval_loss": eval_loss, "perplexity": math.exp(min(eval_loss, 50.0)), "rows": len(items),
            "tokens": total_tokens, "token_cache": cache["status"]}


def is_preference_dataset(path: Path, options: dict[str, Any]) -> bool:
    """Pairs (chosen / rejected) are measured by preference, not by loss: the format the user named, or the one
    the reader detects."""
    from lora_factory.plugins.text.formats import _normalize_mapping, detect_format
    from lora_factory.plugins.text.readers import read_raw

    requested = str(options.get("format") or "auto").lower()
    if requested != "auto":
        return requested == "preference"
    raw = read_raw(path, options.get("encoding") or "auto", options.get("txt_split") or "auto")
    return detect_format(raw, _normalize_mapping(options.get("mapping"))) == "preference"


def evaluate_preference(spec: dict[str, Any], tokenizer: Any, ctx: Any) -> dict[str, Any]:
    """The regression suite's preference check: on held-out pairs, how often and by how much the adapter prefers
    the chosen answer, against the base (the same model with the adapter disabled: one copy in memory)."""
    from lora_factory.plugins.text.loading import load_causal_lm, pick_device
    from lora_factory.plugins.text.pref_data import load_method_rows
    from lora_factory.plugins.text.pref_eval import adapter_vs_base, preference_margins

    params = dict(spec.get("params") or {})
    dataset = Path(str(spec["dataset"]))
    pairs = load_method_rows(dataset, spec.get("dataset_options") or {}, "dpo")
    if params.get("max_rows"):
        pairs = pairs[: int(params["max_rows"])]
    model = load_causal_lm(Path(str(spec["base_model"])), "none", bool(spec.get("trust_remote_code", False)),
                           pick_device())
    if spec.get("adapter"):
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(spec["adapter"]))
        figures = adapter_vs_base(model, tokenizer, pairs)
        adapter, base = figures["adapter"], figures["base"]
    else:
        adapter = base = preference_margins(model, tokenizer, pairs)
    if ctx is not None:
        ctx.progress(len(pairs), len(pairs))
    return {"preference_accuracy": adapter["accuracy"], "preference_margin": adapter["mean_margin"],
            "base_preference_accuracy": base["accuracy"], "base_preference_margin": base["mean_margin"],
            "margin_gain": adapter["mean_margin"] - base["mean_margin"], "rows": len(pairs)}
