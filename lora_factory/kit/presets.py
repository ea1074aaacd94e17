"""Presets merged with the user's overrides and validated by a pydantic model, once, in the server.

Why pydantic: the UI, the API and ``runs/<job_id>/config.json`` speak the same keys; a typo
(``learnig_rate``) must fail with the field named, not be silently ignored. The server resolves the
parameters before queueing (``resolve_train_spec``); the worker reads the resolved dict with
:func:`validate_params` and never merges a preset again. An inference request is validated once, by
``resolve_infer_request``; the worker rebuilds its parameters with :func:`trusted`.
"""

from __future__ import annotations

from typing import Any, TypeVar, get_args

from pydantic import BaseModel, ValidationError

from lora_factory.core.errors import LoRAFactoryError

ParamsModel = TypeVar("ParamsModel", bound=BaseModel)


def unknown_preset(preset: str, choices: list[str]) -> LoRAFactoryError:
    return LoRAFactoryError(
        "UNKNOWN_PRESET",
        f"プリセット「{preset}」はありません。{', '.join(choices)} から選んでください。",
        f"Unknown preset '{preset}'; choose one of {', '.join(choices)}.",
        http_status=400,
        detail={"field": "preset", "value": preset, "choices": choices},
    )


def invalid_params(exc: ValidationError, code: str = "INVALID_TRAIN_PARAMS", what_ja: str = "学習パラメータ",
                   what_en: str = "Training parameter") -> LoRAFactoryError:
    """A pydantic error as our error: the first field named, every error listed in ``detail``."""
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first.get("loc", ())) or "params"
    reason = first.get("msg", "invalid")
    return LoRAFactoryError(
        code,
        f"{what_ja}「{field}」が不正です: {reason}",
        f"{what_en} '{field}' is invalid: {reason}",
        http_status=422,
        detail={"field": field, "value": first.get("input"), "reason": reason,
                "errors": [{"field": ".".join(str(p) for p in e.get("loc", ())), "reason": e.get("msg")}
                           for e in exc.errors()]},
    )


def resolve_params(model_cls: type[ParamsModel], presets: dict[str, dict[str, Any]], preset: str,
                   overrides: dict[str, Any] | None, *layers: dict[str, Any]) -> ParamsModel:
    """``presets[preset]``, then each extra layer (e.g. a VRAM preset), then ``overrides``; validated."""
    if preset not in presets:
        raise unknown_preset(preset, list(presets))
    merged: dict[str, Any] = dict(presets[preset])
    for layer in layers:
        merged.update(layer or {})
    merged.update(overrides or {})
    try:
        return model_cls(**merged)
    except ValidationError as exc:
        raise invalid_params(exc) from exc


def validate_params(model_cls: type[ParamsModel], params: dict[str, Any]) -> ParamsModel:
    """Re-read a resolved parameter dict (in the worker); the same error shape if it was edited badly."""
    try:
        return model_cls.model_validate(params)
    except ValidationError as exc:
        raise invalid_params(exc) from exc


def trusted(model_cls: type[ParamsModel], params: dict[str, Any]) -> ParamsModel:
    """Rebuild a parameter model from a dict the server already validated (``resolve_infer_request``),
    without validating it again: the worker trusts what it is given. Nested models are rebuilt too,
    defaults fill what is missing and keys the model does not know are left out."""
    values: dict[str, Any] = {}
    for name, field in model_cls.model_fields.items():
        if name not in params:
            continue
        value = params[name]
        nested = _model_in(field.annotation)
        if nested is not None and isinstance(value, dict):
            value = trusted(nested, value)
        values[name] = value
    return model_cls.model_construct(**values)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation (``Sub``, ``Sub | None``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def schema_for(model_cls: type[BaseModel], titles_ja: dict[str, str] | None = None) -> dict[str, Any]:
    """The model's JSON schema with ``title_ja`` on every known property (``$defs`` too): the UI renders
    the form from it and shows the Japanese title when the language is Japanese."""
    schema = model_cls.model_json_schema()
    return with_titles(schema, titles_ja or {})


def with_titles(schema: dict[str, Any], titles_ja: dict[str, str]) -> dict[str, Any]:
    """Add ``title_ja`` to the properties of ``schema`` (in place) and return it."""
    for name, prop in (schema.get("properties") or {}).items():
        if name in titles_ja:
            prop.setdefault("title_ja", titles_ja[name])
    for definition in (schema.get("$defs") or {}).values():
        with_titles(definition, titles_ja)
    return schema


def with_descriptions_ja(schema: dict[str, Any], descriptions_ja: dict[str, str]) -> dict[str, Any]:
    """Add ``description_ja`` to the described properties of ``schema`` (in place; ``$defs`` too)."""
    for name, prop in (schema.get("properties") or {}).items():
        if name in descriptions_ja:
            prop.setdefault("description_ja", descriptions_ja[name])
    for definition in (schema.get("$defs") or {}).values():
        with_descriptions_ja(definition, descriptions_ja)
    return schema
