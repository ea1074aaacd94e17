"""The conformance kit: drive one modality through every host path with a tiny scenario, so each hook
its plugin implements is really called (the host records the calls: ``LORA_FACTORY_HOOK_TRACE``).

A plugin ships a scenario (built-in ones in ``lora_factory/plugins/<m>/conformance.py``, a third
party's anywhere) and runs :func:`check_conformance` in its own tests::

    from lora_factory.kit.conformance import Scenario, check_conformance

    def test_my_plugin_conforms(tmp_path):
        report = check_conformance(tmp_path / "ws", Scenario(modality="mine", ...), plugin_files=[MY_PLUGIN])
        assert not report["missing"], report

Every step goes through the same services the REST API and the CLI use (jobs in worker processes,
inference in the inference worker), with tiny models and one or two training steps.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Scenario", "run_scenario", "check_conformance", "read_trace", "zip_folder_bytes"]


@dataclass
class Scenario:
    """How to exercise a modality cheaply.

    :param make_dataset: writes a dataset (a file, or a folder for folder modalities) under the given
        folder and returns its path; it is uploaded (a folder as a zip) like a user would.
    :param train_params: overrides for a run of one or two steps.
    :param infer: a chat ``{"messages": [...]}`` or a generate body ``{"task", "input", "params"}``.
    :param suite: a regression suite (text checks and the plugin's own check kinds).
    :param refine_operations: operations of one refine job (omit when the plugin has none).
    :param eval_dataset: also compute held-out metrics on the dataset (the ``evaluate`` hook).
    :param make_index: writes a dataset index file (e.g. ``dataset_info.json``) beside its datasets
        inside the workspace and returns its workspace-relative path (``import_dataset_index``).
    :param make_single_file: writes a single-file checkpoint and returns its path (``single_file``).
    :param export: an export request's ``target`` and ``params`` (``adapter`` defaults to the trained one;
        ``base_model`` optional), run as an export job (``resolve_export_spec``, ``export_adapter``).
    :param make_export_adapter: prepares, inside the workspace (given its home), the adapter and base
        the export names when the trained one cannot be exported (e.g. a Whisper LoRA for ``ct2``).

    Every target of the description's ``dataset_exports`` is exported from the uploaded dataset.
    """

    modality: str
    make_dataset: Callable[[Path], Path]
    train_params: dict[str, Any] = field(default_factory=dict)
    preset: str | None = None
    infer: dict[str, Any] = field(default_factory=dict)
    suite: list[dict[str, Any]] = field(default_factory=list)
    refine_operations: list[dict[str, Any]] = field(default_factory=list)
    eval_dataset: bool = False
    make_index: Callable[[Path], str] | None = None
    make_single_file: Callable[[Path], Path] | None = None
    export: dict[str, Any] | None = None
    make_export_adapter: Callable[[Path], None] | None = None
    timeout_s: float = 600.0


def zip_folder_bytes(folder: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path in sorted(Path(folder).rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder).as_posix())
    return buf.getvalue()


def _wait(svc: Any, job_id: str, timeout: float, what: str) -> dict[str, Any]:
    job = svc.jobs.wait(job_id, timeout=timeout)
    if job["status"] != "completed":
        log = svc.job_views.log_tail(job_id, 60)["lines"]
        raise AssertionError(f"{what} job {job_id} ended {job['status']}: {job.get('error')}\n" + "\n".join(log))
    return job


def run_scenario(home: Path, scenario: Scenario, base_model: Path | None = None) -> dict[str, Any]:
    """Every host path for the scenario's modality, in order; returns what each step answered.

    The base model is the modality's tiny one, built by a job; ``base_model`` (a model folder) is imported
    instead (a job too, through the same ``download_model`` hook), so a suite that runs several scenarios or
    tests on one tiny model builds it once.
    """
    from lora_factory.core.schemas import (
        ChatRequest,
        EvalRequest,
        ExportRequest,
        GenerateRequest,
        ImportInfoRequest,
        ImportRequest,
        MergeRequest,
        RefineRequest,
        TinyModelRequest,
        TrainStartRequest,
    )
    from lora_factory.core.services import Services

    svc = Services(home)
    svc.jobs.enable_warm_start()  # the workers start as the server starts them (core/jobs/warm_start)
    out: dict[str, Any] = {}
    m = scenario.modality
    try:
        desc = svc.plugins.require_modality(m)
        supports = set(desc.get("supports") or [])
        timeout = scenario.timeout_s
        if base_model is None:
            _wait(svc, svc.submitter.start_tiny_model(TinyModelRequest(modality=m, name="base")), timeout, "tiny model")
        else:
            _wait(svc, svc.submitter.start_import(ImportRequest(modality=m, source_path=str(Path(base_model).resolve()),
                                                      name="base")), timeout, "base model import")
        out["models"] = svc.catalog.list_models(m)
        source = scenario.make_dataset(Path(home).parent / f"{m}-dataset-source")
        if source.is_dir():
            info = svc.datasets.upload_dataset(m, f"{source.name}.zip", io.BytesIO(zip_folder_bytes(source)))
        else:
            with open(source, "rb") as fh:
                info = svc.datasets.upload_dataset(m, source.name, fh)
        dataset = info["name"]
        out["dataset"] = info
        if scenario.refine_operations:
            job = svc.submitter.start_refine(RefineRequest(modality=m, dataset=dataset, operations=scenario.refine_operations,
                                                 output_name=f"{Path(dataset).stem}-refined"))
            out["refine"] = _wait(svc, job, timeout, "refine")["result"]
        for target in desc.get("dataset_exports") or {}:  # layouts other tools open (export_dataset)
            exported = svc.datasets.archive(m, dataset, Path(home).parent / f"{m}-exports", target=target)
            out.setdefault("exports", {})[target] = str(exported)
        train = TrainStartRequest(modality=m, base_model="base", dataset=dataset, output_name="conformance",
                                  preset=scenario.preset or desc.get("default_preset") or "quick",
                                  params=scenario.train_params)
        out["train"] = _wait(svc, svc.submitter.start_train(train), timeout, "train")["result"]
        if scenario.infer.get("messages"):
            chat = ChatRequest(modality=m, base_model="base", adapter="conformance", stream=False,
                               messages=scenario.infer["messages"], params=scenario.infer.get("params") or {})
            out["infer"] = svc.inference.complete(m, svc.generation.chat_request(chat))
        elif scenario.infer:
            out["infer"] = svc.generation.complete(GenerateRequest(modality=m, base_model="base", adapter="conformance",
                                                                   **scenario.infer))
        svc.inference.close()
        if scenario.suite or scenario.eval_dataset:
            req = EvalRequest(modality=m, adapter="conformance", suite=scenario.suite or None,
                              dataset=dataset if scenario.eval_dataset else None)
            out["eval"] = _wait(svc, svc.submitter.start_eval(req), timeout, "eval")["result"]
        if "merge" in supports:
            req_m = MergeRequest(modality=m, adapter="conformance", output_name="merged")
            out["merge"] = _wait(svc, svc.submitter.start_merge(req_m), timeout, "merge")["result"]
        if scenario.export is not None:
            if scenario.make_export_adapter is not None:
                scenario.make_export_adapter(Path(home))
            req_x = ExportRequest(modality=m, **{"adapter": "conformance", **scenario.export})
            out["export"] = _wait(svc, svc.submitter.start_export(req_x)["job_id"], timeout, "export")["result"]
        if scenario.make_single_file is not None:
            single = scenario.make_single_file(Path(home).parent / f"{m}-single-file")
            req_i = ImportRequest(modality=m, source_path=str(single), name="single")
            out["single_file"] = _wait(svc, svc.submitter.start_import(req_i), timeout, "single-file import")["result"]
        if scenario.make_index is not None:
            out["index"] = svc.dataset_index.import_dataset_info(ImportInfoRequest(modality=m,
                                                                     dataset_info_path=scenario.make_index(Path(home))))
        out["extensions"] = _extensions(home)
        return out
    finally:
        svc.close()


def _extensions(home: Path) -> dict[str, Any]:
    """What the plugins add to the server, the CLI and the UI, as a user meets it: the app is built
    (``register_routes``, ``register_ui``: every UI module must be served), the CLI's parser
    (``register_commands``) and the reward list the training form shows (``register_reward_functions``)."""
    from fastapi.testclient import TestClient

    from lora_factory.app import create_app
    from lora_factory.cli import build_parser

    app = create_app(home, start_scheduler=False)
    with TestClient(app) as client:
        modules = client.get("/api/ui/modules").json()["modules"]
        for module in modules:
            res = client.get(module["url"])
            if res.status_code != 200:
                raise AssertionError(f"the UI module {module['url']} of {module['plugin']} is not served: {res.status_code}")
        paths = sorted(app.openapi()["paths"])
        rewards = client.get("/api/rewards").json()["rewards"]  # register_reward_functions, as the form lists them
    parser = build_parser(["--home", str(home)])
    commands = next(a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {"ui_modules": modules, "paths": paths, "commands": sorted(commands),
            "rewards": sorted(r["name"] for r in rewards)}


def read_trace(path: Path) -> list[dict[str, Any]]:
    if not Path(path).exists():
        return []
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def check_conformance(home: Path, scenario: Scenario, plugin_files: list[Path] | tuple[Path, ...] = (),
                      base_model: Path | None = None) -> dict[str, Any]:
    """Run the scenario with hook tracing on; report the hooks the owner plugin implements but that
    were never called for its modality (``missing``), and what every step answered (``steps``).
    ``base_model``: a model folder imported as the base instead of building the tiny one (see
    :func:`run_scenario`)."""
    from lora_factory.core.plugin_host.host import load_plugin_host

    home = Path(home)
    (home / "plugins").mkdir(parents=True, exist_ok=True)
    for plugin in plugin_files:
        shutil.copy(plugin, home / "plugins" / Path(plugin).name)
    trace = home.parent / f"hook-trace-{scenario.modality}.jsonl"
    trace.unlink(missing_ok=True)
    previous = os.environ.get("LORA_FACTORY_HOOK_TRACE")
    os.environ["LORA_FACTORY_HOOK_TRACE"] = str(trace)
    try:
        steps = run_scenario(home, scenario, base_model)
        host = load_plugin_host(home)
    finally:
        if previous is None:
            os.environ.pop("LORA_FACTORY_HOOK_TRACE", None)
        else:
            os.environ["LORA_FACTORY_HOOK_TRACE"] = previous
    owner = host.owner(scenario.modality)
    implemented = next(r.hooks for r in host.records if r.name == owner)
    calls = read_trace(trace)
    called = {c["hook"] for c in calls if owner in c["plugins"]
              and (c["modality"] in (None, scenario.modality))}
    return {"owner": owner, "implemented": sorted(implemented), "called": sorted(called),
            "missing": sorted(set(implemented) - called), "steps": steps, "calls": len(calls)}
