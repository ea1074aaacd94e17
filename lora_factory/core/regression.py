"""Regression suites: prompts with checks, run against an adapter, its base and its previous version.

A suite is JSONL (or a list in the request), one case a line::

    {"prompt": "日本の首都は?", "checks": [{"type": "contains", "value": "東京"}]}
    {"messages": [...], "contains": ["東京"], "not_contains": ["大阪"], "regex": "^.+$", "max_length": 200}

The eval job answers each case with the ``infer`` hook (so any modality with a chat-like infer
works), applies the checks, and optionally computes eval loss / perplexity with the ``evaluate`` hook.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, model_validator

from lora_factory.core.errors import LoRAFactoryError
from lora_factory.core.inference_session import InferenceSession, collect_text


class Check(BaseModel):
    type: Literal["contains", "not_contains", "regex", "max_length", "min_length"]
    value: str | int

    def passes(self, text: str) -> bool:
        if self.type == "contains":
            return str(self.value) in text
        if self.type == "not_contains":
            return str(self.value) not in text
        if self.type == "regex":
            return re.search(str(self.value), text, flags=re.MULTILINE) is not None
        if self.type == "max_length":
            return len(text) <= int(self.value)
        return len(text) >= int(self.value)


class SuiteCase(BaseModel):
    prompt: str | None = None
    messages: list[dict[str, str]] | None = None
    checks: list[Check] = Field(default_factory=list)
    contains: list[str] = Field(default_factory=list)
    not_contains: list[str] = Field(default_factory=list)
    regex: str | None = None
    max_length: int | None = None
    name: str | None = None

    @model_validator(mode="after")
    def _expand_shorthand(self) -> SuiteCase:
        if not self.prompt and not self.messages:
            raise ValueError("a case needs 'prompt' or 'messages'")
        self.checks = list(self.checks) + [Check(type="contains", value=v) for v in self.contains] \
            + [Check(type="not_contains", value=v) for v in self.not_contains]
        if self.regex:
            re.compile(self.regex)
            self.checks.append(Check(type="regex", value=self.regex))
        if self.max_length is not None:
            self.checks.append(Check(type="max_length", value=self.max_length))
        if not self.checks:
            raise ValueError("a case needs at least one check")
        return self

    def as_messages(self) -> list[dict[str, str]]:
        return self.messages or [{"role": "user", "content": self.prompt or ""}]


def parse_suite(raw: list[dict[str, Any]] | str | Path) -> list[SuiteCase]:
    """Validate a suite (list of dicts, or a JSONL file); errors name the case / line."""
    items: list[tuple[int, Any]] = []
    if isinstance(raw, (str, Path)):
        for lineno, line in enumerate(Path(raw).read_text(encoding="utf-8-sig").splitlines(), 1):
            if line.strip():
                try:
                    items.append((lineno, json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise _suite_error(lineno, f"invalid JSON: {exc.msg}") from exc
    else:
        items = list(enumerate(raw, 1))
    cases = []
    for lineno, item in items:
        try:
            cases.append(SuiteCase.model_validate(item))
        except (ValidationError, re.error) as exc:
            raise _suite_error(lineno, str(exc).splitlines()[0] if isinstance(exc, re.error) else
                               "; ".join(e["msg"] for e in exc.errors())) from exc
    if not cases:
        raise LoRAFactoryError("SUITE_EMPTY", "回帰テストのケースがありません。", "The regression suite has no case.")
    return cases


def _suite_error(line: int, reason: str) -> LoRAFactoryError:
    return LoRAFactoryError("SUITE_INVALID", f"回帰テスト {line} 行目が不正です: {reason}",
                            f"Regression suite line {line} is invalid: {reason}", http_status=422,
                            detail={"errors": [{"line": line, "reason": reason}]})


def run_suite(plugin_host: Any, modality: str, cases: list[SuiteCase], base_model: str, adapter: str | None,
              params: dict[str, Any], session: InferenceSession, on_case: Any = None) -> dict[str, Any]:
    results = []
    for case in cases:
        events = plugin_host.call("infer", modality, session=session, request={
            "base_model": base_model, "adapter": adapter, "messages": case.as_messages(),
            "params": params, "stream": False})
        if events is None:
            raise LoRAFactoryError("HOOK_NOT_IMPLEMENTED", f"「{modality}」は推論に対応していません。",
                                   f"Modality '{modality}' has no infer hook.")
        text = collect_text(events)["text"]
        checks = [{"type": c.type, "value": c.value, "passed": c.passes(text)} for c in case.checks]
        results.append({"name": case.name, "prompt": case.prompt or case.as_messages()[-1]["content"],
                        "output": text, "checks": checks, "passed": all(c["passed"] for c in checks)})
        if on_case:
            on_case()
    passed = sum(r["passed"] for r in results)
    return {"passed": passed, "total": len(results), "pass_rate": passed / len(results) if results else 0.0,
            "cases": results}


def run_eval_job(plugin_host: Any, modality: str, spec: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """The ``eval`` job: the suite against base, adapter and previous adapter; eval loss if a dataset."""
    cases = parse_suite(spec["suite"]) if spec.get("suite") else []
    targets = [("adapter", spec.get("adapter")), ("base", None)]
    if spec.get("previous_adapter"):
        targets.append(("previous", spec["previous_adapter"]))
    total = len(cases) * len(targets) + (2 if spec.get("dataset") else 0)
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        ctx.progress(done, total)

    session = InferenceSession()
    out: dict[str, Any] = {"targets": {}, "metrics": {}}
    params = dict(spec.get("params") or {})
    params.setdefault("temperature", 0)
    for label, adapter in targets:
        if not cases:
            break
        if ctx.should_stop():
            out["stopped"] = True
            break
        ctx.log(f"regression suite on {label}: {len(cases)} cases")
        out["targets"][label] = run_suite(plugin_host, modality, cases, spec["base_model"], adapter, params,
                                          session, on_case=tick)
        ctx.log(f"  {label}: {out['targets'][label]['passed']}/{out['targets'][label]['total']} passed")
    if spec.get("dataset") and not out.get("stopped"):
        for label, adapter in (("adapter", spec.get("adapter")), ("base", None)):
            metrics = plugin_host.call("evaluate", modality, ctx=ctx, spec={
                "base_model": spec["base_model"], "adapter": adapter, "dataset": spec["dataset"],
                "dataset_options": spec.get("dataset_options") or {}, "params": spec.get("eval_params") or {}})
            out["metrics"][label] = metrics
            ctx.log(f"eval on {label}: {metrics}")
            tick()
    out["summary"] = {label: {k: t[k] for k in ("passed", "total", "pass_rate")} for label, t in out["targets"].items()}
    for label, metrics in out["metrics"].items():
        out["summary"].setdefault(label, {}).update(metrics or {})
    return out
