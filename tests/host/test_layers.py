"""The host's sub-packages import only downwards (errors < storage < plugin_host < catalog < inference < jobs
< services), so that a concern can be read, tested and replaced without the ones above it."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "lora_factory" / "core"

# rank of each part of core/; a module may import parts of equal or lower rank only
RANKS = {
    "errors": 0, "process": 0, "schemas": 0, "system_info": 0,
    "storage": 1,
    "plugin_host": 2,
    "catalog": 3,
    "inference": 4,
    "jobs": 5,
    "services": 6,
}


def _part(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[:2] == ["lora_factory", "core"] else None


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
            if node.module == "lora_factory.core":
                names += [f"lora_factory.core.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names += [a.name for a in node.names]
    return names


def test_every_part_of_core_has_a_rank():
    parts = {p.stem if p.is_file() else p.name for p in CORE.iterdir()
             if (p.suffix == ".py" and p.stem != "__init__") or (p.is_dir() and (p / "__init__.py").exists())}
    assert parts == set(RANKS), f"give each part of core/ a rank in RANKS: {sorted(parts ^ set(RANKS))}"


def test_core_imports_only_downwards():
    offenders = []
    for path in CORE.rglob("*.py"):
        rel = path.relative_to(CORE)
        own = rel.parts[0].removesuffix(".py")
        if own == "__init__":
            continue
        for name in _imports(path):
            other = _part(name)
            if other and other != own and RANKS[other] > RANKS[own]:
                offenders.append(f"core/{rel} imports {name} (rank {RANKS[other]} > {RANKS[own]})")
    assert not offenders, "\n".join(offenders)


def test_core_knows_no_web_framework_and_no_ml_library_at_import():
    """The host stays importable without FastAPI internals leaking in and without torch (plugins do ML)."""
    offenders = []
    for path in CORE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:  # module level only: a function may import lazily
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            offenders += [f"{path.relative_to(CORE)}: {n}" for n in names
                          if n.split(".")[0] in {"torch", "transformers", "diffusers", "peft", "fastapi", "starlette"}]
    assert not offenders, offenders
