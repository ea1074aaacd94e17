"""Turn conversations into training tensors: chat template, assistant-only labels, packing.

Why our own code rather than TRL's: the loss mask must be right for any chat template (with or
without ``{% generation %}`` markers), packing must not let one sample attend to another, and the
same function must serve training, evaluation and the benchmark so their numbers are comparable.

Assistant spans are found by rendering the conversation prefix by prefix: the characters between
"history + generation prompt" and "history + this answer" belong to the answer. Token offsets then
map characters to tokens. This works for every template whose renders are prefix-consistent.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from lora_factory.kit import LoRAFactoryError

IGNORE_INDEX = -100


def load_rows(path: Path, options: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Read a dataset through the text plugin's format layer (JSONL, CSV, Alpaca, ShareGPT ...)."""
    from lora_factory.plugins.text.formats import load_conversations

    rows = load_conversations(Path(path), options or {})
    if not rows:
        raise LoRAFactoryError(
            "DATASET_EMPTY",
            f"データセット「{Path(path).name}」に学習できる行がありません。",
            f"The dataset '{Path(path).name}' has no usable rows.",
            http_status=422,
            detail={"file": str(path)},
        )
    return rows


def _template_error(tokenizer_name: str, reason: str) -> LoRAFactoryError:
    return LoRAFactoryError(
        "CHAT_TEMPLATE_UNSUPPORTED",
        f"チャットテンプレートからアシスタントの範囲を特定できません({reason})。"
        "assistant_only_loss を false にするか、別のモデルを使ってください。",
        f"Cannot locate assistant turns with this chat template ({reason}); "
        "set assistant_only_loss to false or use another model.",
        http_status=422,
        detail={"tokenizer": tokenizer_name, "reason": reason},
    )


def _render(tokenizer: Any, messages: list[dict[str, Any]], add_generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def assistant_char_spans(tokenizer: Any, messages: list[dict[str, Any]]) -> tuple[str, list[tuple[int, int]]]:
    """The full rendered text and the character spans of every assistant answer (its end token included)."""
    full = _render(tokenizer, messages, add_generation_prompt=False)
    spans: list[tuple[int, int]] = []
    for i, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        prefix = _render(tokenizer, messages[:i], add_generation_prompt=True) if i else ""
        upto = _render(tokenizer, messages[: i + 1], add_generation_prompt=False)
        if not full.startswith(upto) or not upto.startswith(prefix):
            raise _template_error(getattr(tokenizer, "name_or_path", ""), "renders are not prefix-consistent")
        end = len(upto.rstrip("\n "))
        if end > len(prefix):
            spans.append((len(prefix), end))
    return full, spans


def encode_row(row: dict[str, Any], tokenizer: Any, max_length: int, assistant_only: bool) -> dict[str, list[int]] | None:
    """One row -> ``{"input_ids", "labels"}`` truncated to ``max_length``; None when nothing is trainable.

    ``{"text": ...}`` rows are trained on every token (plus the end token); ``{"messages": [...]}``
    rows on the assistant answers only when ``assistant_only`` is true.
    """
    if "messages" in row:
        messages = [{"role": m["role"], "content": m["content"]} for m in row["messages"]]
        if assistant_only:
            text, spans = assistant_char_spans(tokenizer, messages)
        else:
            text, spans = _render(tokenizer, messages, add_generation_prompt=False), None
    else:
        text, spans = str(row.get("text", "")) + (tokenizer.eos_token or ""), None
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = list(enc["input_ids"])
    if spans is None:
        labels = list(ids)
    else:
        labels = [IGNORE_INDEX] * len(ids)
        for t, (start, end) in enumerate(enc["offset_mapping"]):
            if end <= start:
                continue
            for s_start, s_end in spans:
                if start >= s_start and end <= s_end:
                    labels[t] = ids[t]
                    break
    ids, labels = ids[:max_length], labels[:max_length]
    if not any(label != IGNORE_INDEX for label in labels):
        return None
    return {"input_ids": ids, "labels": labels}


def encode_rows(rows: list[dict[str, Any]], tokenizer: Any, max_length: int, assistant_only: bool) -> list[dict[str, list[int]]]:
    """Encode every row, dropping the ones with nothing to learn (e.g. truncated before the answer)."""
    out = []
    for row in rows:
        item = encode_row(row, tokenizer, max_length, assistant_only)
        if item is not None:
            out.append(item)
    if not out:
        raise LoRAFactoryError(
            "DATASET_NOTHING_TO_TRAIN",
            "学習対象のトークンがありません(max_length が短すぎるか、assistant の発話がありません)。",
            "No trainable tokens: max_length is too short or there are no assistant turns.",
            http_status=422,
            detail={"field": "max_length", "value": max_length},
        )
    return out


def split_eval(items: list[Any], eval_ratio: float, seed: int) -> tuple[list[Any], list[Any]]:
    """A seeded split; at least one row stays for training, and an eval set only when asked for."""
    if eval_ratio <= 0 or len(items) < 2:
        return list(items), []
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    n_eval = min(len(items) - 1, max(1, round(len(items) * eval_ratio)))
    eval_idx = set(order[:n_eval])
    return [x for i, x in enumerate(items) if i not in eval_idx], [x for i, x in enumerate(items) if i in eval_idx]


def pack(items: list[dict[str, list[int]]], max_length: int) -> list[dict[str, list[int]]]:
    """Greedy first-fit packing into blocks of at most ``max_length`` tokens.

    Each block carries ``position_ids`` that restart at 0 for every sample: transformers then builds
    a block-diagonal causal mask (no attention across samples) when ``attention_mask`` is absent.
    The first token of a sample is never a label target of the previous one (labels are per sample).
    """
    blocks: list[dict[str, list[int]]] = []
    for item in sorted(items, key=lambda x: -len(x["input_ids"])):
        n = len(item["input_ids"])
        for block in blocks:
            if len(block["input_ids"]) + n <= max_length:
                break
        else:
            block = {"input_ids": [], "labels": [], "position_ids": []}
            blocks.append(block)
        block["input_ids"].extend(item["input_ids"])
        block["labels"].extend(item["labels"])
        block["position_ids"].extend(range(n))
    return blocks


class CausalCollator:
    """Pads a batch to its longest row. Packed rows (with ``position_ids``) get no attention mask,
    so transformers derives the per-sample mask from the positions; padding becomes its own segment."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None) -> None:
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, features: list[dict[str, list[int]]]) -> dict[str, Any]:
        import torch

        longest = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            m = self.pad_to_multiple_of
            longest = (longest + m - 1) // m * m
        packed = any("position_ids" in f for f in features)
        ids, labels, mask, positions = [], [], [], []
        for f in features:
            n = len(f["input_ids"])
            pad = longest - n
            ids.append(list(f["input_ids"]) + [self.pad_token_id] * pad)
            labels.append(list(f["labels"]) + [IGNORE_INDEX] * pad)
            mask.append([1] * n + [0] * pad)
            if packed:
                positions.append(list(f.get("position_ids") or range(n)) + list(range(pad)))
        batch: dict[str, Any] = {
            "input_ids": torch.tensor(ids, dtype=torch.long),
            "labels": torch.tensor(labels, dtype=torch.long),
        }
        if packed:
            batch["position_ids"] = torch.tensor(positions, dtype=torch.long)
        else:
            batch["attention_mask"] = torch.tensor(mask, dtype=torch.long)
        return batch


def count_label_tokens(items: list[dict[str, list[int]]]) -> int:
    """Tokens that carry a loss (what "real tokens/s" counts)."""
    return sum(sum(1 for x in it["labels"] if x != IGNORE_INDEX) for it in items)
