"""Helpers that once existed in several copies are defined once (static: the source is read with ast)."""

from __future__ import annotations

import ast
from pathlib import Path

import lora_factory

ROOT = Path(lora_factory.__file__).parent


def definitions(name: str) -> list[str]:
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == name:
                found.append(path.relative_to(ROOT).as_posix())
    return found


def test_one_safetensors_header_reader_one_refine_registry():
    assert definitions("read_safetensors_header") == ["kit/hub.py"]
    assert definitions("OperationRegistry") == ["kit/refine.py"]
    assert definitions("RefineParamError") == []  # audio's own error type gave way to the kit's validation


def test_one_server_sent_events_implementation():
    """Every streamed route goes through routes/sse.py (sse-starlette): no hand-formatted ``event:`` / ``data:``
    lines, no ``text/event-stream`` StreamingResponse, no hand-written disconnect polling elsewhere."""
    offenders = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel == "routes/sse.py":
            continue
        text = path.read_text(encoding="utf-8")
        for needle in ('"event: ', "f\"event: ", '"data: ', 'f"data: ', '"text/event-stream"', "is_disconnected()"):
            if needle in text:
                offenders.append(f"{rel}: {needle}")
    assert not offenders, offenders
