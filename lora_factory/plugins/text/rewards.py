"""GRPO reward functions: built-ins, a judge over an OpenAI-compatible endpoint, and user rewards.

A reward scores each sampled completion of a prompt; GRPO pushes the adapter towards the
completions that score above their group's mean. Specs are ``{"name": ..., "weight": 1.0, ...}``,
validated in the server (a typo in a reward's option is a 422 before anything queues).

Built-ins (each returns a float per completion; the dataset's reference answer, when a row has
one, arrives as ``answer``):

- ``exact_answer``: 1.0 when the completion (normalised: NFKC, trimmed, case folded) equals the
  answer, or ends with it when ``allow_prefix`` (a short explanation before the final answer).
- ``numeric_answer``: 1.0 when the last number in the completion equals the answer's (``tolerance``).
- ``regex``: 1.0 when ``pattern`` is found (``full``: the whole completion matches).
- ``length``: 1 - |chars - target| / target, floored at 0.
- ``japanese_ratio``: the share of Japanese letters among the letters.
- ``json``: 1.0 for valid JSON; with ``schema``, 1.0 only when it also fits the schema's ``type``,
  ``required`` and ``properties`` types (0.5 for valid JSON that does not fit).
- ``judge``: an LLM behind any OpenAI-compatible ``base_url`` (llama.cpp, vLLM, Ollama) scores each
  completion 0-10 (returned as 0-1) against ``criteria``.

User rewards: any plugin's ``register_reward_functions(register)`` hook (an installed package, or a ``.py``
dropped in the workspace's ``plugins/`` folder), ``register(name, fn)`` with
``fn(prompts, completions, answers, **options) -> list[float]``; see docs/plugins.md. A reward that raises is
reported by name, with its traceback, in the job's log; its score counts as 0 for that batch and
the run goes on (:func:`safe_reward`).
"""

from __future__ import annotations

import json
import math
import re
import traceback
import unicodedata
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lora_factory.kit import LoRAFactoryError

RewardFn = Callable[[list[str], list[str], list[str]], list[float]]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    weight: float = Field(1.0, ge=-100.0, le=100.0)


class ExactSpec(_Spec):
    name: Literal["exact_answer"]
    allow_prefix: bool = True


class NumericSpec(_Spec):
    name: Literal["numeric_answer"]
    tolerance: float = Field(1e-6, ge=0.0)


class RegexSpec(_Spec):
    name: Literal["regex"]
    pattern: str
    full: bool = False


class LengthSpec(_Spec):
    name: Literal["length"]
    target: int = Field(ge=1)


class JapaneseSpec(_Spec):
    name: Literal["japanese_ratio"]


class JsonSpec(_Spec):
    name: Literal["json"]
    schema_: dict[str, Any] | None = Field(None, alias="schema")


class JudgeSpec(_Spec):
    name: Literal["judge"]
    base_url: str
    model: str = "default"
    api_key: str | None = None
    criteria: str = "helpfulness, correctness and natural Japanese"
    timeout: float = Field(60.0, gt=0)


class UserSpec(_Spec):
    """A reward a plugin registers (``register_reward_functions``), by its name; its other keys are its options."""

    model_config = ConfigDict(extra="allow")


BUILTIN_SPECS: dict[str, type[_Spec]] = {
    "exact_answer": ExactSpec, "numeric_answer": NumericSpec, "regex": RegexSpec, "length": LengthSpec,
    "japanese_ratio": JapaneseSpec, "json": JsonSpec, "judge": JudgeSpec,
}


def _invalid(index: int, reason: str, spec: Any) -> LoRAFactoryError:
    return LoRAFactoryError(
        "INVALID_REWARD", f"報酬関数 {index + 1} 番目が不正です: {reason}",
        f"Reward function #{index + 1} is invalid: {reason}", http_status=422,
        detail={"field": f"rewards.{index}", "value": spec, "reason": reason})


