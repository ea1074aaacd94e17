"""Inference requests: a chat's (``chat_request``) and, beyond chat, a modality-neutral one (base,
adapters with weights, uploaded input files, parameters) the owner plugin resolves; and their events
presented to clients.

Routes (``/api/infer/generate``, the OpenAI-compatible media routes) and the CLI call this; the model
runs in the inference worker (``InferenceClient``) or, for the CLI, in its own process.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

from lora_factory.core.errors import LoRAFactoryError
from lora_factory.core.inference.inputs import file_fields, resolve_inputs
from lora_factory.core.inference.media import MediaStore
from lora_factory.core.inference.session import collect_events
from lora_factory.core.schemas import ChatRequest, GenerateRequest


def with_adapters(request: dict[str, Any], adapters: list[dict[str, Any]] | None) -> dict[str, Any]:
    """``adapters`` is the one list (``[{"path", "name", "weight"}]``, applied in order); ``adapter`` (its first
    path, None without one) is derived from it for plugins that apply a single adapter."""
    listed = [dict(a) for a in adapters or []]
    return dict(request, adapters=listed, adapter=str(listed[0]["path"]) if listed else None)


def resolve_infer(plugins: Any, modality: str, request: dict[str, Any], workspace: Any) -> dict[str, Any]:
    """The one resolve of an inference request, in the server before it goes on: the owner's
    ``resolve_infer_request`` validates the parameters and settles the adapters list; the ``infer`` hook gets
    exactly what comes back and validates nothing again."""
    request = with_adapters(request, request.get("adapters"))
    resolved = plugins.call("resolve_infer_request", modality, request=request, workspace=workspace)
    resolved = resolved if isinstance(resolved, dict) else request
    return with_adapters(resolved, resolved.get("adapters"))


class Generation:
    def __init__(self, plugins: Any, catalog: Any, media: MediaStore, inference: Any, workspace: Any) -> None:
        self.plugins = plugins
        self.catalog = catalog
        self.media = media
        self.inference = inference
        self.workspace = workspace

    def task_of(self, desc: dict[str, Any], task: str | None) -> str | None:
        kinds = [k for k in (desc.get("inference_kinds") or []) if k != "chat"]
        if task is None:
            return kinds[0] if kinds else None
        if kinds and task not in kinds:
            raise LoRAFactoryError("UNKNOWN_TASK", f"「{desc['id']}」は「{task}」に対応していません。対応: {', '.join(kinds)}",
                                   f"Modality '{desc['id']}' has no task '{task}'. Supported: {', '.join(kinds)}",
                                   http_status=400, detail={"task": task, "supported": kinds})
        return task

    def chat_request(self, req: ChatRequest, with_adapter: bool = True) -> dict[str, Any]:
        """The ``infer`` request of a chat: the base model and the adapter resolved inside the workspace,
        then resolved once by the owner (``resolve_infer``)."""
        desc = self.plugins.require_modality(req.modality)
        if "chat" not in (desc.get("supports") or []) and "chat" not in (desc.get("inference_kinds") or []):
            raise LoRAFactoryError("CHAT_UNSUPPORTED", f"「{req.modality}」はチャットに対応していません。/api/infer/generate を使ってください。",
                                   f"Modality '{req.modality}' has no chat; use /api/infer/generate.",
                                   http_status=400, detail={"field": "modality"})
        base = self.catalog.model_path(req.modality, req.base_model)
        adapter = self.catalog.adapter_path(req.modality, req.adapter) if (req.adapter and with_adapter) else None
        adapters = [{"path": str(adapter), "name": adapter.name, "weight": 1.0}] if adapter else []
        return resolve_infer(self.plugins, req.modality, {
            "base_model": str(base), "adapters": adapters, "messages": [m.model_dump() for m in req.messages],
            "params": req.params, "stream": req.stream}, self.workspace)

    def request(self, req: GenerateRequest, with_adapter: bool = True) -> dict[str, Any]:
        """The ``infer`` request: workspace references resolved to paths, ``upload:<id>`` inputs to files,
        then the plugin's own ``resolve_infer_request`` (a bad parameter is a 4xx before any model loads)."""
        desc = self.plugins.require_modality(req.modality)
        task = self.task_of(desc, req.task)
        base = self.catalog.model_path(req.modality, req.base_model)
        wanted = ([{"name": req.adapter, "weight": 1.0}] if req.adapter else []) + [a.model_dump() for a in req.adapters]
        adapters = [{"name": a["name"], "weight": float(a["weight"]),
                     "path": str(self.catalog.adapter_path(req.modality, a["name"]))} for a in wanted] if with_adapter else []
        request = {
            "task": task,
            "base_model": str(base),
            "adapters": adapters,
            "input": resolve_inputs(self.media, dict(req.input), file_fields(desc, task)),
            "params": dict(req.params),
            "stream": req.stream,
        }
        return resolve_infer(self.plugins, req.modality, request, self.workspace)

    def stream(self, req: GenerateRequest, cancelled: Callable[[], bool] | None = None) -> Iterator[dict[str, Any]]:
        """Events as a client sees them (media paths turned into URLs), as the plugin yields them."""
        for event in self.inference.stream(req.modality, self.request(req), cancelled):
            yield self.media.present(event, req.modality)

    def complete(self, req: GenerateRequest, with_adapter: bool = True,
                 cancelled: Callable[[], bool] | None = None) -> dict[str, Any]:
        """The whole answer: the final ``done`` event with its text and its media (with URLs)."""
        request = dict(self.request(req, with_adapter=with_adapter), stream=False)
        done = collect_events(self.inference.stream(req.modality, request, cancelled))
        done["media"] = [self.media.present(m, req.modality) for m in done.get("media", [])]
        return done

    def compare(self, req: GenerateRequest, cancelled: Callable[[], bool] | None = None) -> dict[str, Any]:
        """Base and adapter(s) with the same parameters and the same seed (one is drawn when none is given)."""
        if not req.adapter and not req.adapters:
            raise LoRAFactoryError("ADAPTER_REQUIRED", "比較するアダプターを指定してください。", "Choose an adapter to compare.")
        params = dict(req.params)
        params.setdefault("seed", random.randrange(2**31))
        same = req.model_copy(update={"params": params})
        return {"seed": params["seed"], "base": self.complete(same, with_adapter=False, cancelled=cancelled),
                "adapter": self.complete(same, cancelled=cancelled)}
