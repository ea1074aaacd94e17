"""Running a real train job on N simulated devices (``LORA_FACTORY_DEVICES=cpu:2``, the job asking for
``cpu:0,cpu:1``) for the multi-rank tests of each modality: the scheduler assigns the devices and the job
worker launches the ranks exactly as for a user's job."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest


def copy_into(home: Path, source: Path, modality: str, kind: str) -> Path:
    """``source`` (a model or dataset folder / file) into ``home/<kind>/<modality>/``."""
    target = home / kind / modality / source.name
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copy2(source, target)
    return target


class JobRunner:
    """A workspace's job manager, as the server runs it, without a server."""

    def __init__(self, home: Path, monkeypatch: pytest.MonkeyPatch, warm: bool = True) -> None:
        """``warm``: workers forked from the warm process as a Linux server without a GPU starts them (and
        the ranks forked from the worker); False: spawned, as on Windows or beside a GPU."""
        from lora_factory.core.jobs.scheduler import JobManager
        from lora_factory.core.jobs.store import JobStore
        from lora_factory.core.plugin_host.host import load_plugin_host
        from lora_factory.core.storage.workspace import Workspace

        self.home = home
        self.monkeypatch = monkeypatch
        # two simulated devices, learnt by the scheduler's device table when the first job asks for them
        monkeypatch.setenv("LORA_FACTORY_DEVICES", "cpu:2")
        self.plugins = load_plugin_host(home)
        self.workspace = Workspace(home, self.plugins.modalities().keys())
        self.store = JobStore(self.workspace.db_path)
        self.jobs = JobManager(self.workspace, self.store, cancel_grace_s=20)
        # as the server wires it (core/services.py): the worker forked warm, with the modality's libraries
        # imported, and its ranks forked from it
        self.jobs.worker_modules = self.plugins.worker_modules
        # pytest rewrites PYTEST_CURRENT_TEST at every test, while a server's environment stays as it started:
        # left out of the workers' environment, or a runner shared by a module's tests would find its warm
        # process stale (started with other variables) at each test and import torch again
        worker_env = self.jobs._worker_env
        self.jobs._worker_env = lambda job: {k: v for k, v in worker_env(job).items() if k != "PYTEST_CURRENT_TEST"}
        if warm:
            self.jobs.enable_warm_start()

    def close(self) -> None:
        """Stop the warm process (as a server's shutdown does); a test's workers ended with the test."""
        self.jobs.stop_background()

    def submit(self, modality: str, base: Path, dataset: Path, params: dict[str, Any], name: str, devices: str,
               preset: str = "quick") -> str:
        spec = {"base_model": str(base), "dataset": str(dataset), "base_model_ref": self.workspace.relative(base),
                "dataset_ref": self.workspace.relative(dataset), "dataset_options": {}, "output_name": name,
                "preset": preset, "params": params}
        resolved = self.plugins.call("resolve_train_spec", modality, spec=spec) or spec
        self.monkeypatch.setenv("OMP_NUM_THREADS", "1")
        wanted = [d for d in devices.split(",") if d]  # "cpu:0,cpu:1": the scheduler assigns exactly these
        return self.jobs.submit("train", modality, resolved, output_name=name, devices=wanted or 0)

    def run(self, *args: Any, timeout: float = 300, **kwargs: Any) -> dict[str, Any]:
        job_id = self.submit(*args, **kwargs)
        return self.jobs.wait(job_id, timeout=timeout)

    def losses(self, job_id: str) -> list[tuple[int, float]]:
        path = self.workspace.run_dir(job_id) / "metrics.jsonl"
        return [(rec["step"], rec["loss"]) for rec in map(json.loads, path.read_text(encoding="utf-8").splitlines())]

    def log(self, job: dict[str, Any], rank: int = 0) -> str:
        from lora_factory.core.jobs.ranks import rank_log_path

        return rank_log_path(self.jobs.log_path(job), rank).read_text(encoding="utf-8")


def until(condition: Any, timeout: float, interval: float = 0.2) -> None:
    """Wait until ``condition()`` is true; fail the test after ``timeout`` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(f"not reached within {timeout} s")
