"""The audio user dictionary (surface -> reading) and the "as it will be read" preview.

``GET /api/audio/dictionary``, ``PUT /api/audio/dictionary`` (the whole list, written atomically),
``POST /api/audio/read`` (normalised text + katakana reading with accents, no model needed). The
file lives in the workspace (``datasets/audio/.user_dictionary.json``); training and synthesis read
it from there.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from lora_factory.core.errors import LoRAFactoryError
from lora_factory.core.services import Services
from lora_factory.core.storage.workspace import write_text_atomic
from lora_factory.routes import services

router = APIRouter(prefix="/api/audio", tags=["audio"])


class DictionaryBody(BaseModel):
    entries: list[dict[str, Any]] = Field(default_factory=list, max_length=5000)


class ReadBody(BaseModel):
    text: str = Field(max_length=5000)
    latin: str = "keep"


def _path(svc: Services) -> Any:
    from lora_factory.plugins.audio.dictionary_store import dictionary_path

    return dictionary_path(svc.workspace.datasets_dir("audio"))


@router.get("/dictionary")
def get_dictionary(svc: Services = Depends(services)) -> dict[str, Any]:
    from lora_factory.plugins.audio.text_norm import UserDictionary

    return {"entries": UserDictionary.load(_path(svc)).to_list()}


@router.put("/dictionary")
def put_dictionary(body: DictionaryBody, svc: Services = Depends(services)) -> dict[str, Any]:
    from lora_factory.plugins.audio.text_norm.user_dict import UserDictionary, validate_entry

    for index, raw in enumerate(body.entries):
        try:
            validate_entry(raw)
        except ValueError as exc:
            raise LoRAFactoryError("DICTIONARY_INVALID", f"{index + 1} 行目の登録が正しくありません: {exc}",
                                   f"Entry {index + 1} is invalid: {exc}", 422,
                                   detail={"index": index, "reason": str(exc)}) from None
    dictionary = UserDictionary.from_list(body.entries)
    path = _path(svc)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, dictionary.to_json())
    return {"entries": dictionary.to_list()}


@router.post("/read")
def read_preview(body: ReadBody, svc: Services = Depends(services)) -> dict[str, Any]:
    from lora_factory.plugins.audio.text_norm import LATIN_MODES, NormalizationOptions, UserDictionary
    from lora_factory.plugins.audio.text_norm.normalize import normalize_with_spans
    from lora_factory.plugins.audio.text_norm.reading import reading_of

    if body.latin not in LATIN_MODES:
        raise LoRAFactoryError("INVALID_REQUEST", "latin は keep / spell / kana のいずれかです。",
                               "latin must be keep, spell or kana.", 422, detail={"field": "latin"})
    options = NormalizationOptions(latin=body.latin, user_dictionary=UserDictionary.load(_path(svc)))
    normalized, spans = normalize_with_spans(body.text, options)  # the rules' readings taken literally
    return {"text": body.text, "normalized": normalized, "reading": reading_of(normalized, spans).to_dict()}
