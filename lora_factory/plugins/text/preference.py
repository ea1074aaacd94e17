"""Preference data (DPO / ORPO / SimPO pairs, KTO labels): read, shown, trained by the preference methods.

Why its own format rather than a skip: a user importing LLaMA-Factory's ``dpo_en_demo.json`` or
``kto_en_demo.json`` must see their data arrive and be told plainly what it is for. The SFT method
cannot use it (there is no single target per row), so it refuses such a dataset with
:func:`preference_not_trainable` instead of silently training on the chosen answers; the
``dpo`` / ``kto`` / ``orpo`` / ``simpo`` methods train on it (:mod:`pref_data`, :mod:`pref_train`).

OpenAI's preference fine-tuning JSONL (``input.messages``, ``preferred_output``,
``non_preferred_output``) reads as pairs too.

Canonical rows: ``{"preference": "pair", "messages": prompt, "chosen": [...], "rejected": [...]}``
(DPO / ORPO) or ``{"preference": "kto", "messages": [...], "label": bool}`` (KTO). ``chosen`` and
``rejected`` may be a string, one message (ShareGPT or OpenAI style) or a list of messages; the
prompt is a conversation column, an Alpaca instruction (+ input, system), or a ``prompt`` string.
"""

from __future__ import annotations

from typing import Any

from lora_factory.kit import LoRAFactoryError
from lora_factory.plugins.text.turns import RowError, col, convert_turn, opt_str, turn_list, turns_column

PREFERENCE_NOTE = ("preference data (DPO / ORPO / SimPO pairs or KTO labels): train it with the method dpo, kto, "
                   "orpo or simpo (grpo uses its prompts); the sft method does not train on it")
OPENAI_PREFERRED, OPENAI_REJECTED = "preferred_output", "non_preferred_output"


def is_preference_row(value: dict[str, Any], mapping: dict[str, str]) -> bool:
    """DPO / ORPO (``chosen`` and ``rejected``) or KTO (a ``kto_tag`` column, or a boolean ``label``
    beside a conversation or a completion)."""
    if col(mapping, "chosen", "chosen") in value and col(mapping, "rejected", "rejected") in value:
        return True
    if OPENAI_PREFERRED in value and OPENAI_REJECTED in value:
        return True
    if "kto_tag" in mapping:
        return mapping["kto_tag"] in value
    # KTO without a mapping: a boolean ``label`` beside a conversation or a completion
    return isinstance(value.get("label"), bool) and any(k in value for k in ("messages", "conversations",
                                                                                "completion"))


def _answer_messages(value: Any, column: str, mapping: dict[str, str]) -> list[dict[str, Any]]:
    """A ``chosen`` / ``rejected`` value: a string, one message, or a list of messages."""
    value = turn_list(value)
    if isinstance(value, str):
        return [{"role": "assistant", "content": value}]
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not value:
        raise RowError(f"field '{column}' must be a string, a message or a list of messages")
    return [convert_turn(turn, i, mapping, "preference") for i, turn in enumerate(value, start=1)]


def _preference_prompt(row: dict[str, Any], mapping: dict[str, str]) -> list[dict[str, Any]]:
    """The prompt of a preference row: a conversation column, an Alpaca instruction, or ``prompt``."""
    explicit = col(mapping, "messages")
    for column in ([explicit] if explicit else []) + ["conversations", "messages", "prompt"]:
        if column in row and isinstance(turn_list(row[column]), list):
            _, turns = turns_column(row, {**mapping, "messages": column}, "preference")
            return [convert_turn(turn, i, mapping, "preference") for i, turn in enumerate(turns, start=1)]
    instruction = opt_str(row, col(mapping, "instruction", "instruction"), "instruction")
    if not instruction and isinstance(row.get("prompt"), str):
        instruction = row["prompt"]
    query = opt_str(row, col(mapping, "input", "input"), "input")
    if not instruction.strip():
        return []
    messages = []
    system = opt_str(row, col(mapping, "system", "system"), "system")
    if system.strip():
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": instruction if not query.strip() else f"{instruction}\n{query}"})
    return messages


def _from_openai_preference(row: dict[str, Any], mapping: dict[str, str]) -> dict[str, Any]:
    """OpenAI preference fine-tuning: ``{"input": {"messages": [...]}, "preferred_output": [...],
    "non_preferred_output": [...]}`` (``input`` may also be a message list or a prompt string)."""
    given = row.get("input")
    if isinstance(given, dict):
        given = given.get("messages")
    if isinstance(given, str):
        given = [{"role": "user", "content": given}]
    if not isinstance(given, list) or not given:
        raise RowError("field 'input' must hold the prompt messages ('input.messages')")
    prompt = [convert_turn(turn, i, mapping, "openai") for i, turn in enumerate(given, start=1)]
    return {"preference": "pair", "messages": prompt,
            "chosen": _answer_messages(row[OPENAI_PREFERRED], OPENAI_PREFERRED, mapping),
            "rejected": _answer_messages(row[OPENAI_REJECTED], OPENAI_REJECTED, mapping)}


def from_preference(row: Any, mapping: dict[str, str]) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise RowError(f"expected a JSON object, got {type(row).__name__}")
    chosen_col, rejected_col = col(mapping, "chosen", "chosen"), col(mapping, "rejected", "rejected")
    if chosen_col not in row and OPENAI_PREFERRED in row and OPENAI_REJECTED in row:
        return _from_openai_preference(row, mapping)
    if chosen_col in row and rejected_col in row:
        return {"preference": "pair", "messages": _preference_prompt(row, mapping),
                "chosen": _answer_messages(row[chosen_col], chosen_col, mapping),
                "rejected": _answer_messages(row[rejected_col], rejected_col, mapping)}
    label_col = col(mapping, "kto_tag", "label")
    if label_col in row:
        label = row[label_col]
        if isinstance(label, str) and label.lower() in ("true", "false"):  # CSV cells
            label = label.lower() == "true"
        if not isinstance(label, bool):
            raise RowError(f"field '{label_col}' (KTO label) must be true or false")
        messages = _preference_prompt(row, mapping)
        completion = row.get(col(mapping, "output", "completion")) if "completion" in row or "output" in mapping \
            else None
        if completion is not None:
            messages += _answer_messages(completion, "completion", mapping)
        if not messages:
            raise RowError("the KTO row has no conversation")
        return {"preference": "kto", "messages": messages, "label": label}
    raise RowError(f"a preference row needs '{chosen_col}' and '{rejected_col}' (DPO / ORPO), "
                   f"or a boolean '{label_col}' (KTO)")


def preference_not_trainable(name: str) -> LoRAFactoryError:
    """Raised when a preference dataset reaches the SFT trainer (or an SFT evaluation)."""
    return LoRAFactoryError(
        "DATASET_PREFERENCE_NOT_TRAINABLE",
        f"データセット「{name}」は選好データ (DPO / ORPO / KTO) です。SFT では学習できません。"
        "学習方式を dpo / kto / orpo / simpo にするか、指示・会話形式 (alpaca / sharegpt / openai) か"
        "テキストのデータセットを選んでください。",
        f"The dataset '{name}' is preference data (DPO / ORPO / KTO); the SFT method cannot train on it. "
        "Choose the method dpo, kto, orpo or simpo, or an instruction, chat (alpaca / sharegpt / openai) or "
        "text dataset.",
        http_status=422,
        detail={"field": "dataset", "dataset": name, "format": "preference", "methods": ["dpo", "kto", "orpo", "simpo"]},
    )
