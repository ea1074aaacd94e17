"""Wiring: one object that holds the host's parts for a workspace; the routes and the CLI both use it.

Nothing here does work of its own: each operation lives in the sub-package of its concern and is
reached through an attribute (``svc.submitter.start_train``, ``svc.job_views.present_job``,
``svc.health.report``, ``svc.generation.chat_request``, ``svc.dataset_index.import_dataset_info``,
``storage.desktop.open_path``). What is here: building the parts in order, replacing the plugins
when the settings change the owner of a modality, and closing.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from lora_factory.core.catalog.artifacts import ArtifactStore
from lora_factory.core.catalog.dataset_index import DatasetIndexImport
from lora_factory.core.catalog.datasets import DatasetCatalog
from lora_factory.core.catalog.exports import ExportCatalog
from lora_factory.core.catalog.models import Catalog
from lora_factory.core.errors import as_user_error
from lora_factory.core.inference.client import InferenceClient
from lora_factory.core.inference.generation import Generation
from lora_factory.core.inference.media import MediaStore
from lora_factory.core.jobs.gpu_release import ChatModelRelease
from lora_factory.core.jobs.health import HostHealth
from lora_factory.core.jobs.recovery import clean_interrupted_writes, recover_database
from lora_factory.core.jobs.scheduler import JobManager
from lora_factory.core.jobs.store import JobStore
from lora_factory.core.jobs.submit import JobSubmitter
from lora_factory.core.jobs.views import JobViews
from lora_factory.core.plugin_host.host import PluginHost, load_plugin_host
from lora_factory.core.storage.db import check_database, move_aside
from lora_factory.core.storage.workspace import Workspace


def default_home() -> Path:
    return Path(os.environ.get("LORA_FACTORY_HOME") or Path.cwd())


class Services:
    def __init__(self, home: Path | str | None = None, plugin_host: PluginHost | None = None) -> None:
        home_path = Path(home) if home else default_home()
        home_path.mkdir(parents=True, exist_ok=True)
        self.workspace = Workspace(home_path, ())
        self.plugins = plugin_host or load_plugin_host(self.workspace.home)
        self.workspace.ensure(self.plugins.modalities().keys())
        try:
            damage = check_database(self.workspace.db_path)
            moved = move_aside(self.workspace.db_path) if damage else None
            self.store = JobStore(self.workspace.db_path)
            self.jobs = JobManager(self.workspace, self.store)
            self.artifacts = ArtifactStore(self.workspace.db_path, self.workspace.home)
        except (sqlite3.Error, OSError) as exc:
            known = as_user_error(exc)  # a full disk at start-up: DISK_FULL, and the database is kept
            if known is None:
                raise
            raise known from exc
        self.health = HostHealth(self.workspace, self.jobs)
        if moved is not None:
            self.health.notices.append(recover_database(self.workspace, self.store, self.artifacts, str(damage), moved))
        self.catalog = Catalog(self.workspace, self.plugins, self.artifacts, used_by=self.store.active_job_using)
        self.datasets = DatasetCatalog(self.workspace, self.plugins, self.artifacts, remove=self.catalog.remove_unused)
        self.exports = ExportCatalog(self.workspace, self.artifacts, remove=self.catalog.remove_unused)
        self.dataset_index = DatasetIndexImport(self.workspace, self.plugins, self.datasets, self.artifacts)
        self.inference = InferenceClient(self.workspace.home)
        self.media = MediaStore(self.workspace)
        self.generation = Generation(self.plugins, self.catalog, self.media, self.inference, self.workspace)
        self.submitter = JobSubmitter(self.workspace, self.plugins, self.catalog, self.datasets, self.jobs)
        self.job_views = JobViews(self.workspace, self.store, self.jobs, self.media)
        self.jobs.before_gpu_job = ChatModelRelease(self.inference, self.jobs)
        # looked up at each call: reload_plugins replaces self.plugins
        self.jobs.worker_modules = lambda modality: self.plugins.worker_modules(modality)
        self.jobs.model_operations = lambda modality: self.plugins.model_operations(modality)
        self.inference.fork = self._fork_inference
        self.inference.place = self.jobs.devices.place_inference
        self.jobs.devices.inference_device = lambda: self.inference.device if self.inference.running else None
        self.plugin_ui: list[Any] = []  # the plugins' UI folders and modules, set when the app mounts them

    def _fork_inference(self, env: dict[str, str], log: Path, modality: str | None) -> Any:
        """The inference worker forked from the jobs' warm process, with the first request's modality's
        libraries (None: no warm start here, or it could not: the client spawns it)."""
        if self.jobs.warm is None:
            return None
        return self.jobs.warm.fork_inference(env, log, self.jobs.worker_modules(modality) if modality else [])

    def update_settings(self, changes: dict[str, Any]) -> Any:
        """Save settings; a new ``modality_owners`` choice reloads the plugins (and the chat's model
        process, which loaded them) so the next request already goes to the chosen plugin."""
        from lora_factory.core.storage.settings import update_settings

        settings = update_settings(self.workspace.home, changes)
        if "modality_owners" in changes:
            self.reload_plugins()
        return settings

    def reload_plugins(self) -> None:
        self.plugins = load_plugin_host(self.workspace.home)
        self.workspace.ensure(self.plugins.modalities().keys())
        for part in (self.catalog, self.datasets, self.dataset_index, self.generation, self.submitter):
            part.plugins = self.plugins
        self.inference.release()

    def startup_housekeeping(self, recovered: dict[str, list[str]] | None = None) -> None:
        """At server start: the leftovers of interrupted writes and stale uploads go (see ``jobs.recovery``)."""
        clean_interrupted_writes(self.workspace, self.store)
        try:
            self.media.prune_uploads()
        except OSError:
            pass

    def close(self) -> None:
        self.jobs.stop_background()
        self.inference.close()
        self.store.close()
        self.artifacts.close()
