"""Text datasets: detect the format, validate every row, convert to canonical conversations.

Why one canonical shape: training, refinement and the preview all read
``{"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]}`` (or ``{"text": str}``
for continued pre-training), so each input format is converted exactly once, here.

Formats (names as LLaMA-Factory uses them):

- ``alpaca``: ``instruction`` (required, non-empty), ``input``, ``output`` (required), optional
  ``system`` and ``history`` (a list of ``[question, answer]`` pairs). The user turn is
  ``instruction + "\\n" + input``.
- ``sharegpt``: ``conversations`` (or ``messages``) holding ``{"from", "value"}`` turns; ``from`` is
  human/user, gpt/assistant/model, system, and the tool roles: ``function_call`` becomes an assistant
  message with structured ``tool_calls``, ``observation``/``tool``/``function`` a ``tool`` message
  (see :mod:`tools`). An optional ``system`` column is prepended, an optional ``tools`` column kept.
- ``openai``: ``messages`` holding ``{"role", "content"}``; ``content`` may be a list of
  ``{"type": "text", "text"}`` parts; assistant ``tool_calls``, ``tool`` messages and a ``tools``
  list are kept as they are.
- ``text``: ``{"text": ...}`` records or a ``.txt`` file (see :mod:`readers` for how it splits).
- ``preference``: DPO / ORPO pairs (``chosen`` and ``rejected`` beside a prompt) or KTO rows (a
  conversation and a boolean ``label``). Kept and shown, but not trainable by the SFT trainer:
  canonical rows are ``{"preference": "pair", "messages": prompt, "chosen": [...], "rejected": [...]}``
  or ``{"preference": "kto", "messages": [...], "label": bool}``.

Chat rows become ``{"messages": [...]}`` plus ``"tools": [...]`` when the row defines tools.

``options["mapping"]`` renames columns: canonical name -> column in the file (``instruction``,
``input``, ``output``, ``system``, ``history``, ``messages``, ``text``, ``tools``, ``chosen``,
``rejected``, ``kto_tag``, and for ShareGPT the tags ``role_tag``, ``content_tag``, ``user_tag``,
``assistant_tag``, ``system_tag``, ``observation_tag``, ``function_tag``). LLaMA-Factory's
``prompt``/``query``/``response`` are accepted as aliases. ``options["txt_split"]`` says how a
``.txt`` file splits into rows (``auto``, ``line``, ``paragraph``, ``whole``).
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from lora_factory.kit import LoRAFactoryError
from lora_factory.plugins.text.encodings import estimate_tokens
from lora_factory.plugins.text.preference import PREFERENCE_NOTE, from_preference, is_preference_row
from lora_factory.plugins.text.readers import SUPPORTED_EXTENSIONS, TXT_SPLITS, RawFile, read_raw
from lora_factory.plugins.text.tools import ToolDataError, call_text, parse_tools
from lora_factory.plugins.text.turns import RowError, col, convert_turn, opt_str, turn_list, turns_column

DATASET_FORMATS = ["alpaca", "sharegpt", "openai", "text", "preference"]
DATASET_EXTENSIONS = list(SUPPORTED_EXTENSIONS)
MAX_REPORTED_ERRORS = 20
_ALIASES = {"prompt": "instruction", "query": "input", "response": "output", "conversations": "messages"}


# -- options ------------------------------------------------------------------------------------

def _normalize_mapping(mapping: dict[str, Any] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in (mapping or {}).items():
        if value is None or value == "":
            continue
        out[_ALIASES.get(str(key), str(key))] = str(value)
    return out


# -- detection ----------------------------------------------------------------------------------

def _detect_one(value: Any, mapping: dict[str, str]) -> str | None:
    if not isinstance(value, dict):
        return None
    if is_preference_row(value, mapping):
        return "preference"
    if col(mapping, "instruction", "instruction") in value and col(mapping, "output", "output") in value:
        return "alpaca"
    for key in (col(mapping, "messages"), "messages", "conversations"):
        turns = turn_list(value.get(key)) if key else None
        if isinstance(turns, list) and turns and isinstance(turns[0], dict):
            first = turns[0]
            if col(mapping, "role_tag", "from") in first and "role" not in first:
                return "sharegpt"
            if "role" in first:
                return "openai"
            if "from" in first:
                return "sharegpt"
    if col(mapping, "text", "text") in value:
        return "text"
    if col(mapping, "instruction", "instruction") in value:
        return "alpaca"  # output missing: validation will say so row by row
    return None


def detect_format(raw: RawFile, mapping: dict[str, str]) -> str | None:
    """The most common format among the first 200 records (None when nothing matches)."""
    if raw.kind == "text":
        return "text"
    votes = Counter(f for f in (_detect_one(r.value, mapping) for r in raw.records[:200]) if f)
    return votes.most_common(1)[0][0] if votes else None


# -- conversion ---------------------------------------------------------------------------------

def _history(row: dict[str, Any], column: str | None) -> list[dict[str, str]]:
    if not column or row.get(column) in (None, "", []):
        return []
    value = row[column]
    if isinstance(value, str):  # CSV cells carry the history as JSON text
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise RowError(f"field '{column}' (history) is not valid JSON: {exc.msg}") from exc
    if not isinstance(value, list):
        raise RowError(f"field '{column}' (history) must be a list of [question, answer] pairs")
    messages: list[dict[str, str]] = []
    for i, pair in enumerate(value, start=1):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
            raise RowError(f"history item {i} must be a [question, answer] pair of strings")
        messages += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    return messages


def _from_alpaca(row: Any, mapping: dict[str, str]) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise RowError(f"expected a JSON object, got {type(row).__name__}")
    instruction_col = col(mapping, "instruction", "instruction")
    output_col = col(mapping, "output", "output")
    if instruction_col not in row:
        raise RowError(f"required field '{instruction_col}' (instruction) is missing")
    if output_col not in row:
        raise RowError(f"required field '{output_col}' (output) is missing")
    instruction = opt_str(row, instruction_col, "instruction")
    if not instruction.strip():
        raise RowError(f"field '{instruction_col}' (instruction) is empty")
    query = opt_str(row, col(mapping, "input", "input"), "input")
    output = opt_str(row, output_col, "output")
    system = opt_str(row, col(mapping, "system", "system"), "system")
    messages: list[dict[str, str]] = []
    if system.strip():
        messages.append({"role": "system", "content": system})
    messages += _history(row, col(mapping, "history", "history"))
    user = instruction if not query.strip() else f"{instruction}\n{query}"
    messages += [{"role": "user", "content": user}, {"role": "assistant", "content": output}]
    return {"messages": messages}


def _check_turns(messages: list[dict[str, Any]]) -> None:
    roles = [m["role"] for m in messages]
    if "user" not in roles:
        raise RowError("the conversation has no user turn")
    if "assistant" not in roles:
        raise RowError("the conversation has no assistant turn")
    for i, message in enumerate(messages, start=1):
        if message["role"] == "user" and not message["content"].strip():
            raise RowError(f"message {i}: the user turn is empty")
    if any(r == "system" for r in roles[1:]) and roles[0] != "system":
        raise RowError("a system message may only come first")


def _row_tools(row: dict[str, Any], mapping: dict[str, str]) -> list[dict[str, Any]]:
    column = col(mapping, "tools", "tools")
    if column not in row:
        return []
    try:
        return parse_tools(row[column])
    except ToolDataError as exc:
        raise RowError(f"field '{column}': {exc}") from exc


def _from_turns(row: Any, mapping: dict[str, str], fmt: str) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise RowError(f"expected a JSON object, got {type(row).__name__}")
    _, turns = turns_column(row, mapping, fmt)
    messages: list[dict[str, Any]] = []
    system = opt_str(row, col(mapping, "system", "system"), "system") if fmt == "sharegpt" else ""
    if system.strip():
        messages.append({"role": "system", "content": system})
    messages += [convert_turn(turn, i, mapping, fmt) for i, turn in enumerate(turns, start=1)]
    _check_turns(messages)
    out: dict[str, Any] = {"messages": messages}
    tools = _row_tools(row, mapping)
    if tools:
        out["tools"] = tools
    return out


def _from_text(row: Any, mapping: dict[str, str]) -> dict[str, Any]:
    if isinstance(row, str):
        return {"text": row}
    if not isinstance(row, dict):
        raise RowError(f"expected a JSON object, got {type(row).__name__}")
    column = col(mapping, "text", "text")
    if column not in row:
        raise RowError(f"required field '{column}' (text) is missing")
    text = opt_str(row, column, "text")
    if not text.strip():
        raise RowError(f"field '{column}' (text) is empty")
    return {"text": text}


def convert_row(value: Any, fmt: str, mapping: dict[str, str]) -> dict[str, Any]:
    """One raw record -> one canonical row; raises :class:`RowError` with the reason."""
    if fmt == "alpaca":
        return _from_alpaca(value, mapping)
    if fmt in ("sharegpt", "openai"):
        return _from_turns(value, mapping, fmt)
    if fmt == "preference":
        return from_preference(value, mapping)
    return _from_text(value, mapping)


# -- statistics ---------------------------------------------------------------------------------

def row_text(row: dict[str, Any]) -> str:
    """All the text of a canonical row, for lengths, hashes and filters."""
    if "text" in row:
        return str(row["text"])
    messages = list(row.get("messages", [])) + list(row.get("chosen") or []) + list(row.get("rejected") or [])
    return "\n".join(m["content"] if not m.get("tool_calls") else (m["content"] + "\n" + call_text(m)).strip()
                     for m in messages)


def has_empty_answer(row: dict[str, Any]) -> bool:
    return any(m["role"] == "assistant" and not m["content"].strip() and not m.get("tool_calls")
               for m in row.get("messages", []))


def _percentile(sorted_values: list[int], q: float) -> int:
    if not sorted_values:
        return 0
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def compute_stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Row count, estimated tokens, character lengths, turns and empty answers."""
    lengths = sorted(len(row_text(r)) for r in rows)
    user_turns = [sum(1 for m in r.get("messages", []) if m["role"] == "user") for r in rows if "messages" in r]
    return {
        "rows": len(rows),
        "token_estimate": sum(estimate_tokens(row_text(r)) for r in rows),
        "chars": {
            "min": lengths[0] if lengths else 0,
            "max": lengths[-1] if lengths else 0,
            "mean": round(statistics.fmean(lengths), 1) if lengths else 0.0,
            "p50": _percentile(lengths, 0.5),
            "p90": _percentile(lengths, 0.9),
        },
        "turns": {
            "min": min(user_turns) if user_turns else 0,
            "max": max(user_turns) if user_turns else 0,
            "mean": round(statistics.fmean(user_turns), 2) if user_turns else 0.0,
            "multi_turn": sum(1 for t in user_turns if t > 1),
            "with_system": sum(1 for r in rows if r.get("messages") and r["messages"][0]["role"] == "system"),
        },
        "empty_answers": sum(1 for r in rows if has_empty_answer(r)),
        "tool_call_rows": sum(1 for r in rows if any(m.get("tool_calls") for m in r.get("messages", []))),
        "preference_rows": sum(1 for r in rows if "preference" in r),
    }


