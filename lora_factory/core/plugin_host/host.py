"""The plugin manager: built-ins, entry points and drop-in ``plugins/*.py`` files.

Built-in plugins are registered exactly like a third party's (``DEFAULT_PLUGINS``), so the host has
no special knowledge of text, image or audio. A plugin that fails to import or register is recorded
with its error and skipped: a broken third-party file must never stop the server.

``LORA_FACTORY_LOAD_PLUGINS`` (comma-separated names) restricts which plugins load, handy when
debugging a broken install; ``LORA_FACTORY_NO_ENTRY_POINTS=1`` skips installed entry points (tests);
``LORA_FACTORY_HOOK_TRACE=<file>`` appends one JSON line per hook call (hook, plugins answering,
modality, process) in every process that loads plugins: the server, job workers and the inference
worker. The conformance tests read it to prove each hook of a plugin is really called.

**Owner dispatch.** Each modality has exactly one owner: the plugin that declared it in
``describe_modalities``. The host calls a work hook (``train``, ``infer`` ...) on the owner only
(:meth:`PluginHost.call`), so a plugin that forgets to check ``modality`` can never answer for someone
else's. When two plugins declare the same modality, the owner is the one named in the workspace
setting ``modality_owners`` (``{"text": "my_plugin"}``); without a setting, a built-in plugin wins over
an entry point, an entry point over a drop-in file, and among equals the first loaded (entry points
by name, drop-ins by file name). The others are listed as ``shadowed`` in ``GET /api/plugins``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import pluggy
from pydantic import BaseModel, Field, ValidationError

from lora_factory.core.errors import LoRAFactoryError
from lora_factory.core.plugin_host import hookspecs
from lora_factory.core.plugin_host.host_targets import HOST_EXPORT_TARGETS

DEFAULT_PLUGINS: tuple[str, ...] = ("lora_factory.plugins.text", "lora_factory.plugins.image", "lora_factory.plugins.audio")
ENTRY_POINT_GROUP = "lora_factory"


SOURCE_RANK = {"builtin": 0, "entry_point": 1, "drop_in": 2}
# hooks that take no modality: every plugin answers them
MODALITY_FREE_HOOKS = ("describe_modalities",)


class ModalityDescription(BaseModel):
    """What a plugin declares through ``describe_modalities``; plain dicts are validated into this."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_\-]{0,31}$")
    label_ja: str
    label_en: str
    presets: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # what each preset is for: name -> {label_ja, label_en, description_ja, description_en}
    preset_info: dict[str, dict[str, str]] = Field(default_factory=dict)
    default_preset: str | None = None
    dataset_formats: list[str] = Field(default_factory=list)
    dataset_extensions: list[str] = Field(default_factory=list)
    refine_operations: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # the format a refined dataset is written in, when it may differ from the source's (text: "openai")
    refine_output_format: str | None = None
    train_params_schema: dict[str, Any] = Field(default_factory=dict)
    # training methods beyond plain fine-tuning (text: sft, dpo, kto, orpo, simpo, grpo): id, labels, data kinds
    training_methods: list[dict[str, Any]] = Field(default_factory=list)
    # the rewards its reward-driven methods know themselves (text: GRPO's built-ins): name, descriptions, options;
    # GET /api/rewards lists them beside those plugins add (register_reward_functions)
    reward_functions: list[dict[str, Any]] = Field(default_factory=list)
    sample_datasets: list[str] = Field(default_factory=list)
    supports: list[str] = Field(default_factory=list)
    model_extensions: list[str] = Field(default_factory=list)
    # a dataset is one file (text) or a folder of media with sidecar files (image, audio)
    dataset_kind: Literal["file", "folder"] = "file"
    # what the verify views show: "chat", "image", "speech", "transcribe", ...
    inference_kinds: list[str] = Field(default_factory=list)
    # per inference kind: {"input_schema", "params_schema", "presets"} for the generation forms
    infer_schemas: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # sub-folders of models/<id>/ holding auxiliary models (vae, controlnet ...): kind -> labels
    aux_model_kinds: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # regression check kinds the plugin evaluates (beyond the host's text checks): kind -> labels, schema
    regression_checks: dict[str, dict[str, Any]] = Field(default_factory=dict)
    licenses: str | None = None
    # layouts other tools open, for ``export_dataset``: target id -> {label_ja, label_en}
    dataset_exports: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # what ``export_adapter`` writes: target -> {label_ja, label_en, description_ja, description_en, params_schema}
    export_targets: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # libraries its train / eval / merge / export workers import (a warm start imports them once, then forks)
    worker_modules: list[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")]] = Field(
        default_factory=list)


