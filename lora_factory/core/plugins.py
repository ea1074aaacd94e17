"""The plugin manager: built-ins, entry points and drop-in ``plugins/*.py`` files.

Built-in plugins are registered exactly like a third party's (``DEFAULT_PLUGINS``), so the host has
no special knowledge of text, image or audio. A plugin that fails to import or register is recorded
with its error and skipped: a broken third-party file must never stop the server.

``LORA_FACTORY_LOAD_PLUGINS`` (comma-separated names) restricts which plugins load, handy when
debugging a broken install; ``LORA_FACTORY_NO_ENTRY_POINTS=1`` skips installed entry points (tests).
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
from typing import Any

import pluggy
from pydantic import BaseModel, Field, ValidationError

from lora_factory.core import hookspecs
from lora_factory.core.errors import LoRAFactoryError

DEFAULT_PLUGINS: tuple[str, ...] = ("lora_factory.plugins.text",)
ENTRY_POINT_GROUP = "lora_factory"
BUILTIN_MODALITIES = ("text", "image", "audio")


class ModalityDescription(BaseModel):
    """What a plugin declares through ``describe_modalities``; plain dicts are validated into this."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_\-]{0,31}$")
    label_ja: str
    label_en: str
    presets: dict[str, dict[str, Any]] = Field(default_factory=dict)
    default_preset: str | None = None
    dataset_formats: list[str] = Field(default_factory=list)
    dataset_extensions: list[str] = Field(default_factory=list)
    refine_operations: dict[str, dict[str, Any]] = Field(default_factory=dict)
    train_params_schema: dict[str, Any] = Field(default_factory=dict)
    sample_datasets: list[str] = Field(default_factory=list)
    supports: list[str] = Field(default_factory=list)
    model_extensions: list[str] = Field(default_factory=list)


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "version": self.version,
            "hooks": self.hooks,
            "modalities": self.modalities,
            "error": self.error,
            "path": self.path,
            "ok": self.error is None,
        }


class PluginHost:
    """Owns the pluggy manager and what it loaded."""

    def __init__(self, plugins_dir: Path | None = None, load_entry_points: bool | None = None) -> None:
        self.pm = pluggy.PluginManager("lora_factory")
        self.pm.add_hookspecs(hookspecs)
        self.records: list[PluginRecord] = []
        self.modality_errors: list[dict[str, Any]] = []
        self._modalities: dict[str, dict[str, Any]] | None = None
        allow = os.environ.get("LORA_FACTORY_LOAD_PLUGINS")
        self._allow = {n.strip() for n in allow.split(",") if n.strip()} if allow else None
        if load_entry_points is None:
            load_entry_points = os.environ.get("LORA_FACTORY_NO_ENTRY_POINTS") != "1"
        for module_name in DEFAULT_PLUGINS:
            self._load_module(module_name, "builtin")
        if load_entry_points:
            self._load_entry_points()
        if plugins_dir is not None:
            self._load_drop_ins(plugins_dir)

    @property
    def hook(self) -> Any:
        return self.pm.hook

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
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
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
        found: dict[str, dict[str, Any]] = {}
        for record in self.records:
            if record.error:
                continue
            plugin = self.pm.get_plugin(record.name)
            impl = getattr(plugin, "describe_modalities", None)
            if impl is None:
                continue
            try:
                declared = impl() or []
                for raw in declared:
                    desc = ModalityDescription.model_validate(raw).model_dump()
                    desc.update(plugin=record.name, available=True, reason=None)
                    if desc["id"] in found:
                        continue  # the first plugin to declare a modality owns it
                    found[desc["id"]] = desc
                    record.modalities.append(desc["id"])
            except (ValidationError, Exception) as exc:
                record.error = f"describe_modalities: {type(exc).__name__}: {exc}"
        for modality in BUILTIN_MODALITIES:
            if modality not in found:
                found[modality] = ModalityDescription(
                    id=modality, label_ja={"text": "テキスト", "image": "画像", "audio": "音声"}[modality],
                    label_en=modality.capitalize(),
                ).model_dump() | {
                    "plugin": None,
                    "available": False,
                    "reason": "このモダリティを扱うプラグインがまだありません。",
                    "reason_en": "No plugin serving this modality is installed yet.",
                }
        self._modalities = found
        return found

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

    def plugin_list(self) -> list[dict[str, Any]]:
        self.modalities()
        return [r.to_dict() for r in self.records]


def load_plugin_host(home: Path) -> PluginHost:
    """The standard plugin set for a workspace (built-ins, entry points, ``<home>/plugins/*.py``)."""
    return PluginHost(plugins_dir=Path(home) / "plugins")