# -- public API ---------------------------------------------------------------------------------

def _invalid(path: Path, errors: list[dict[str, Any]], fmt: str | None) -> LoRAFactoryError:
    first = errors[0]
    return LoRAFactoryError(
        "DATASET_INVALID",
        f"「{path.name}」に不正な行が {len(errors)} 件あります(最初: {first['line']} 行目: {first['reason']})。"
        "修正してからもう一度アップロードしてください。",
        f"'{path.name}' has {len(errors)} invalid row(s) (first: line {first['line']}: {first['reason']}). "
        "Fix them and upload again.",
        http_status=422,
        detail={"file": path.name, "format": fmt, "errors": errors[:MAX_REPORTED_ERRORS], "error_count": len(errors)},
    )


def _parse(path: Path, options: dict[str, Any] | None) -> tuple[str, RawFile, list[dict[str, Any]]]:
    options = options or {}
    path = Path(path)
    raw = read_raw(path, options.get("encoding") or "auto",
                   options.get("txt_split") or options.get("text_split") or "auto")
    mapping = _normalize_mapping(options.get("mapping"))
    requested = (options.get("format") or "auto").lower()
    if requested != "auto" and requested not in DATASET_FORMATS:
        raise LoRAFactoryError(
            "DATASET_UNSUPPORTED_FORMAT",
            f"データ形式「{requested}」には対応していません。対応: {', '.join(DATASET_FORMATS)}",
            f"Dataset format '{requested}' is not supported. Supported: {', '.join(DATASET_FORMATS)}",
            http_status=422,
            detail={"file": path.name, "format": requested, "supported": DATASET_FORMATS},
        )
    errors = list(raw.errors)
    if not raw.records and not errors:
        raise LoRAFactoryError(
            "DATASET_EMPTY",
            f"「{path.name}」にデータがありません。",
            f"'{path.name}' contains no rows.",
            http_status=422,
            detail={"file": path.name},
        )
    fmt = requested if requested != "auto" else detect_format(raw, mapping)
    if fmt is None:
        if errors:
            raise _invalid(path, errors, None)
        raise LoRAFactoryError(
            "DATASET_INVALID",
            f"「{path.name}」の形式を判別できません。列: {', '.join(raw.columns) or '(なし)'}。"
            "format と mapping(列の対応)を指定してください。",
            f"Could not recognise the format of '{path.name}' (columns: {', '.join(raw.columns) or 'none'}). "
            "Choose a format and a column mapping.",
            http_status=422,
            detail={"file": path.name, "columns": raw.columns, "errors": [], "error_count": 0,
                    "formats": DATASET_FORMATS},
        )
    rows: list[dict[str, Any]] = []
    for record in raw.records:
        try:
            rows.append(convert_row(record.value, fmt, mapping))
        except RowError as exc:
            errors.append({"line": record.line, "reason": str(exc)})
    if errors:
        errors.sort(key=lambda e: e["line"])
        raise _invalid(path, errors, fmt)
    return fmt, raw, rows


