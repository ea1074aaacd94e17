"""Queueing an export job: the adapter and its base resolved in the workspace, the target checked by
the plugin that owns the modality (``resolve_export_spec``) before anything runs."""

from __future__ import annotations

from typing import Any

from lora_factory.core.errors import LoRAFactoryError
from lora_factory.core.plugin_host.host_targets import HUB_TARGET
from lora_factory.core.schemas import ExportRequest
from lora_factory.core.storage.workspace import safe_name


def submit_export(req: ExportRequest, *, plugins: Any, catalog: Any, jobs: Any, workspace: Any,
                  adapter_base: Any) -> dict[str, Any]:
    """Queue an ``export`` job; returns ``{"job_id", "output_name", "warnings"}``.

    :param adapter_base: ``(modality, adapter_path, base_ref) -> Path``: the adapter's base model.
    :raises LoRAFactoryError: ``EXPORT_UNKNOWN_TARGET`` (400) with the targets the modality offers,
        ``OUTPUT_EXISTS`` (409), and whatever the plugin's ``resolve_export_spec`` refuses.
    """
    desc = plugins.require_modality(req.modality)
    targets = desc.get("export_targets") or {}
    if req.target not in targets:
        raise LoRAFactoryError("EXPORT_UNKNOWN_TARGET",
                               f"「{req.modality}」のエクスポート先に「{req.target}」はありません(使えるもの: {', '.join(targets) or 'なし'})。",
                               f"Modality '{req.modality}' cannot export to '{req.target}' "
                               f"(it offers: {', '.join(targets) or 'nothing'}).",
                               detail={"field": "target", "known": sorted(targets)})
    adapter = catalog.adapter_path(req.modality, req.adapter)
    try:
        base = adapter_base(req.modality, adapter, req.base_model)
    except LoRAFactoryError:
        if req.target != HUB_TARGET:  # a push sends the adapter alone: its base need not be in this workspace
            raise
        base = None
    name = safe_name(req.output_name or f"{adapter.name}-{req.target}", "output name")
    kind = "train" if targets[req.target].get("output") == "adapter" else "export"  # where the output goes
    if jobs.output_taken(kind, req.modality, name) or jobs.store.output_name_taken("export", req.modality, name):
        raise LoRAFactoryError("OUTPUT_EXISTS", f"「{name}」は既に存在します。別の名前を指定してください。",
                               f"'{name}' already exists; choose another name.", http_status=409,
                               detail={"output_name": name})
    spec: dict[str, Any] = {
        "adapter": str(adapter), "base_model": str(base) if base else "", "target": req.target,
        "params": dict(req.params), "output_name": name, "adapter_ref": workspace.relative(adapter),
        "base_model_ref": workspace.relative(base) if base else None,
    }
    if req.target == HUB_TARGET:  # the host's own target, the same for every modality
        from lora_factory.core.jobs.hub_push import resolve_hub_spec

        spec = resolve_hub_spec(spec, home=workspace.home,
                                adapter_info=catalog.adapter_info(req.modality, adapter, with_lineage=True))
    else:
        resolved = plugins.call("resolve_export_spec", req.modality, spec=spec, workspace=workspace)
        if resolved is not None:
            spec = dict(resolved)
    spec["warnings"] = list(spec.get("warnings") or [])
    job_id = jobs.submit("export", req.modality, spec, output_name=name, gpu=False, devices=req.devices)
    return {"job_id": job_id, "output_name": name, "warnings": spec["warnings"]}
