"""GRPO's reward functions as TRL calls them, built from the validated specs of a run.

TRL calls each reward as ``fn(prompts=..., completions=..., **dataset_columns)``; for a chat dataset
prompts and completions are message lists. This module turns them into plain strings (the last
user turn, the answer's text), hands the row's reference ``answer`` along, applies the spec's
weight, guards each function (:func:`rewards.safe_reward`) and logs a sampled completion now and
then, so the live job view shows what the model is writing.
"""

from __future__ import annotations

from typing import Any

from lora_factory.plugins.text.rewards import RewardFn, build_rewards, safe_reward

SAMPLE_EVERY = 5  # log a sampled completion every N reward calls


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # messages: the last user turn of a prompt, the text of a completion
        users = [m for m in value if isinstance(m, dict) and m.get("role") == "user"]
        picked = users[-1:] if users else [m for m in value if isinstance(m, dict)]
        return "\n".join(str(m.get("content") or "") for m in picked)
    return str(value)


def user_reward_functions(ctx: Any) -> dict[str, RewardFn]:
    """Rewards the plugins register (``register_reward_functions``: installed packages and the workspace's
    ``plugins/*.py`` files); a plugin's refused or failed registration is logged in the job's log."""
    from lora_factory.kit.rewards import plugin_rewards

    return plugin_rewards(ctx.workspace, taken=_builtin_names(), log=ctx.log)


def trl_reward_functions(specs: list[dict[str, Any]], ctx: Any) -> list[Any]:
    built = build_rewards(specs, user_reward_functions(ctx) if any(
        s["name"] not in _builtin_names() for s in specs) else {})
    calls = {"n": 0}
    out = []
    for index, (name, weight, fn) in enumerate(built):
        guarded = safe_reward(name, fn, ctx.log)

        def reward(prompts: list[Any], completions: list[Any], _g: RewardFn = guarded, _w: float = weight,
                   _first: bool = index == 0, _name: str = name, **columns: Any) -> list[float]:
            texts = [_text(c) for c in completions]
            answers = [str(a) for a in (columns.get("answer") or [""] * len(texts))]
            scores = _g([_text(p) for p in prompts], texts, answers)
            if _first:
                calls["n"] += 1
                if calls["n"] % SAMPLE_EVERY == 1 and texts:
                    ctx.log(f"sample completion ({_name}={scores[0]:.3g}): {texts[0][:200]!r}")
            return [_w * s for s in scores]

        reward.__name__ = name  # TRL names the per-function metric rewards/<name>/mean after it
        out.append(reward)
    return out


def _builtin_names() -> set[str]:
    from lora_factory.plugins.text.rewards import BUILTINS

    return set(BUILTINS)
