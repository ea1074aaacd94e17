"""After a hook returns: move its output into place and record what it made, with its lineage.

This runs in the worker, so the (possibly long) content hashing of a new model or adapter never
blocks the server. A collision at this point (someone created the same name meanwhile) fails the job
and leaves the output in ``runs/<job_id>/output/``: nothing is overwritten, nothing is lost.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lora_factory.core.catalog.artifacts import ArtifactStore
from lora_factory.core.catalog.datasets import dataset_meta_path
from lora_factory.core.catalog.exports import write_export_info
from lora_factory.core.errors import LoRAFactoryError
from lora_factory.core.jobs.context import JobContext
from lora_factory.core.jobs.store import JobStore
from lora_factory.core.storage.db import now_iso
from lora_factory.core.storage.workspace import Workspace, has_files, write_text_atomic


def finalize_job(workspace: Workspace, store: JobStore, job: dict[str, Any], ctx: JobContext,
                 result: dict[str, Any], plugin_host: Any, canceled: bool = False) -> dict[str, Any]:
    artifacts = ArtifactStore(workspace.db_path, workspace.home)
    try:
        kind, modality, spec = job["kind"], job["modality"], job["spec"]
        name = job["output_name"] or spec.get("output_name") or spec.get("name")
        if kind == "train":
            return _finalize_train(workspace, artifacts, job, ctx, result, name, canceled)
        if kind in ("download", "merge"):
            if canceled:
                return result | {"published": False}
            dest = workspace.move_into_place(ctx.output_dir, workspace.models_dir(modality) / name)
            parents = []
            if kind == "merge":
                parents = [(artifacts.ensure("adapter", modality, Path(spec["adapter"])), "adapter"),
                           (artifacts.ensure("model", modality, Path(spec["base_model"])), "base_model")]
            meta = {k: spec.get(k) for k in ("source", "repo_id", "revision", "local_path") if spec.get(k)}
            artifact_id = artifacts.register("model", modality, dest, job["id"], parents, meta | {"summary": result})
            ctx.output_dir.mkdir(parents=True, exist_ok=True)
            return result | {"path": workspace.relative(dest), "artifact_id": artifact_id, "published": True}
        if kind == "export":
            return _finalize_export(workspace, artifacts, job, ctx, result, name, canceled)
        if kind == "refine":
            return _finalize_refine(workspace, artifacts, job, ctx, result, canceled)
        if kind == "eval":
            results_path = ctx.run_dir / "eval_results.json"
            write_text_atomic(results_path, json.dumps(result, ensure_ascii=False, indent=2))
            parents = []
            if spec.get("adapter"):
                parents.append((artifacts.ensure("adapter", modality, Path(spec["adapter"])), "adapter"))
            artifact_id = artifacts.register("eval", modality, results_path, job["id"], parents,
                                             {"summary": result.get("summary"), "suite": spec.get("suite_name")},
                                             name=f"eval_{job['id']}")
            return result | {"artifact_id": artifact_id}
        return result
    finally:
        artifacts.close()


def _finalize_train(workspace: Workspace, artifacts: ArtifactStore, job: dict[str, Any], ctx: JobContext,
                    result: dict[str, Any], name: str, canceled: bool) -> dict[str, Any]:
    modality, spec = job["modality"], job["spec"]
    if not has_files(ctx.output_dir):
        return result | {"published": False}
    dest = workspace.move_into_place(ctx.output_dir, workspace.adapters_dir(modality) / name)
    ctx.output_dir.mkdir(parents=True, exist_ok=True)
    parents = [
        (artifacts.ensure("model", modality, Path(spec["base_model"])), "base_model"),
        (artifacts.ensure("dataset", modality, Path(spec["dataset"])), "dataset"),
    ]
    meta = {
        "preset": spec.get("preset"),
        "params": spec.get("params"),
        "base_model": spec.get("base_model_ref"),
        "dataset": spec.get("dataset_ref"),
        "metrics": result,
        "partial": canceled,
    }
    artifact_id = artifacts.register("adapter", modality, dest, job["id"], parents, meta)
    ctx.log(f"adapter saved to {workspace.relative(dest)} ({'partial, canceled' if canceled else 'complete'})")
    return result | {"path": workspace.relative(dest), "artifact_id": artifact_id, "published": True}


def _finalize_export(workspace: Workspace, artifacts: ArtifactStore, job: dict[str, Any], ctx: JobContext,
                     result: dict[str, Any], name: str, canceled: bool) -> dict[str, Any]:
    """``exports/<modality>/<name>/``, registered as a child of its adapter (role ``adapter``) and base model."""
    modality, spec = job["modality"], job["spec"]
    if canceled or not has_files(ctx.output_dir):
        return result | {"published": False}
    if result.get("publish_as") == "adapter":
        return _finalize_derived_adapter(workspace, artifacts, job, ctx, result, name)
    record = {"target": spec.get("target"), "adapter": spec.get("adapter_ref"), "base_model": spec.get("base_model_ref"),
              "params": spec.get("params"), "warnings": (spec.get("warnings") or []) + (result.get("warnings") or []),
              "job_id": job["id"], "summary": result}
    write_export_info(ctx.output_dir, record)
    dest = workspace.move_into_place(ctx.output_dir, workspace.exports_dir(modality) / name)
    ctx.output_dir.mkdir(parents=True, exist_ok=True)
    parents = [(artifacts.ensure("adapter", modality, Path(spec["adapter"])), "adapter")]
    if spec.get("base_model") and Path(spec["base_model"]).is_dir():
        parents.append((artifacts.ensure("model", modality, Path(spec["base_model"])), "base_model"))
    artifact_id = artifacts.register("export", modality, dest, job["id"], parents,
                                     {k: v for k, v in record.items() if k != "job_id"})
    ctx.log(f"export saved to {workspace.relative(dest)}")
    return result | {"path": workspace.relative(dest), "artifact_id": artifact_id, "published": True}


def _finalize_derived_adapter(workspace: Workspace, artifacts: ArtifactStore, job: dict[str, Any], ctx: JobContext,
                              result: dict[str, Any], name: str) -> dict[str, Any]:
    """An export that makes a new adapter (LoRAs merged, a rank resized): ``lora_adapters/<modality>/<name>/``,
    its parents every source adapter (role ``adapter``, so the export is listed under each) and the base."""
    modality, spec = job["modality"], job["spec"]
    dest = workspace.move_into_place(ctx.output_dir, workspace.adapters_dir(modality) / name)
    ctx.output_dir.mkdir(parents=True, exist_ok=True)
    sources = [Path(s["path"]) for s in spec.get("sources") or []] or [Path(spec["adapter"])]
    parents = [(artifacts.ensure("adapter", modality, path), "adapter") for path in sources if path.is_dir()]
    if spec.get("base_model") and Path(spec["base_model"]).is_dir():
        parents.append((artifacts.ensure("model", modality, Path(spec["base_model"])), "base_model"))
    meta = {"target": spec.get("target"), "params": spec.get("params"), "base_model": spec.get("base_model_ref"),
            "derived_from": [s.get("ref") for s in spec.get("sources") or []], "checks": result.get("checks"),
            "architecture": spec.get("architecture"), "metrics": result.get("checks")}
    artifact_id = artifacts.register("adapter", modality, dest, job["id"], parents, meta)
    ctx.log(f"adapter saved to {workspace.relative(dest)}")
    return result | {"path": workspace.relative(dest), "artifact_id": artifact_id, "published": True,
                     "adapter_name": dest.name}


def _finalize_refine(workspace: Workspace, artifacts: ArtifactStore, job: dict[str, Any], ctx: JobContext,
                     result: dict[str, Any], canceled: bool) -> dict[str, Any]:
    modality, spec = job["modality"], job["spec"]
    output = result.get("output") if isinstance(result.get("output"), dict) else {}
    produced = output.get("name") or result.get("output_file")
    if not produced:
        raise LoRAFactoryError("REFINE_NO_OUTPUT", "錬成結果のファイルがありません。",
                               "The refine operation produced no output file.", http_status=500)
    if result.get("rows_out") == 0 and not canceled:
        raise LoRAFactoryError(
            "REFINE_EMPTY_RESULT",
            "錬成の結果が 0 行になりました。条件(フィルタの長さなど)を緩めてください。新しい版は作られていません。",
            "The refine left no rows; loosen its settings (e.g. the filter's lengths). No version was created.",
            http_status=422, detail={"removed": result.get("removed")})
    source = ctx.output_dir / Path(str(produced)).name
    if not source.exists():
        raise LoRAFactoryError("REFINE_NO_OUTPUT", f"錬成結果「{source.name}」が見つかりません。",
                               f"The refine output '{source.name}' was not written.", http_status=500)
    dest = workspace.move_into_place(source, workspace.datasets_dir(modality) / source.name)
    fmt = output.get("format") or result.get("format")
    write_text_atomic(dataset_meta_path(dest), json.dumps(
        {"format": fmt, "rows": result.get("rows_out"), "original_name": None, "refined_from": spec.get("dataset_ref")},
        ensure_ascii=False, indent=2))
    parent_id = artifacts.ensure("dataset", modality, Path(spec["dataset"]))
    lineage = {
        "name": dest.name,
        "parent": spec.get("dataset_ref"),
        "operations": spec.get("operations"),
        "report": {k: result.get(k) for k in ("rows_in", "rows_out", "removed", "per_operation", "stopped")},
        "job_id": job["id"],
        "created_at": now_iso(),
        "partial": canceled,
        "kind": "folder" if dest.is_dir() else "file",
        "format": fmt,
    }
    write_text_atomic(workspace.lineage_dir(modality) / f"{dest.name}.json",
                      json.dumps(lineage, ensure_ascii=False, indent=2))
    artifact_id = artifacts.register("dataset", modality, dest, job["id"], [(parent_id, "parent")],
                                     {"operations": spec.get("operations"), "rows": result.get("rows_out"),
                                      "format": fmt, "partial": canceled})
    return result | {"path": workspace.relative(dest), "artifact_id": artifact_id, "published": True}