@dataclass
class PluginRecord:
    """One loaded (or failed) plugin, as ``GET /api/plugins`` lists it."""

    name: str
    source: str  # builtin | entry_point | drop_in
    version: str | None = None
    hooks: list[str] = field(default_factory=list)
    modalities: list[str] = field(default_factory=list)
    error: str | None = None
    path: str | None = None
    shadowed: list[str] = field(default_factory=list)  # declared, but another plugin owns it
    extension_errors: list[str] = field(default_factory=list)  # a refused route, command or UI module

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "version": self.version,
            "hooks": self.hooks,
            "modalities": self.modalities,
            "shadowed": self.shadowed,
            "error": self.error,
            "path": self.path,
            "ok": self.error is None,
            "extension_errors": self.extension_errors,
        }


class PluginHost:
    """Owns the pluggy manager and what it loaded."""

    def __init__(self, plugins_dir: Path | None = None, load_entry_points: bool | None = None,
                 owners: dict[str, str] | None = None) -> None:
        self.pm = pluggy.PluginManager("lora_factory")
        self.pm.add_hookspecs(hookspecs)
        self.records: list[PluginRecord] = []
        self.modality_errors: list[dict[str, Any]] = []
        self.conflicts: list[dict[str, Any]] = []
        self.preferred_owners = dict(owners or {})
        self._modalities: dict[str, dict[str, Any]] | None = None
        self._callers: dict[tuple[str, str], Any] = {}
        allow = os.environ.get("LORA_FACTORY_LOAD_PLUGINS")
        self._allow = {n.strip() for n in allow.split(",") if n.strip()} if allow else None
        if load_entry_points is None:
            load_entry_points = os.environ.get("LORA_FACTORY_NO_ENTRY_POINTS") != "1"
        trace = os.environ.get("LORA_FACTORY_HOOK_TRACE")
        if trace:
            self.pm.add_hookcall_monitoring(_trace_writer(Path(trace), self.pm), lambda *args: None)
        for module_name in DEFAULT_PLUGINS:
            self._load_module(module_name, "builtin")
        if load_entry_points:
            self._load_entry_points()
        if plugins_dir is not None:
            self._load_drop_ins(plugins_dir)

    @property
    def hook(self) -> Any:
        """pluggy's relay to *every* plugin: use :meth:`call` for work hooks (owner dispatch)."""
        return self.pm.hook

    def owner(self, modality: str) -> str | None:
        """The name of the plugin that serves ``modality`` (None when no plugin declares it)."""
        desc = self.modalities().get(modality)
        return desc.get("plugin") if desc else None

    def call(self, hook_name: str, modality: str, **kwargs: Any) -> Any:
        """Call ``hook_name`` on the owner of ``modality`` only; ``None`` when it does not implement it.

        pluggy's ``subset_hook_caller`` with every other plugin removed: a plugin that answers every
        call (no guard clause) cannot take over another modality's jobs.
        """
        owner = self.owner(modality)
        if owner is None:
            return None
        key = (hook_name, owner)
        caller = self._callers.get(key)
        if caller is None:
            owner_plugin = self.pm.get_plugin(owner)
            others = [p for p in self.pm.get_plugins() if p is not owner_plugin]
            caller = self.pm.subset_hook_caller(hook_name, remove_plugins=others)
            self._callers[key] = caller
        return caller(modality=modality, **kwargs)

    # -- loading -------------------------------------------------------------------------------
    def _allowed(self, name: str) -> bool:
        return self._allow is None or name in self._allow

    def _register(self, obj: Any, name: str, source: str, version: str | None, path: str | None) -> None:
        record = PluginRecord(name=name, source=source, version=version, path=path)
        try:
            self.pm.register(obj, name=name)
            record.hooks = sorted(
                impl_name for impl_name, impls in self._hook_names_of(obj).items() if impls
            )
        except Exception as exc:  # a broken plugin is reported, never fatal
            record.error = f"{type(exc).__name__}: {exc}"
        self.records.append(record)

    def _hook_names_of(self, obj: Any) -> dict[str, bool]:
        found: dict[str, bool] = {}
        for caller in self.pm.get_hookcallers(obj) or []:
            found[caller.name] = True
        return found

    def _failed(self, name: str, source: str, exc: BaseException, path: str | None = None) -> None:
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        self.records.append(PluginRecord(name=name, source=source, error=detail, path=path))

    def _load_module(self, module_name: str, source: str) -> None:
        if not self._allowed(module_name):
            return
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            self._failed(module_name, source, exc)
            return
        self._register(module, module_name, source, getattr(module, "__version__", None), getattr(module, "__file__", None))

    def _load_entry_points(self) -> None:
        for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if not self._allowed(ep.name):
                continue
            version = ep.dist.version if ep.dist else None
            try:
                obj = ep.load()
            except Exception as exc:
                self._failed(ep.name, "entry_point", exc)
                continue
            self._register(obj, ep.name, "entry_point", version, None)

    def _load_drop_ins(self, plugins_dir: Path) -> None:
        if not plugins_dir.is_dir():
            return
        for path in sorted(plugins_dir.glob("*.py")):
            name = path.stem
            if name.startswith("_") or not self._allowed(name):
                continue
            module_name = f"lora_factory_dropin_{name}"
            try:
                spec = importlib.util.spec_from_file_location(module_name, path)
                if spec is None or spec.loader is None:
                    raise ImportError(f"cannot load {path.name}")
                module = importlib.util.module_from_spec(spec)
                sys.modules[module_name] = module
                spec.loader.exec_module(module)
            except BaseException as exc:  # SyntaxError, SystemExit ... all are the plugin's fault
                sys.modules.pop(module_name, None)
                self._failed(name, "drop_in", exc, str(path))
                continue
            self._register(module, name, "drop_in", getattr(module, "__version__", None), str(path))

    # -- modalities ----------------------------------------------------------------------------
    def modalities(self) -> dict[str, dict[str, Any]]:
        """Every declared modality (validated), plus the built-in ids no plugin serves (unavailable)."""
        if self._modalities is not None:
            return self._modalities
        declared: dict[str, list[tuple[PluginRecord, dict[str, Any]]]] = {}
        for record in self.records:
            if record.error:
                continue
            plugin = self.pm.get_plugin(record.name)
            if plugin is None or "describe_modalities" not in self._hook_names_of(plugin):
                continue
            only_this = self.pm.subset_hook_caller(
                "describe_modalities", remove_plugins=[p for p in self.pm.get_plugins() if p is not plugin])
            try:
                declared_here = [raw for answer in only_this() for raw in (answer or [])]
                descriptions = [ModalityDescription.model_validate(raw).model_dump() for raw in declared_here]
            except (ValidationError, Exception) as exc:
                record.error = f"describe_modalities: {type(exc).__name__}: {exc}"
                continue
            for desc in descriptions:
                declared.setdefault(desc["id"], []).append((record, desc))
        found: dict[str, dict[str, Any]] = {}
        for modality, candidates in declared.items():
            record, desc = self._choose_owner(modality, candidates)
            desc.update(plugin=record.name, available=True, reason=None)
            if len(candidates) > 1:
                others = [r.name for r, _ in candidates if r is not record]
                desc["also_declared_by"] = others
                self.conflicts.append({"modality": modality, "owner": record.name,
                                       "plugins": [r.name for r, _ in candidates],
                                       "rule": "setting" if self.preferred_owners.get(modality) == record.name
                                       else "builtin > entry point > drop-in, then load order"})
                for other, _ in candidates:
                    if other is not record:
                        other.shadowed.append(modality)
            desc["export_targets"] = {**desc.get("export_targets", {}), **HOST_EXPORT_TARGETS}
            found[modality] = desc
            record.modalities.append(modality)
        for desc in self._unloaded_builtin_modalities():
            if desc["id"] not in found:
                found[desc["id"]] = desc | {
                    "plugin": None,
                    "available": False,
                    "reason": "このモダリティを扱うプラグインがまだありません。",
                    "reason_en": "No plugin serving this modality is installed yet.",
                }
        self._modalities = found
        return found

    def _unloaded_builtin_modalities(self) -> list[dict[str, Any]]:
        """What a built-in plugin that is not loaded (left out by ``LORA_FACTORY_LOAD_PLUGINS``, or
        broken) would serve, in its own words, so the UI can list it as unavailable and say why.
        Only ids and labels: the module's ``describe_modalities`` is read, never registered."""
        loaded = {r.name for r in self.records if not r.error}
        out: list[dict[str, Any]] = []
        for module_name in DEFAULT_PLUGINS:
            if module_name in loaded:
                continue
            try:
                described = importlib.import_module(module_name).describe_modalities()
                out += [ModalityDescription(id=d["id"], label_ja=d["label_ja"], label_en=d["label_en"]).model_dump()
                        for d in described or []]
            except Exception:  # a broken built-in is listed with its error already
                continue
        return out

    def _choose_owner(self, modality: str, candidates: list[tuple[PluginRecord, dict[str, Any]]]
                      ) -> tuple[PluginRecord, dict[str, Any]]:
        """The setting's choice when it names a candidate; else built-in > entry point > drop-in, then load order."""
        wanted = self.preferred_owners.get(modality)
        for record, desc in candidates:
            if record.name == wanted:
                return record, desc
        return min(candidates, key=lambda item: SOURCE_RANK.get(item[0].source, 9))

    def worker_modules(self, modality: str) -> list[str]:
        """The libraries a modality's train / eval / merge / export workers import (``worker_modules`` of
        its description; none for an unknown one): what the warm process imports before it forks them."""
        return list(self.modalities().get(modality, {}).get("worker_modules") or [])

    def model_operations(self, modality: str) -> set[str]:
        """The refine operations of a modality that load a model (``uses_model`` in their listing, as the
        image tagger and captioner say): a refine with one is forked from the warm process with the
        modality's libraries imported, as a training is."""
        operations = self.modalities().get(modality, {}).get("refine_operations") or {}
        return {name for name, entry in operations.items() if isinstance(entry, dict) and entry.get("uses_model")}

    def require_modality(self, modality: str) -> dict[str, Any]:
        """The description of an available modality, or a 400 ``UNKNOWN_MODALITY``."""
        mods = self.modalities()
        desc = mods.get(modality)
        if desc is None or not desc.get("available"):
            raise LoRAFactoryError(
                "UNKNOWN_MODALITY",
                f"モダリティ「{modality}」は利用できません。利用可能: {', '.join(k for k, v in mods.items() if v['available'])}",
                f"Modality '{modality}' is not available. Available: {', '.join(k for k, v in mods.items() if v['available'])}",
                http_status=400,
                detail={"modality": modality},
            )
        return desc

    def extension_error(self, plugin: str, reason: str) -> None:
        """A route, command or UI module of ``plugin`` that was refused (see ``extensions.py``)."""
        for record in self.records:
            if record.name == plugin and reason not in record.extension_errors:
                record.extension_errors.append(reason)

    def modality_for_task(self, task: str) -> str:
        """The available modality whose ``inference_kinds`` include ``task`` (``speech``, ``transcribe``,
        ``image`` ...): how the OpenAI-compatible routes find their plugin without naming one.

        :raises LoRAFactoryError: ``TASK_UNAVAILABLE`` (400) when no loaded plugin serves the task.
        """
        for modality, desc in self.modalities().items():
            if desc.get("available") and task in (desc.get("inference_kinds") or []):
                return modality
        raise LoRAFactoryError("TASK_UNAVAILABLE", f"「{task}」を扱うプラグインがありません。",
                               f"No plugin serves '{task}'.", http_status=400, detail={"task": task})

    def plugin_list(self) -> list[dict[str, Any]]:
        self.modalities()
        return [r.to_dict() for r in self.records]


