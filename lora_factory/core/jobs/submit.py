"""Submitting work: each ``start_*`` turns a validated request (``core.schemas``) into a job.

Every path a client names is resolved inside the workspace here, and the owner plugin resolves the
spec (``resolve_train_spec`` / ``resolve_refine_spec``) before the job is queued, so a bad name or
parameter is a 4xx at once and ``runs/<id>/config.json`` holds what the run will use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lora_factory.core.catalog.datasets import DatasetCatalog
from lora_factory.core.catalog.models import Catalog
from lora_factory.core.errors import LoRAFactoryError
from lora_factory.core.jobs.cluster.admission import plan_cluster_job
from lora_factory.core.jobs.regression import parse_suite
from lora_factory.core.jobs.scheduler import JobManager
from lora_factory.core.plugin_host.host import PluginHost
from lora_factory.core.schemas import (
    DownloadRequest,
    EvalRequest,
    ExportRequest,
    ImportRequest,
    MergeRequest,
    RefineRequest,
    TinyModelRequest,
    TrainStartRequest,
)
from lora_factory.core.storage.workspace import Workspace, name_from_folder, safe_name


def require_chosen(value: str, field: str) -> None:
    """An empty model or dataset choice said in words ("no dataset chosen"), not as an empty path."""
    if value and value.strip():
        return
    if field == "base_model":
        raise LoRAFactoryError("MODEL_NOT_CHOSEN", "ベースモデルが選ばれていません。使うモデルを選んでください。",
                               "No base model is chosen. Choose the model to start from.", detail={"field": field})
    raise LoRAFactoryError("DATASET_NOT_CHOSEN", "データセットが選ばれていません。使うデータセットを選んでください。",
                           "No dataset is chosen. Choose the dataset to use.", detail={"field": field})


class JobSubmitter:
    """Holds what a submission needs; ``plugins`` is replaced when the plugins are reloaded."""

    def __init__(self, workspace: Workspace, plugins: PluginHost, catalog: Catalog, datasets: DatasetCatalog,
                 jobs: JobManager) -> None:
        self.workspace = workspace
        self.plugins = plugins
        self.catalog = catalog
        self.datasets = datasets
        self.jobs = jobs

    def _output_name(self, kind: str, modality: str, name: str, model_kind: str | None = None) -> str:
        """A safe output name not yet taken; ``model_kind`` puts a download under ``models/<m>/<kind>/``."""
        name = safe_name(name, "output name")
        if model_kind and model_kind != "base":
            self.catalog.models_folder(modality, model_kind)  # a known kind, or 400
            name = f"{model_kind}/{name}"
        if self.jobs.output_taken(kind, modality, name):
            raise LoRAFactoryError("OUTPUT_EXISTS", f"「{name}」は既に存在します。別の名前を指定してください。",
                                   f"'{name}' already exists; choose another name.", http_status=409,
                                   detail={"output_name": name})
        return name

    def start_train(self, req: TrainStartRequest) -> str:
        spec = self.train_spec(req)
        executor = plan_cluster_job(self.workspace.home, self.jobs.cluster)  # None: trains on this machine
        if executor is not None:  # the cluster's workers train; no local device is taken
            return self.jobs.submit("train", req.modality, {**spec, "executor": executor},
                                    output_name=spec["output_name"], gpu=False, devices=0)
        return self.jobs.submit("train", req.modality, spec, output_name=spec["output_name"], devices=req.devices)

    def train_spec(self, req: TrainStartRequest, check_output: bool = True) -> dict[str, Any]:
        """The resolved spec a train request would queue (what ``config.json`` keeps); the estimate
        reads it without queueing (``check_output=False``: a taken name is reported, not refused)."""
        self.plugins.require_modality(req.modality)
        require_chosen(req.base_model, "base_model")
        require_chosen(req.dataset, "dataset")
        base = self.catalog.model_path(req.modality, req.base_model)
        dataset = self.datasets.dataset_path(req.modality, req.dataset)
        output_name = (self._output_name("train", req.modality, req.output_name) if check_output
                       else safe_name(req.output_name, "output name"))
        spec: dict[str, Any] = {
            "base_model": str(base),
            "dataset": str(dataset),
            "base_model_ref": self.workspace.relative(base),
            "dataset_ref": self.workspace.relative(dataset),
            "dataset_options": self.datasets.dataset_options(dataset),
            "output_name": output_name,
            "preset": req.preset,
            "params": dict(req.params),
            "trust_remote_code": req.trust_remote_code,
        }
        resolved = self.plugins.call("resolve_train_spec", req.modality, spec=spec)
        return resolved if resolved is not None else spec

    def start_refine(self, req: RefineRequest) -> str:
        desc = self.plugins.require_modality(req.modality)
        require_chosen(req.dataset, "dataset")
        dataset = self.datasets.dataset_path(req.modality, req.dataset)
        output_name = safe_name(req.output_name, "output name")
        for suffix in [".jsonl", *(desc.get("dataset_extensions") or [])]:
            if suffix and output_name.lower().endswith(suffix.lower()) and len(output_name) > len(suffix):
                output_name = output_name[: -len(suffix)]
                break
        self._output_name("refine", req.modality, output_name)
        known = desc.get("refine_operations") or {}
        for op in req.operations:
            if op.get("op") not in known:
                raise LoRAFactoryError("REFINE_INVALID_OPERATION", f"不明な錬成操作です: {op.get('op')}",
                                       f"Unknown refine operation: {op.get('op')}",
                                       detail={"op": op.get("op"), "known": list(known)})
        spec: dict[str, Any] = {
            "dataset": str(dataset),
            "dataset_ref": self.workspace.relative(dataset),
            "dataset_options": self.datasets.dataset_options(dataset),
            "operations": [{"op": op["op"], "params": dict(op.get("params") or {})} for op in req.operations],
            "output_name": output_name,
        }
        resolved = self.plugins.call("resolve_refine_spec", req.modality, spec=spec, workspace=self.workspace)
        if resolved is not None:
            spec = resolved
        gpu = bool(spec.pop("gpu", False))  # e.g. Evol-Instruct with a local model: queues with training
        return self.jobs.submit("refine", req.modality, spec, output_name=output_name, gpu=gpu, devices=req.devices)

    def start_download(self, req: DownloadRequest) -> str:
        self.plugins.require_modality(req.modality)
        name = self._output_name("download", req.modality, req.name or req.repo_id.replace("/", "__"), req.kind)
        spec = {"source": "hub", "repo_id": req.repo_id, "revision": req.revision, "name": name.rsplit("/", 1)[-1],
                "model_kind": req.kind or "base", "variant": req.variant}
        return self.jobs.submit("download", req.modality, spec, output_name=name)

    def start_import(self, req: ImportRequest) -> str:
        """A local model folder, or a single ``.safetensors`` checkpoint where the modality supports it."""
        desc = self.plugins.require_modality(req.modality)
        source = Path(req.source_path).expanduser()
        single_file = source.is_absolute() and source.is_file()
        if single_file and "single_file" not in (desc.get("supports") or []):
            raise LoRAFactoryError("SINGLE_FILE_UNSUPPORTED",
                                   f"「{req.modality}」は単一ファイルのチェックポイントを取り込めません。モデルのフォルダを指定してください。",
                                   f"Modality '{req.modality}' cannot import a single-file checkpoint; give a model folder.",
                                   detail={"source_path": req.source_path})
        if not source.is_absolute() or not (source.is_dir() or single_file):
            raise LoRAFactoryError("IMPORT_SOURCE_NOT_FOUND", f"フォルダ「{req.source_path}」が見つかりません(絶対パスで指定してください)。",
                                   f"Folder '{req.source_path}' was not found (give an absolute path).",
                                   http_status=404, detail={"source_path": req.source_path})
        default = source.stem if single_file else source.name
        name = self._output_name("download", req.modality, req.name or name_from_folder(default), req.kind)
        spec = {"source": "single_file" if single_file else "local", "local_path": str(source.resolve()),
                "name": name.rsplit("/", 1)[-1], "model_kind": req.kind or "base"}
        return self.jobs.submit("download", req.modality, spec, output_name=name)

    def start_tiny_model(self, req: TinyModelRequest) -> str:
        desc = self.plugins.require_modality(req.modality)
        if "tiny_model" not in (desc.get("supports") or []):
            raise LoRAFactoryError("TINY_MODEL_UNSUPPORTED", f"「{req.modality}」はデモ用の小さなモデルを作成できません。",
                                   f"Modality '{req.modality}' cannot build an offline demo model.")
        name = self._output_name("download", req.modality, req.name)
        reserved = {"source", "name", "model_kind", "local_path", "repo_id"}
        options = {k: v for k, v in req.options.items() if k not in reserved}
        return self.jobs.submit("download", req.modality, {**options, "source": "tiny", "name": name}, output_name=name)

    def start_merge(self, req: MergeRequest) -> str:
        self.plugins.require_modality(req.modality)
        adapter = self.catalog.adapter_path(req.modality, req.adapter)
        base = self._adapter_base(req.modality, adapter, req.base_model)
        name = self._output_name("merge", req.modality, req.output_name)
        spec = {"adapter": str(adapter), "base_model": str(base), "output_name": name,
                "adapter_ref": self.workspace.relative(adapter), "base_model_ref": self.workspace.relative(base)}
        return self.jobs.submit("merge", req.modality, spec, output_name=name, devices=req.devices)

    def start_export(self, req: ExportRequest) -> dict[str, Any]:
        from lora_factory.core.jobs.exports import submit_export

        return submit_export(req, plugins=self.plugins, catalog=self.catalog, jobs=self.jobs, workspace=self.workspace,
                             adapter_base=self._adapter_base)

    def _adapter_base(self, modality: str, adapter: Path, base_ref: str | None) -> Path:
        if base_ref:
            return self.catalog.model_path(modality, base_ref)
        info = self.catalog.adapter_info(modality, adapter)
        if not info.get("base_model"):
            raise LoRAFactoryError("BASE_MODEL_REQUIRED", "このアダプターのベースモデルが不明です。base_model を指定してください。",
                                   "The adapter's base model is unknown; give base_model.")
        return self.catalog.model_path(modality, info["base_model"])

    def start_eval(self, req: EvalRequest) -> str:
        desc = self.plugins.require_modality(req.modality)
        adapter = self.catalog.adapter_path(req.modality, req.adapter)
        base = self._adapter_base(req.modality, adapter, req.base_model)
        kinds = set(desc.get("regression_checks") or {})
        raw = self.workspace.resolve_inside(req.suite_file) if req.suite_file else req.suite
        # stored expanded (shorthands turned into checks), so the job reads exactly what was validated
        suite = [c.model_dump(exclude_none=True, exclude={"contains", "not_contains", "regex", "max_length"})
                 for c in parse_suite(raw, kinds)] if raw else []
        dataset = self.datasets.dataset_path(req.modality, req.dataset) if req.dataset else None
        if not suite and dataset is None:
            raise LoRAFactoryError("EVAL_NOTHING_TO_DO", "回帰テストかデータセットのどちらかを指定してください。",
                                   "Give a regression suite or a dataset.")
        previous = self.catalog.previous_adapter(req.modality, adapter.name) if req.compare_previous else None
        spec = {
            "adapter": str(adapter), "base_model": str(base), "suite": suite,
            "suite_name": Path(req.suite_file).name if req.suite_file else None,
            "dataset": str(dataset) if dataset else None,
            "dataset_options": self.datasets.dataset_options(dataset) if dataset else {},
            "previous_adapter": str(previous) if previous else None,
            "params": req.params, "adapter_ref": self.workspace.relative(adapter),
        }
        return self.jobs.submit("eval", req.modality, spec, output_name=None, devices=req.devices)

