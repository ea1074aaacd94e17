"""The files a generation request names (an img2img image, a clip to transcribe): uploads or files
inside the workspace, nothing else.

Why one error for "outside" and "missing": a different answer for ``/etc/shadow`` and
``/nonexistent`` tells a client which server paths exist. Every refused value gets the same
``INFER_INVALID_INPUT`` (422) naming only the field, never the path.
"""

from __future__ import annotations

from typing import Any

from lora_factory.core.errors import LoRAFactoryError
from lora_factory.core.inference.media import UPLOAD_PREFIX, MediaStore

GENERIC_FILE_KEYS = ("file",)  # the modality-neutral name of an input file


def file_fields(desc: dict[str, Any], task: str | None) -> set[str]:
    """The input keys the modality declares as files (``"format": "upload"`` in its input schema)."""
    schema = ((desc.get("infer_schemas") or {}).get(task or "") or {}).get("input_schema") or {}
    props = schema.get("properties") or {}
    return {key for key, spec in props.items() if isinstance(spec, dict) and spec.get("format") == "upload"} \
        | set(GENERIC_FILE_KEYS)


def invalid_input(field: str) -> LoRAFactoryError:
    return LoRAFactoryError(
        "INFER_INVALID_INPUT",
        f"input.{field} には /api/infer/uploads でアップロードした upload:<id> か、ワークスペース内のファイル"
        "(相対パス)を指定してください。指定されたファイルは使えません。",
        f"input.{field} must be an upload (upload:<id> from /api/infer/uploads) or a file inside the workspace "
        "(a relative path); the file given cannot be used.",
        http_status=422, detail={"field": f"input.{field}"})


def resolve_inputs(media: MediaStore, inputs: dict[str, Any], files: set[str]) -> dict[str, Any]:
    """``inputs`` with each file field turned into an absolute path inside the workspace (uploads
    too); other fields pass as they are (``upload:<id>`` anywhere is still resolved)."""
    out: dict[str, Any] = {}
    for key, value in inputs.items():
        if key not in files or value is None or value == "":
            out[key] = media.resolve_uploads(value)
            continue
        if not isinstance(value, str):
            raise invalid_input(key)
        if value.startswith(UPLOAD_PREFIX):
            out[key] = media.resolve_uploads(value)
            continue
        try:
            path = media.workspace.resolve_inside(value)
        except LoRAFactoryError:
            raise invalid_input(key) from None
        if not path.is_file():
            raise invalid_input(key)
        out[key] = str(path)
    return out
