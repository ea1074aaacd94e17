"""What plugins add to the server, the CLI and the UI (``register_routes``, ``register_commands``,
``register_ui``) and to the training methods (``register_reward_functions``), collected per plugin so each
addition is checked and attributed.

Framework-free on purpose: a router is an opaque object here; ``routes/plugin_extensions.py`` mounts
it on the app, ``cli.py`` adds the commands to its parser. A plugin may scope an addition to a
modality only when it owns that modality, so a drop-in cannot take ``/api/text/...`` from the text
plugin. A plugin whose ``register_*`` fails or breaks a rule keeps working otherwise; the reason is
listed with it (``extension_errors`` in ``GET /api/plugins`` and ``lora-factory plugins``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lora_factory.core.plugin_host.host import PluginHost

COMMAND_NAME = re.compile(r"^[a-z][a-z0-9\-]{0,31}$")
REWARD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,63}$")


@dataclass
class PluginRoutes:
    plugin: str
    router: Any  # a fastapi.APIRouter
    prefix: str  # /api/<modality> or /api/plugins/<plugin>


@dataclass
class PluginCommand:
    plugin: str
    name: str
    run: Callable[..., int | None]
    help: str = ""
    configure: Callable[[Any], None] | None = None


@dataclass
class PluginUI:
    plugin: str
    static_dir: Path
    url: str  # /static/plugins/<plugin>/
    script: str | None = None  # the ES module the UI imports, its URL
    modality: str | None = None


@dataclass
class PluginReward:
    plugin: str
    name: str
    fn: Callable[..., Any]
    description_ja: str = ""
    description_en: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "plugin": self.plugin, "description_ja": self.description_ja,
                "description_en": self.description_en}


def plugin_prefix(plugin: str) -> str:
    return f"/api/plugins/{plugin}"


def static_url(plugin: str) -> str:
    return f"/static/plugins/{plugin}/"


class _Collector:
    """Calls one ``register_*`` hook on each plugin alone and records what it registered or why not."""

    def __init__(self, host: PluginHost, hook_name: str) -> None:
        self.host = host
        self.hook_name = hook_name

    def each(self, call: Callable[[str, Callable[..., Any]], None]) -> None:
        for record in self.host.records:
            plugin = self.host.pm.get_plugin(record.name) if not record.error else None
            if plugin is None or self.hook_name not in record.hooks:
                continue
            try:
                call(record.name, self.host.pm.subset_hook_caller(
                    self.hook_name, remove_plugins=[p for p in self.host.pm.get_plugins() if p is not plugin]))
            except Exception as exc:  # a plugin's extension is reported, never fatal
                self.host.extension_error(record.name, f"{self.hook_name}: {type(exc).__name__}: {exc}")

    def owned(self, plugin: str, modality: str | None) -> bool:
        if modality is None or self.host.owner(modality) == plugin:
            return True
        self.host.extension_error(plugin, f"{self.hook_name}: modality '{modality}' is not served by this plugin")
        return False


def collect_routes(host: PluginHost, workspace: Any) -> list[PluginRoutes]:
    found: list[PluginRoutes] = []
    collector = _Collector(host, "register_routes")

    def call(name: str, caller: Callable[..., Any]) -> None:
        def register(router: Any, modality: str | None = None) -> None:
            if collector.owned(name, modality):
                found.append(PluginRoutes(name, router, f"/api/{modality}" if modality else plugin_prefix(name)))

        caller(register=register, workspace=workspace)

    collector.each(call)
    return found


def collect_commands(host: PluginHost, taken: set[str]) -> list[PluginCommand]:
    """Commands whose names are free (``taken``: the host's own and those registered before)."""
    found: list[PluginCommand] = []
    collector = _Collector(host, "register_commands")

    def call(name: str, caller: Callable[..., Any]) -> None:
        def register(command: str, run: Callable[..., int | None], help: str = "",
                     configure: Callable[[Any], None] | None = None) -> None:
            if not COMMAND_NAME.match(command or ""):
                host.extension_error(name, f"register_commands: '{command}' is not a command name")
            elif command in taken:
                host.extension_error(name, f"register_commands: the command '{command}' already exists")
            else:
                taken.add(command)
                found.append(PluginCommand(name, command, run, help, configure))

        caller(register=register)

    collector.each(call)
    return found


def collect_ui(host: PluginHost) -> list[PluginUI]:
    found: list[PluginUI] = []
    collector = _Collector(host, "register_ui")

    def call(name: str, caller: Callable[..., Any]) -> None:
        def register(static_dir: str | Path, script: str | None = None, modality: str | None = None) -> None:
            folder = Path(static_dir).resolve()
            if not folder.is_dir():
                host.extension_error(name, f"register_ui: no folder {folder}")
                return
            if script is not None and not (folder / script).resolve().is_relative_to(folder):
                host.extension_error(name, f"register_ui: '{script}' is outside {folder}")
                return
            if script is not None and not (folder / script).is_file():
                host.extension_error(name, f"register_ui: no file {script} in {folder}")
                return
            if collector.owned(name, modality):
                url = static_url(name)
                found.append(PluginUI(name, folder, url, url + script if script else None, modality))

        caller(register=register)

    collector.each(call)
    return found


def builtin_reward_names(host: PluginHost) -> set[str]:
    """The names of the modalities' own rewards (``reward_functions`` in their descriptions)."""
    return {str(r.get("name")) for desc in host.modalities().values() for r in desc.get("reward_functions") or []
            if isinstance(r, dict)}


def collect_rewards(host: PluginHost, taken: set[str] | None = None) -> list[PluginReward]:
    """The reward functions plugins register; a name in ``taken`` (default: the built-ins) or registered by an
    earlier plugin is refused and listed with the plugin."""
    taken = set(builtin_reward_names(host) if taken is None else taken)
    found: list[PluginReward] = []
    collector = _Collector(host, "register_reward_functions")

    def call(name: str, caller: Callable[..., Any]) -> None:
        def register(reward: str, fn: Callable[..., Any], description_ja: str = "", description_en: str = "") -> None:
            if not isinstance(reward, str) or not REWARD_NAME.match(reward):
                host.extension_error(name, f"register_reward_functions: '{reward}' is not a reward name")
            elif not callable(fn):
                host.extension_error(name, f"register_reward_functions: '{reward}' is not callable")
            elif reward in taken:
                host.extension_error(name, f"register_reward_functions: the reward '{reward}' already exists")
            else:
                taken.add(reward)
                found.append(PluginReward(name, reward, fn, str(description_ja or ""), str(description_en or "")))

        caller(register=register)

    collector.each(call)
    return found