def inspect_dataset_file(path: Path, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Validate every row and describe the file (see the module docstring for the formats).

    :return: ``format``, ``encoding``, ``rows``, ``columns``, ``stats``, ``preview`` (canonical rows).
    :raises LoRAFactoryError: ``DATASET_INVALID`` (detail: ``errors`` = first 20 ``{line, reason}``,
        ``error_count``), ``DATASET_EMPTY``, ``DATASET_UNSUPPORTED_FORMAT``, ``DATASET_ENCODING``.
    """
    options = options or {}
    fmt, raw, rows = _parse(Path(path), options)
    preview_rows = int(options.get("preview_rows", 5) or 0)
    info: dict[str, Any] = {
        "format": fmt,
        "encoding": raw.encoding,
        "rows": len(rows),
        "columns": raw.columns,
        "stats": compute_stats(rows),
        "preview": rows[: max(0, preview_rows)],
    }
    if raw.txt_split:
        # how the .txt was split, and the options to read it the same way again (the host records
        # ``read_options`` beside the dataset and hands them back to every job)
        info["txt_split"] = raw.txt_split
        info["txt_split_choices"] = list(TXT_SPLITS)
        info["read_options"] = {"txt_split": raw.txt_split}
    if fmt == "preference":
        info["trainable"] = False  # not by SFT: see ``methods``
        info["methods"] = ["dpo", "kto", "orpo", "simpo", "grpo"]
        info["note"] = PREFERENCE_NOTE
    return info


def load_conversations(path: Path, options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The canonical rows of a dataset file, validated exactly as :func:`inspect_dataset_file` does."""
    return _parse(Path(path), options)[2]

