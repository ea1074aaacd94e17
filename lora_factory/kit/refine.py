"""The refine operation registry every modality shares: what an operation is, how a recipe is
validated, and how what each step did is counted for the report.

A refinement is a recipe ``[{"op": name, "params": {...}}, ...]`` applied in order. A plugin lists
its operations once as :class:`Operation` (name, pydantic parameters, labels); the
:class:`OperationRegistry` gives the ``refine_operations`` listing the UI renders as forms and the
validation the server runs before queueing (and the worker again before working), so every plugin
answers a bad recipe with the same codes and detail keys:

- ``REFINE_INVALID_OPERATION``: no list, or an unknown ``op`` (detail: ``index`` from 0, ``position``
  from 1, ``op``, the names ``available`` / ``choices``);
- ``REFINE_INVALID_PARAMS``: a parameter pydantic refuses (detail: ``index``, ``position``, ``op``,
  the first ``field`` / ``value`` / ``reason`` and every error in ``errors``).

:class:`RefineReport` counts rows removed and changed per reason and keeps a few examples of each,
the parts of the report every plugin's ``refine_dataset`` returns.

    OPS = OperationRegistry([Operation("trim", TrimParams, "前後の無音を削除", "Trim silence")])
    for name, params in OPS.validate(spec["operations"]): ...
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from lora_factory.core.errors import LoRAFactoryError
from lora_factory.kit.presets import invalid_params, with_titles

__all__ = ["RefineParams", "Operation", "OperationRegistry", "RefineReport"]


class RefineParams(BaseModel):
    """Base of an operation's parameters: unknown fields are refused (a typo is an error, not ignored)."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Operation:
    """One refine operation as the UI lists it; ``extra`` adds plugin-specific keys to its listing."""

    name: str
    params: type[BaseModel]
    label_ja: str
    label_en: str
    description_ja: str | None = None
    description_en: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class OperationRegistry:
    """A plugin's refine operations by name.

    :param titles_ja: Japanese field titles added to every parameter schema (``title_ja``).
    :param http_status: the status of a refused recipe (the text plugin's route documents 400, image
        and audio answer 422).
    """

    def __init__(self, operations: list[Operation], *, titles_ja: dict[str, str] | None = None,
                 http_status: int = 422) -> None:
        self.operations = {op.name: op for op in operations}
        self.titles_ja = titles_ja or {}
        self.http_status = http_status

    def __contains__(self, name: object) -> bool:
        return name in self.operations

    def __getitem__(self, name: str) -> Operation:
        return self.operations[name]

    @property
    def names(self) -> list[str]:
        return list(self.operations)

    def describe(self) -> dict[str, dict[str, Any]]:
        """``{name: {label_ja, label_en, [description_ja, description_en,] params_schema, ...}}`` for the UI."""
        out: dict[str, dict[str, Any]] = {}
        for name, op in self.operations.items():
            entry: dict[str, Any] = {"label_ja": op.label_ja, "label_en": op.label_en}
            if op.description_ja is not None or op.description_en is not None:
                entry.update(description_ja=op.description_ja or "", description_en=op.description_en or "")
            entry["params_schema"] = with_titles(op.params.model_json_schema(), self.titles_ja)
            entry.update(op.extra)
            out[name] = entry
        return out

    def validate(self, operations: Any) -> list[tuple[str, BaseModel]]:
        """Every operation known and its parameters valid (defaults filled in), before any work starts."""
        names = self.names
        if not isinstance(operations, list) or not operations:
            raise LoRAFactoryError(
                "REFINE_INVALID_OPERATION", "operations には 1 つ以上の操作を指定してください。",
                "Give at least one operation in 'operations'.", self.http_status,
                detail={"field": "operations", "available": names, "choices": names})
        parsed: list[tuple[str, BaseModel]] = []
        for index, item in enumerate(operations):
            name = item.get("op") if isinstance(item, dict) else None
            where = {"index": index, "position": index + 1, "op": name}
            if name not in self.operations:
                raise LoRAFactoryError(
                    "REFINE_INVALID_OPERATION",
                    f"{index + 1} 番目の操作「{name}」は存在しません。使える操作: {', '.join(names)}",
                    f"Operation {index + 1} '{name}' does not exist. Available: {', '.join(names)}",
                    self.http_status, detail={**where, "available": names, "choices": names})
            try:
                params = self.operations[name].params.model_validate(item.get("params") or {})
            except ValidationError as exc:
                error = invalid_params(exc, "REFINE_INVALID_PARAMS", f"{index + 1} 番目の操作「{name}」のパラメータ",
                                       f"Parameter of operation {index + 1} '{name}'")
                error.http_status = self.http_status
                error.detail = {**where, **(error.detail or {})}
                raise error from exc
            parsed.append((name, params))
        return parsed

    def validate_dicts(self, operations: Any) -> list[dict[str, Any]]:
        """:meth:`validate` as ``[{"op", "params": {...}}]`` (plain values, defaults filled in)."""
        return [{"op": name, "params": params.model_dump()} for name, params in self.validate(operations)]


class RefineReport:
    """Rows removed / changed per reason, and up to ``max_examples`` examples of each reason."""

    def __init__(self, max_examples: int = 3) -> None:
        self.max_examples = max_examples
        self.removed: Counter[str] = Counter()
        self.changed: Counter[str] = Counter()
        self.examples: dict[str, list[Any]] = {}

    def example(self, reason: str, value: Any) -> None:
        bucket = self.examples.setdefault(reason, [])
        if len(bucket) < self.max_examples:
            bucket.append(value)

    def remove(self, reason: str, example: Any) -> None:
        self.removed[reason] += 1
        self.example(reason, example)

    def change(self, reason: str, example: Any = None, count: int = 1) -> None:
        self.changed[reason] += count
        if example is not None:
            self.example(reason, example)

    def merge(self, other: RefineReport) -> None:
        """Add ``other``'s counts and examples (a step's report into the run's), examples still capped."""
        self.removed.update(other.removed)
        self.changed.update(other.changed)
        for reason, items in other.examples.items():
            for item in items:
                self.example(reason, item)
