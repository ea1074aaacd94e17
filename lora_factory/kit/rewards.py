"""Reward functions other plugins register (``register_reward_functions``), for a plugin whose training
method learns from rewards (the text plugin's GRPO).

Why through the host: a reward may come from an installed package (entry point) or a ``.py`` file in the
workspace's ``plugins/`` folder; the host has already loaded both, checked each name and attributed it
to its plugin, so the method asks it instead of importing files itself. In a job worker the worker's own
plugin set is used (nothing is loaded twice).

    from lora_factory.kit.rewards import plugin_rewards
    rewards = plugin_rewards(ctx.workspace, taken=set(MY_BUILTINS), log=ctx.log)  # {name: fn}
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["plugin_rewards", "plugin_reward_list"]


def plugin_reward_list(workspace: Any, taken: set[str] | None = None) -> list[dict[str, Any]]:
    """``[{"name", "plugin", "description_ja", "description_en"}]`` of the rewards plugins register."""
    from lora_factory.core.plugin_host.extensions import collect_rewards
    from lora_factory.core.plugin_host.host import plugin_host_for

    return [r.to_dict() for r in collect_rewards(plugin_host_for(Path(workspace.home)), taken)]


def plugin_rewards(workspace: Any, taken: set[str] | None = None,
                   log: Callable[[str], None] | None = None) -> dict[str, Callable[..., Any]]:
    """``{name: fn}`` of the rewards plugins register for ``workspace``; a name in ``taken`` (your built-ins)
    is refused. ``log`` receives each refused or failed registration (plugin, reason)."""
    from lora_factory.core.plugin_host.extensions import collect_rewards
    from lora_factory.core.plugin_host.host import plugin_host_for

    host = plugin_host_for(Path(workspace.home))
    found = collect_rewards(host, taken)
    if log is not None:
        for record in host.records:
            for reason in record.extension_errors:
                if reason.startswith("register_reward_functions"):
                    log(f"プラグイン「{record.name}」の報酬関数を使えません / plugin '{record.name}': {reason}")
        for record in host.records:
            if record.error and record.source == "drop_in":
                log(f"プラグイン「{record.name}」を読み込めません / plugin '{record.name}' failed to load: "
                    f"{record.error}")
    return {r.name: r.fn for r in found}