def check_reward_specs(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Validated reward specs (defaults filled in). A name that is not a built-in is a user reward,
    looked up in the worker among the plugins' rewards."""
    out = []
    for i, spec in enumerate(specs):
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec["name"].strip():
            raise ValueError(f"rewards[{i}] must be an object with a name")
        cls = BUILTIN_SPECS.get(spec["name"], UserSpec)
        try:
            parsed = cls.model_validate(spec)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ValueError(f"rewards[{i}] ({spec['name']}): {'.'.join(map(str, first['loc']))}: {first['msg']}") \
                from exc
        if isinstance(parsed, RegexSpec):
            try:
                re.compile(parsed.pattern)
            except re.error as exc:
                raise ValueError(f"rewards[{i}] (regex): pattern: {exc}") from exc
        out.append(parsed.model_dump(by_alias=True))
    return out


# -- built-ins ----------------------------------------------------------------------------------

def _norm(text: str) -> str:
    return re.sub(r"[。.!! ]+$", "", unicodedata.normalize("NFKC", text).strip().casefold())


_NUMBER = re.compile(r"-?\d+(?:[.,]\d+)*(?:\.\d+)?")


def _last_number(text: str) -> float | None:
    found = _NUMBER.findall(unicodedata.normalize("NFKC", text))
    if not found:
        return None
    try:
        return float(found[-1].replace(",", ""))
    except ValueError:
        return None


def exact_answer(spec: dict[str, Any]) -> RewardFn:
    def fn(prompts: list[str], completions: list[str], answers: list[str]) -> list[float]:
        out = []
        for completion, answer in zip(completions, answers):
            c, a = _norm(completion), _norm(answer)
            out.append(1.0 if a and (c == a or (spec["allow_prefix"] and c.endswith(a))) else 0.0)
        return out
    return fn


def numeric_answer(spec: dict[str, Any]) -> RewardFn:
    def fn(prompts: list[str], completions: list[str], answers: list[str]) -> list[float]:
        out = []
        for completion, answer in zip(completions, answers):
            got, want = _last_number(completion), _last_number(answer)
            out.append(1.0 if got is not None and want is not None and abs(got - want) <= spec["tolerance"] else 0.0)
        return out
    return fn


def regex(spec: dict[str, Any]) -> RewardFn:
    pattern = re.compile(spec["pattern"], re.DOTALL)

    def fn(prompts: list[str], completions: list[str], answers: list[str]) -> list[float]:
        match = pattern.fullmatch if spec["full"] else pattern.search
        return [1.0 if match(c.strip() if spec["full"] else c) else 0.0 for c in completions]
    return fn


def length(spec: dict[str, Any]) -> RewardFn:
    target = float(spec["target"])

    def fn(prompts: list[str], completions: list[str], answers: list[str]) -> list[float]:
        return [max(0.0, 1.0 - abs(len(c.strip()) - target) / target) for c in completions]
    return fn


def japanese(spec: dict[str, Any]) -> RewardFn:
    from lora_factory.plugins.text.encodings import japanese_ratio

    def fn(prompts: list[str], completions: list[str], answers: list[str]) -> list[float]:
        return [float(japanese_ratio(c)) for c in completions]
    return fn


_JSON_TYPES = {"object": dict, "array": list, "string": str, "number": (int, float), "integer": int,
               "boolean": bool, "null": type(None)}


def fits_schema(value: Any, schema: dict[str, Any]) -> bool:
    """The common core of JSON schema: ``type``, ``required``, ``properties``, ``items``, ``enum``."""
    kind = schema.get("type")
    if kind in _JSON_TYPES:
        if isinstance(value, bool) and kind in ("number", "integer"):
            return False
        if not isinstance(value, _JSON_TYPES[kind]):
            return False
    if "enum" in schema and value not in schema["enum"]:
        return False
    if isinstance(value, dict):
        if any(key not in value for key in schema.get("required", [])):
            return False
        for key, sub in (schema.get("properties") or {}).items():
            if key in value and isinstance(sub, dict) and not fits_schema(value[key], sub):
                return False
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return all(fits_schema(v, schema["items"]) for v in value)
    return True


def _strip_fence(text: str) -> str:
    text = text.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", text, re.DOTALL)
    return fenced.group(1) if fenced else text


def json_valid(spec: dict[str, Any]) -> RewardFn:
    schema = spec.get("schema")

    def score(completion: str) -> float:
        try:
            value = json.loads(_strip_fence(completion))
        except (json.JSONDecodeError, ValueError):
            return 0.0
        if schema is None:
            return 1.0
        return 1.0 if fits_schema(value, schema) else 0.5

    def fn(prompts: list[str], completions: list[str], answers: list[str]) -> list[float]:
        return [score(c) for c in completions]
    return fn


JUDGE_PROMPT = ("You are a strict grader. Rate the ANSWER to the QUESTION for {criteria} on a scale from 0 to 10."
                "{reference}\nReply with the number only.\n\nQUESTION:\n{prompt}\n\nANSWER:\n{completion}")


def judge(spec: dict[str, Any]) -> RewardFn:
    """Each completion scored 0-10 by an LLM behind an OpenAI-compatible endpoint (Evol-Instruct's client)."""
    from lora_factory.plugins.text.evol import OpenAICompatibleGenerator

    client = OpenAICompatibleGenerator(spec["base_url"], spec["model"], spec.get("api_key"), spec["timeout"])

    def fn(prompts: list[str], completions: list[str], answers: list[str]) -> list[float]:
        out = []
        for prompt, completion, answer in zip(prompts, completions, answers):
            reference = f"\nA reference answer: {answer}" if answer else ""
            reply = client.complete(JUDGE_PROMPT.format(criteria=spec["criteria"], reference=reference, prompt=prompt,
                                                        completion=completion), max_tokens=8, temperature=0.0)
            number = _last_number(reply)
            out.append(0.0 if number is None else min(10.0, max(0.0, number)) / 10.0)
        return out
    return fn


BUILTINS: dict[str, Callable[[dict[str, Any]], RewardFn]] = {
    "exact_answer": exact_answer, "numeric_answer": numeric_answer, "regex": regex, "length": length,
    "japanese_ratio": japanese, "json": json_valid, "judge": judge,
}


# what GET /api/modalities (and so the form) lists beside the plugins' rewards: name, words, options
BUILTIN_INFO: list[dict[str, Any]] = [
    {"name": "exact_answer", "description_ja": "答え列と一致すれば 1 (allow_prefix: 末尾が答えでも可)",
     "description_en": "1 when the completion equals the row's answer (allow_prefix: or ends with it)",
     "options": ["allow_prefix"]},
    {"name": "numeric_answer", "description_ja": "最後の数値が答えと等しければ 1 (tolerance)",
     "description_en": "1 when the last number equals the answer's (tolerance)", "options": ["tolerance"]},
    {"name": "regex", "description_ja": "pattern が見つかれば 1 (full: 全体一致)",
     "description_en": "1 when pattern is found (full: the whole completion matches)", "options": ["pattern", "full"]},
    {"name": "length", "description_ja": "target 文字に近いほど高い", "description_en": "higher the closer to target characters",
     "options": ["target"]},
    {"name": "japanese_ratio", "description_ja": "文字のうち日本語の割合", "description_en": "the share of Japanese letters",
     "options": []},
    {"name": "json", "description_ja": "正しい JSON なら 1 (schema: 型も確認)",
     "description_en": "1 for valid JSON (schema: its types too)", "options": ["schema"]},
    {"name": "judge", "description_ja": "OpenAI 互換エンドポイントの LLM が採点 (base_url, model, criteria)",
     "description_en": "an LLM behind an OpenAI-compatible endpoint scores it (base_url, model, criteria)",
     "options": ["base_url", "model", "api_key", "criteria", "timeout"]},
]


def unknown_reward(name: str, known: list[str]) -> LoRAFactoryError:
    return LoRAFactoryError(
        "UNKNOWN_REWARD", f"報酬関数「{name}」が見つかりません。候補: {', '.join(known)}",
        f"Unknown reward function '{name}'; known: {', '.join(known)}", http_status=422,
        detail={"field": "rewards", "value": name, "known": known})


def build_rewards(specs: list[dict[str, Any]], user: dict[str, RewardFn]) -> list[tuple[str, float, RewardFn]]:
    """``(name, weight, fn)`` for each spec: a built-in, or a user reward by name."""
    out = []
    for spec in specs:
        name = spec["name"]
        if name in BUILTINS:
            fn = BUILTINS[name](spec)
        elif name in user:
            options = {k: v for k, v in spec.items() if k not in ("name", "weight")}
            base = user[name]
            fn = base if not options else (lambda p, c, a, _f=base, _o=options: _f(p, c, a, **_o))
        else:
            raise unknown_reward(name, sorted([*BUILTINS, *user]))
        out.append((name, float(spec.get("weight", 1.0)), fn))
    return out


def safe_reward(name: str, fn: RewardFn, log: Callable[[str], None]) -> RewardFn:
    """``fn`` that never kills the run: an exception is logged by name with its traceback and the batch
    scores 0; a wrong-length or non-numeric result is reported the same way."""
    def wrapped(prompts: list[str], completions: list[str], answers: list[str]) -> list[float]:
        try:
            scores = [float(s) for s in fn(prompts, completions, answers)]
            if len(scores) != len(completions):
                raise ValueError(f"returned {len(scores)} scores for {len(completions)} completions")
            return [s if math.isfinite(s) else 0.0 for s in scores]
        except Exception as exc:  # noqa: BLE001 - a user's reward must not end the job
            log(f"報酬関数「{name}」でエラー / reward '{name}' raised {type(exc).__name__}: {exc}\n"
                f"{traceback.format_exc().rstrip()}")
            return [0.0] * len(completions)
    return wrapped
