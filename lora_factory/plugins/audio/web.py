"""The audio plugin's HTTP routes, mounted by the host under ``/api/audio`` (``register_routes``):
the user dictionary (surface -> reading) and the "as it will be read" preview.

``GET /api/audio/dictionary``, ``PUT /api/audio/dictionary`` (the whole list, written atomically),
``POST /api/audio/read`` (normalised text + katakana reading with accents, no model needed),
``POST /api/audio/slices/preview`` (the slice review: a recording's waveform and proposed cuts; the
edited cuts are saved by the ordinary refine route, ``slice`` with ``cuts``). The
file lives in the workspace (``datasets/audio/.user_dictionary.json``); training and synthesis read
it from there. Imported by the server only (FastAPI), never by a job worker.
"""

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from lora_factory.kit import LoRAFactoryError
from lora_factory.plugins.audio import dictionary_store
from lora_factory.plugins.audio.slice_review import PreviewBody


class DictionaryBody(BaseModel):
    entries: list[dict[str, Any]] = Field(default_factory=list, max_length=5000)


class ReadBody(BaseModel):
    text: str = Field(max_length=5000)
    latin: str = "keep"


def build_router(workspace: Any, modality: str) -> APIRouter:
    router = APIRouter()

    def folder() -> Any:
        return workspace.datasets_dir(modality)

    @router.get("/dictionary")
    def get_dictionary() -> dict[str, Any]:
        return {"entries": dictionary_store.load_entries(folder())}

    @router.put("/dictionary")
    def put_dictionary(body: DictionaryBody) -> dict[str, Any]:
        return {"entries": dictionary_store.save_entries(folder(), body.entries)}

    @router.post("/read")
    def read_preview(body: ReadBody) -> dict[str, Any]:
        return dictionary_store.read_preview(folder(), body.text, body.latin)

    @router.post("/slices/preview")
    def slices_preview(body: PreviewBody) -> dict[str, Any]:
        from lora_factory.plugins.audio.audio_io import AudioReadError
        from lora_factory.plugins.audio.slice_review import preview

        dataset = workspace.resolve_ref(body.dataset, "datasets", modality)
        if not dataset.is_dir():
            raise LoRAFactoryError("DATASET_NOT_FOUND", f"データセットが見つかりません: {body.dataset}",
                                   f"Dataset not found: {body.dataset}", 404)
        try:
            return preview(dataset, body)
        except (ValueError, AudioReadError) as exc:
            raise LoRAFactoryError("SLICE_PREVIEW_FAILED", f"分割のプレビューを作れません: {exc}",
                                   f"Cannot preview the slices: {exc}", 422, detail={"field": "recording"}) from exc

    return router
