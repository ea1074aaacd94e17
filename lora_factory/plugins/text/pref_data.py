"""Canonical rows -> the rows TRL's preference and GRPO trainers read (conversational, no tokens).

Why here and not in TRL: our readers already turned every supported file (chosen / rejected plain
or as turns, LLaMA-Factory ``ranking`` and ``kto_tag``, OpenAI preference JSONL, instruction and
chat sets) into one canonical shape (:mod:`preference`, :mod:`formats`); this module only maps that
shape onto TRL's ``prompt`` / ``chosen`` / ``rejected`` (DPO, ORPO, SimPO), ``prompt`` /
``completion`` / ``label`` (KTO) and ``prompt`` (+ ``answer``) (GRPO) columns, and refuses a
dataset whose rows do not fit the method (:func:`methods.wrong_data`). The chat template is then
applied by TRL with the run's tokenizer, the same template the SFT path and the chat use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lora_factory.plugins.text.methods import accepts, data_kinds_of_rows, wrong_data

Message = dict[str, Any]


def _plain(messages: list[Message]) -> list[Message]:
    """Only role and content (tool calls are not trained by the preference trainers)."""
    return [{"role": m["role"], "content": str(m.get("content") or "")} for m in messages]


def _split_implicit_prompt(chosen: list[Message], rejected: list[Message]) -> tuple[list[Message], list[Message],
                                                                                      list[Message]]:
    """Pairs written as two whole conversations (HH-RLHF style): the shared turns are the prompt."""
    n = 0
    while n < min(len(chosen), len(rejected)) - 1 and chosen[n] == rejected[n]:
        n += 1
    return chosen[:n], chosen[n:], rejected[n:]


def pair_row(row: dict[str, Any]) -> dict[str, Any]:
    prompt, chosen, rejected = _plain(row.get("messages") or []), _plain(row["chosen"]), _plain(row["rejected"])
    if not prompt:
        prompt, chosen, rejected = _split_implicit_prompt(chosen, rejected)
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def _last_answer(messages: list[Message]) -> tuple[list[Message], list[Message]]:
    """A conversation as (prompt, the final assistant turn); the prompt is empty when there is none."""
    if len(messages) >= 2 and messages[-1]["role"] == "assistant":
        return messages[:-1], messages[-1:]
    return [], []


def kto_rows(row: dict[str, Any]) -> list[dict[str, Any]]:
    """A KTO row, or a pair split into a desirable and an undesirable row (as TRL's unpairing does)."""
    if row.get("preference") == "pair":
        pair = pair_row(row)
        return [{"prompt": pair["prompt"], "completion": pair["chosen"], "label": True},
                {"prompt": pair["prompt"], "completion": pair["rejected"], "label": False}]
    prompt, completion = _last_answer(_plain(row["messages"]))
    return [{"prompt": prompt, "completion": completion, "label": bool(row["label"])}] if completion else []


def prompt_row(row: dict[str, Any]) -> dict[str, Any] | None:
    """GRPO: the prompt of a row, and the reference answer when the row has one (else an empty string)."""
    if row.get("preference") == "pair":
        pair = pair_row(row)
        return {"prompt": pair["prompt"], "answer": "\n".join(m["content"] for m in pair["chosen"])}
    messages = _plain(row.get("messages") or [])
    prompt, answer = _last_answer(messages)
    if not prompt:
        prompt = messages if messages and messages[-1]["role"] != "assistant" else []
    if not prompt or not any(m["role"] == "user" for m in prompt):
        return None
    return {"prompt": prompt, "answer": answer[0]["content"] if answer else ""}


def trl_rows(rows: list[dict[str, Any]], method: str, dataset_name: str) -> list[dict[str, Any]]:
    """The rows of ``method``'s trainer; :func:`methods.wrong_data` (422) when the data does not fit."""
    kinds = data_kinds_of_rows(rows)
    if not accepts(method, kinds):
        raise wrong_data(method, dataset_name, kinds)
    out: list[dict[str, Any]] = []
    for row in rows:
        if method == "kto":
            out += kto_rows(row)
        elif method == "grpo":
            item = prompt_row(row)
            if item is not None:
                out.append(item)
        else:
            pair = pair_row(row)
            if pair["prompt"] and pair["chosen"] and pair["rejected"]:
                out.append(pair)
    if not out:
        raise wrong_data(method, dataset_name, kinds)
    return out


def load_method_rows(path: Path, options: dict[str, Any], method: str) -> list[dict[str, Any]]:
    """Read ``path`` through the format layer and map it for ``method``."""
    from lora_factory.plugins.text.formats import load_conversations

    return trl_rows(load_conversations(Path(path), options or {}), method, Path(path).name)
