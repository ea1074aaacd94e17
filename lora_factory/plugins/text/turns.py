"""One turn of a chat row (ShareGPT or OpenAI style) -> a canonical message; the column helpers.

Shared by :mod:`formats` (SFT conversations) and :mod:`preference` (DPO / ORPO / KTO rows), which both
read turns the same way; here so neither borrows the other's private helpers.
"""

from __future__ import annotations

import json
from typing import Any

from lora_factory.plugins.text.tools import ToolDataError, parse_calls

_SHAREGPT_ROLES = {
    "human": "user", "user": "user",
    "gpt": "assistant", "assistant": "assistant", "model": "assistant", "bot": "assistant", "chatgpt": "assistant",
    "system": "system",
    "function_call": "function_call",
    "observation": "tool", "tool": "tool", "function": "tool",
}
_OPENAI_ROLES = {"system": "system", "user": "user", "assistant": "assistant", "developer": "system", "tool": "tool",
                 "function": "tool"}


class RowError(ValueError):
    """A row that cannot be converted; the message is the user-facing reason (English)."""


def col(mapping: dict[str, str], name: str, default: str | None = None) -> str | None:
    return mapping.get(name, default)


def turn_list(value: Any) -> Any:
    if isinstance(value, str) and value.lstrip().startswith("["):  # CSV / Parquet cells hold JSON text
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return None
    return value


def opt_str(row: dict[str, Any], column: str | None, field_name: str) -> str:
    if not column or column not in row or row[column] is None:
        return ""
    value = row[column]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise RowError(f"field '{column}' ({field_name}) must be a string, got {type(value).__name__}")
    return value


def content_text(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # OpenAI content parts
        parts = []
        for part in value:
            if isinstance(part, dict) and part.get("type", "text") == "text" and isinstance(part.get("text"), str):
                parts.append(part["text"])
            else:
                raise RowError(f"{where}: only text content parts are supported")
        return "".join(parts)
    raise RowError(f"{where}: content must be a string, got {type(value).__name__}")


def turn_keys(turn: dict[str, Any], mapping: dict[str, str], fmt: str) -> tuple[str, str, dict[str, str]]:
    """The role key, the content key and the role names for one turn (ShareGPT or OpenAI style)."""
    sharegpt = fmt == "sharegpt" or (fmt == "preference" and "role_tag" not in mapping and "from" in turn)
    if sharegpt or (fmt == "preference" and mapping.get("role_tag") == "from"):
        role_key, content_key = col(mapping, "role_tag", "from"), col(mapping, "content_tag", "value")
        roles = dict(_SHAREGPT_ROLES)
        for tag, canonical in (("user_tag", "user"), ("assistant_tag", "assistant"), ("system_tag", "system"),
                               ("observation_tag", "tool"), ("function_tag", "function_call")):
            if tag in mapping:
                roles[mapping[tag]] = canonical
        return role_key, content_key, roles
    return col(mapping, "role_tag", "role"), col(mapping, "content_tag", "content"), dict(_OPENAI_ROLES)


def convert_turn(turn: Any, i: int, mapping: dict[str, str], fmt: str) -> dict[str, Any]:
    """One ShareGPT / OpenAI turn -> a canonical message (tool calls and results structured)."""
    if not isinstance(turn, dict):
        raise RowError(f"message {i} must be an object with a role and a content")
    role_key, content_key, roles = turn_keys(turn, mapping, fmt)
    calls = turn.get("tool_calls") if role_key == "role" else None
    if role_key not in turn or (content_key not in turn and not calls):
        raise RowError(f"message {i} needs '{role_key}' and '{content_key}'")
    role = turn[role_key]
    if not isinstance(role, str) or (role not in roles and role.strip().lower() not in roles):
        raise RowError(f"message {i}: unknown role '{role}' (allowed: {', '.join(sorted(set(roles)))})")
    canonical = roles.get(role, roles.get(role.strip().lower()))
    raw_content = turn.get(content_key)
    try:
        if canonical == "function_call":  # ShareGPT: the value is the call itself, as JSON
            return {"role": "assistant", "content": "", "tool_calls": parse_calls(raw_content, f"message {i}")}
        content = "" if raw_content is None and calls else content_text(raw_content, f"message {i}")
        message: dict[str, Any] = {"role": canonical, "content": content}
        if calls and canonical == "assistant":
            message["tool_calls"] = parse_calls(calls, f"message {i}")
    except ToolDataError as exc:
        raise RowError(str(exc)) from exc
    if canonical == "tool":
        for key in ("name", "tool_call_id"):
            if isinstance(turn.get(key), str) and turn[key]:
                message[key] = turn[key]
    return message


def turns_column(row: dict[str, Any], mapping: dict[str, str], fmt: str) -> tuple[str, list[Any]]:
    explicit = col(mapping, "messages")
    candidates = [explicit] if explicit else ["conversations", "messages"] if fmt != "openai" else ["messages"]
    column = next((c for c in candidates if c in row), None)
    if column is None:
        raise RowError(f"required field '{candidates[0]}' (messages) is missing")
    turns = row[column]
    if isinstance(turns, str):  # CSV / Parquet string cells
        try:
            turns = json.loads(turns)
        except json.JSONDecodeError as exc:
            raise RowError(f"field '{column}' is not valid JSON: {exc.msg}") from exc
    if not isinstance(turns, list) or not turns:
        raise RowError(f"field '{column}' must be a non-empty list of messages")
    return column, turns
