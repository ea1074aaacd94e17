"""The hook reference of ``docs/plugins.md``, generated from the hookspec docstrings.

Why generated: the docstrings in ``core/hookspecs.py`` are the contract the host is written against;
the documentation plugin authors read must say exactly the same, so it is rendered from them (a test
fails when the two differ). Run ``python -m lora_factory.core.plugin_host.hook_docs --write`` after editing a spec.
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
from pathlib import Path

from lora_factory.core.plugin_host import hookspecs

BEGIN = "<!-- hooks:begin (generated from lora_factory/core/plugin_host/hookspecs.py: python -m lora_factory.core.plugin_host.hook_docs --write) -->"
END = "<!-- hooks:end -->"
DOCS = Path(__file__).resolve().parents[3] / "docs" / "plugins.md"


def hook_functions() -> list[tuple[str, object]]:
    """The hookspecs in the order they are written in ``hookspecs.py``."""
    found = [(name, fn) for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
             if hasattr(fn, "lora_factory_spec")]
    return sorted(found, key=lambda item: item[1].__code__.co_firstlineno)


def signature(name: str, fn: object) -> str:
    """``name(a: str, b: dict[str, Any]) -> ret``, the annotations as written in hookspecs.py."""
    sig = inspect.signature(fn)  # type: ignore[arg-type]
    params = ", ".join(f"{p.name}: {p.annotation}" for p in sig.parameters.values())
    return f"{name}({params}) -> {sig.return_annotation}"


def _markdown(doc: str) -> str:
    """reST field lists (``:param x:``, ``:return:``, ``:raises X:``) as a markdown list."""
    lines = inspect.cleandoc(doc).splitlines()
    out: list[str] = []
    for line in lines:
        field = re.match(r"^:(param|return|raises)\s*([^:]*):\s*(.*)$", line)
        if field:
            kind, name, text = field.groups()
            label = {"param": f"`{name.strip()}`", "return": "**returns**", "raises": f"**raises** `{name.strip()}`"}[kind]
            out.append(f"- {label}: {text}")
        elif line.startswith("    ") and out and out[-1].startswith("- "):
            out[-1] += " " + line.strip()  # continuation of a field
        else:
            out.append(line)
    text = "\n".join(out)
    return re.sub(r"``([^`]+)``", r"`\1`", text)


def render() -> str:
    parts = [BEGIN, ""]
    for name, fn in hook_functions():
        parts += [f"### `{signature(name, fn)}`", _markdown(fn.__doc__ or ""), ""]
    parts.append(END)
    return "\n".join(parts)


def current_section(text: str) -> str | None:
    start, end = text.find(BEGIN), text.find(END)
    return text[start:end + len(END)] if start >= 0 and end > start else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lora_factory.core.plugin_host.hook_docs")
    parser.add_argument("--write", action="store_true", help="rewrite the section of docs/plugins.md")
    args = parser.parse_args(argv)
    text = DOCS.read_text(encoding="utf-8")
    section = current_section(text)
    if not args.write:
        print(render())
        return 0 if section == render() else 1
    if section is None:
        print(f"{DOCS} has no {BEGIN!r} ... {END!r} markers", file=sys.stderr)
        return 2
    DOCS.write_text(text.replace(section, render()), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
