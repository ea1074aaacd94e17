"""User reward functions for GRPO: a plain function ``text_reward_functions() -> {name: fn}``.

Where it is looked up: every ``.py`` file in the workspace's ``plugins/`` folder (the folder the
host loads drop-in plugins from) and every installed plugin module (entry-point group
``lora_factory``). Each ``fn(prompts, completions, answers, **options) -> list[float]`` scores the
completions (plain strings). The function carries no ``@hookimpl`` marker: it is a text-plugin
extension point, not a host hook (a marked function with no host spec would fail plugin
validation). See docs/plugins.md.
"""

from __future__ import annotations

from typing import Any


def collect_user_rewards(ctx: Any) -> dict[str, Any]:
    rewards: dict[str, Any] = {}
    for answer in _hook_answers(ctx):
        for name, fn in (answer or {}).items():
            if callable(fn):
                rewards[str(name)] = fn
    return rewards


def _hook_answers(ctx: Any) -> list[dict[str, Any]]:
    return _entry_point_answers() + _drop_in_answers(ctx)


def _entry_point_answers() -> list[dict[str, Any]]:
    from importlib.metadata import entry_points

    answers = []
    for ep in entry_points(group="lora_factory"):
        try:
            module = ep.load()
        except Exception:  # noqa: BLE001 - a broken plugin is the host's to report
            continue
        hook = getattr(module, "text_reward_functions", None)
        if callable(hook):
            answers.append(hook())
    return answers


def _drop_in_answers(ctx: Any) -> list[dict[str, Any]]:
    """The workspace's ``plugins/*.py`` files that define ``text_reward_functions`` (loaded by path)."""
    import importlib.util
    from pathlib import Path

    workspace = getattr(ctx, "workspace", None)
    folder = Path(workspace.home) / "plugins" if workspace is not None else None
    if folder is None or not folder.is_dir():
        return []
    answers = []
    for path in sorted(folder.glob("*.py")):
        spec = importlib.util.spec_from_file_location(f"lora_factory_user_rewards_{path.stem}", path)
        if spec is None or spec.loader is None:
            continue
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        hook = getattr(module, "text_reward_functions", None)
        if callable(hook):
            answers.append(hook())
    return answers