def _trace_writer(path: Path, pm: pluggy.PluginManager) -> Any:
    """A pluggy ``before`` monitor that appends each hook call to ``path`` (JSON lines)."""
    import json

    def before(hook_name: str, hook_impls: list[Any], kwargs: dict[str, Any]) -> None:
        record = {"hook": hook_name, "plugins": [pm.get_name(impl.plugin) for impl in hook_impls],
                  "modality": kwargs.get("modality"), "pid": os.getpid()}
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")

    return before


_LOADED: dict[str, PluginHost] = {}


def load_plugin_host(home: Path) -> PluginHost:
    """The standard plugin set for a workspace (built-ins, entry points, ``<home>/plugins/*.py``), with
    the owner choices of the workspace's ``modality_owners`` setting."""
    from lora_factory.core.storage.settings import modality_owners

    host = PluginHost(plugins_dir=Path(home) / "plugins", owners=modality_owners(Path(home)))
    _LOADED[str(Path(home).resolve())] = host
    return host


def plugin_host_for(home: Path) -> PluginHost:
    """The plugin set this process last loaded for ``home`` (a job worker's), else a newly loaded one: a
    plugin asking the host for what other plugins register (``kit.rewards``) does not load them twice."""
    return _LOADED.get(str(Path(home).resolve())) or load_plugin_host(home)
