"""The subset of Go's ``text/template`` that our Ollama templates use, rendered in Python.

Why: Ollama renders a Modelfile's ``TEMPLATE`` with Go's template engine; an export checks that the
template it converted from the model's Jinja chat template renders the *same prompt* for several
conversations before it writes the Modelfile. Supported: literal text, ``{{ range .Messages }}``,
``{{ if eq .Role "x" }}`` / ``{{ else if eq .Role "y" }}`` / ``{{ else }}`` / ``{{ end }}``,
``{{ .Content }}``, ``{{ "a quoted string" }}`` (Go escapes) and the ``{{-`` / ``-}}`` trim markers.
Anything else is an error, never a silent guess.
"""

from __future__ import annotations

import json
import re
from typing import Any

_ACTION = re.compile(r'\{\{(-?)\s*((?:"(?:[^"\\]|\\.)*"|[^"}]|\}(?!\}))*?)\s*(-?)\}\}', re.S)


class GoTemplateError(ValueError):
    pass


def _tokens(template: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    for match in _ACTION.finditer(template):
        text = template[pos:match.start()]
        if match.group(1):
            text = text.rstrip(" \t\r\n")
        if out and out[-1][0] == "trim_next":
            out.pop()
            text = text.lstrip(" \t\r\n")
        out.append(("text", text))
        out.append(("action", match.group(2)))
        if match.group(3):
            out.append(("trim_next", ""))
        pos = match.end()
    tail = template[pos:]
    if out and out[-1][0] == "trim_next":
        out.pop()
        tail = tail.lstrip(" \t\r\n")
    out.append(("text", tail))
    return out


def _parse(tokens: list[tuple[str, str]], i: int, stop: tuple[str, ...]) -> tuple[list[Any], int, str]:
    nodes: list[Any] = []
    while i < len(tokens):
        kind, value = tokens[i]
        i += 1
        if kind == "text":
            if value:
                nodes.append(("text", value))
            continue
        if value == "end" or value == "else" or value.startswith("else if "):
            if value.split(" ")[0] not in {s.split(" ")[0] for s in stop}:
                raise GoTemplateError(f"unexpected {{{{ {value} }}}}")
            return nodes, i, value
        if value == "range .Messages":
            body, i, closing = _parse(tokens, i, ("end",))
            nodes.append(("range", body))
        elif value.startswith("if "):
            branches = []
            cond = value[3:]
            while True:
                body, i, closing = _parse(tokens, i, ("end", "else", "else if"))
                branches.append((cond, body))
                if closing == "end":
                    break
                cond = closing[8:] if closing.startswith("else if ") else None
            nodes.append(("if", branches))
        elif value == ".Content":
            nodes.append(("content", None))
        elif value.startswith('"'):
            nodes.append(("text", json.loads(value)))
        else:
            raise GoTemplateError(f"unsupported action {{{{ {value} }}}}")
    if stop:
        raise GoTemplateError("missing {{ end }}")
    return nodes, i, ""


def _truth(cond: str | None, message: dict[str, Any] | None) -> bool:
    if cond is None:
        return True
    match = re.fullmatch(r'eq \.Role (".*?")', cond)
    if not match or message is None:
        raise GoTemplateError(f"unsupported condition {cond}")
    return message.get("role") == json.loads(match.group(1))


def _render(nodes: list[Any], messages: list[dict[str, Any]], message: dict[str, Any] | None) -> str:
    out = []
    for kind, value in nodes:
        if kind == "text":
            out.append(value)
        elif kind == "content":
            if message is None:
                raise GoTemplateError(".Content outside {{ range .Messages }}")
            out.append(str(message.get("content") or ""))
        elif kind == "range":
            out.extend(_render(value, messages, m) for m in messages)
        elif kind == "if":
            for cond, body in value:
                if _truth(cond, message):
                    out.append(_render(body, messages, message))
                    break
    return "".join(out)


def render(template: str, messages: list[dict[str, Any]]) -> str:
    """Render ``template`` for ``messages`` (``[{"role", "content"}]``) as Ollama would."""
    nodes, _, _ = _parse(_tokens(template), 0, ())
    return _render(nodes, messages, None)


def literal(text: str) -> str:
    """Text as it may stand in a template: plain, or a quoted string where it holds ``{{`` / ``}}``."""
    return text if "{{" not in text and "}}" not in text else "{{ " + json.dumps(text, ensure_ascii=False) + " }}"
