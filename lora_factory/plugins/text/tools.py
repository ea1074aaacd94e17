"""Tool-calling data: tool definitions, assistant tool calls and tool results as structured messages.

Why structured: a model learns its *own* tool-call format only when the calls are rendered by its
own chat template (``apply_chat_template(messages, tools=...)``). Flattening a call into assistant
text (raw JSON) or a tool result into a user turn teaches a format the model will never be
prompted with. So every input shape is converted to the shape transformers' templates read:

- a tool definition: ``{"type": "function", "function": {"name", "description", "parameters"}}``
- an assistant call: ``{"role": "assistant", "content": "", "tool_calls": [{"type": "function",
  "function": {"name", "arguments": {...}}}]}`` (arguments as a dict, the way templates expect)
- a tool result: ``{"role": "tool", "content": "..."}`` (``name`` / ``tool_call_id`` kept when given)

Inputs: ShareGPT ``function_call`` / ``observation`` turns with a ``tools`` column (LLaMA-Factory,
glaive), and OpenAI ``tool_calls`` / ``tool`` messages with a ``tools`` list.
"""

from __future__ import annotations

import json
from typing import Any

from lora_factory.kit import LoRAFactoryError

PROBE_TOOL = "lf_probe_lookup"
PROBE_ARGUMENT = "lf_probe_argument"
PROBE_RESULT = "lf_probe_result_text"


class ToolDataError(ValueError):
    """A tool definition or call that cannot be read; the message is the user-facing reason."""


def _json_value(value: Any, what: str) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ToolDataError(f"{what} is not valid JSON: {exc.msg}") from exc
    return value


def parse_tools(value: Any) -> list[dict[str, Any]]:
    """A ``tools`` column (JSON text or a list) -> definitions in the ``{"type": "function", ...}`` shape."""
    value = _json_value(value, "tools")
    if value in (None, [], {}):
        return []
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise ToolDataError("tools must be a list of function definitions")
    tools = []
    for i, tool in enumerate(value, start=1):
        if not isinstance(tool, dict):
            raise ToolDataError(f"tool {i} must be an object")
        function = tool.get("function") if tool.get("type", "function") == "function" and "function" in tool else tool
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
            raise ToolDataError(f"tool {i} has no name")
        tools.append({"type": "function", "function": function})
    return tools


def _arguments(value: Any, where: str) -> Any:
    """Arguments as a dict when they are JSON (templates render them with ``tojson``)."""
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return value  # free text arguments are kept as they are
        return parsed
    if value is None:
        return {}
    return value


def _one_call(call: Any, where: str) -> dict[str, Any]:
    if not isinstance(call, dict):
        raise ToolDataError(f"{where}: a tool call must be an object with a name")
    function = call.get("function") if isinstance(call.get("function"), dict) else call
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise ToolDataError(f"{where}: the tool call has no name")
    out: dict[str, Any] = {"type": "function",
                           "function": {"name": name, "arguments": _arguments(function.get("arguments"), where)}}
    if call.get("id"):
        out["id"] = str(call["id"])
    return out


def parse_calls(value: Any, where: str) -> list[dict[str, Any]]:
    """A ShareGPT ``function_call`` value (JSON ``{"name", "arguments"}`` or a list of them) or an
    OpenAI ``tool_calls`` list -> calls in the transformers shape."""
    value = _json_value(value, f"{where}: the tool call")
    if value is None:
        raise ToolDataError(f"{where}: the tool call is empty")
    calls = value if isinstance(value, list) else [value]
    if not calls:
        raise ToolDataError(f"{where}: the tool call list is empty")
    return [_one_call(call, where) for call in calls]


def row_uses_tools(row: dict[str, Any]) -> bool:
    return bool(row.get("tools")) or any(m.get("tool_calls") or m.get("role") == "tool"
                                         for m in row.get("messages") or [])


def call_text(message: dict[str, Any]) -> str:
    """The calls of an assistant message as text (statistics, dedup, previews in plain text)."""
    parts = []
    for call in message.get("tool_calls") or []:
        function = call.get("function", {})
        parts.append(json.dumps({"name": function.get("name"), "arguments": function.get("arguments")},
                                ensure_ascii=False))
    return "\n".join(parts)


def _probe_conversation() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    tools = [{"type": "function", "function": {
        "name": PROBE_TOOL, "description": "probe",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}}]
    messages = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "",
         "tool_calls": [{"type": "function", "function": {"name": PROBE_TOOL, "arguments": {"query": PROBE_ARGUMENT}}}]},
        {"role": "tool", "content": PROBE_RESULT, "name": PROBE_TOOL},
        {"role": "assistant", "content": "a"},
    ]
    return messages, tools


_SUPPORT: dict[str, bool] = {}


def template_supports_tools(tokenizer: Any) -> bool:
    """True when the chat template renders tool definitions, calls and results (checked by rendering
    a probe conversation once per template, not by reading the template's source)."""
    template = getattr(tokenizer, "chat_template", None)
    if not template or not isinstance(template, str):
        return False
    if template not in _SUPPORT:
        messages, tools = _probe_conversation()
        try:
            text = tokenizer.apply_chat_template(messages, tools=tools, tokenize=False)
        except Exception:  # noqa: BLE001 - a template that raises on tools does not support them
            text = ""
        # the definitions, the call (name and arguments) and the result must all reach the prompt
        _SUPPORT[template] = text.count(PROBE_TOOL) >= 2 and PROBE_ARGUMENT in text and PROBE_RESULT in text
    return _SUPPORT[template]


def tools_unsupported(model_name: str) -> LoRAFactoryError:
    return LoRAFactoryError(
        "CHAT_TEMPLATE_NO_TOOLS",
        f"モデル「{model_name}」のチャットテンプレートはツール呼び出し(tools / tool_calls / tool の結果)を"
        "表示できません。ツール対応のテンプレートを持つモデルを選ぶか、ツール呼び出しのない行だけで学習してください。",
        f"The chat template of the model '{model_name}' cannot render tool calls (tools / tool_calls / tool "
        "results). Choose a model whose template supports tools, or train on rows without tool calls.",
        http_status=422,
        detail={"model": model_name, "field": "dataset"},
    )
