"""Regression suites: cases with checks, run against an adapter, its base and its previous version.

A suite is JSONL (or a list in the request), one case a line::

    {"prompt": "日本の首都は?", "checks": [{"type": "contains", "value": "東京"}]}
    {"messages": [...], "contains": ["東京"], "not_contains": ["大阪"], "regex": "^.+$", "max_length": 200}
    {"input": {"prompt": "a cat, watercolor"}, "params": {"seed": 7}, "checks": [{"type": "clip_score", "min": 0.2}]}

The eval job answers each case with the owner plugin's ``infer`` hook for every target (same
parameters, same seed), keeps the media it produced in ``runs/<job>/outputs/<target>/``, then applies
the checks: the text checks here, any other kind through the plugin's ``regression_check`` hook with
the previous version's output for the same case as the reference. Eval loss / perplexity come from
the ``evaluate`` hook when a dataset is given.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lora_factory.core.errors import LoRAFactoryError
from lora_factory.core.inference.generation import resolve_infer
from lora_factory.core.inference.session import InferenceSession, collect_events

TEXT_CHECKS = ("contains", "not_contains", "regex", "max_length", "min_length")
DEFAULT_SEED = 1234


class Check(BaseModel):
    """One check; the text kinds take ``value``, a plugin's kinds take whatever fields they document."""

    model_config = ConfigDict(extra="allow")
    type: str = Field(min_length=1)
    value: str | int | float | None = None

    def is_text_check(self) -> bool:
        return self.type in TEXT_CHECKS

    def passes(self, text: str) -> bool:
        if self.type == "contains":
            return str(self.value) in text
        if self.type == "not_contains":
            return str(self.value) not in text
        if self.type == "regex":
            return re.search(str(self.value), text, flags=re.MULTILINE) is not None
        if self.type == "max_length":
            return len(text) <= int(self.value or 0)
        if self.type == "min_length":
            return len(text) >= int(self.value or 0)
        raise ValueError(f"not a text check: {self.type}")


class SuiteCase(BaseModel):
    prompt: str | None = None
    messages: list[dict[str, Any]] | None = None
    input: dict[str, Any] | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    task: str | None = None
    checks: list[Check] = Field(default_factory=list)
    contains: list[str] = Field(default_factory=list)
    not_contains: list[str] = Field(default_factory=list)
    regex: str | None = None
    max_length: int | None = None
    name: str | None = None

    @model_validator(mode="after")
    def _expand_shorthand(self) -> SuiteCase:
        if not self.prompt and not self.messages and not self.input:
            raise ValueError("a case needs 'prompt', 'messages' or 'input'")
        self.checks = list(self.checks) + [Check(type="contains", value=v) for v in self.contains] \
            + [Check(type="not_contains", value=v) for v in self.not_contains]
        if self.regex:
            self.checks.append(Check(type="regex", value=self.regex))
        if self.max_length is not None:
            self.checks.append(Check(type="max_length", value=self.max_length))
        for check in self.checks:
            if check.type == "regex":
                re.compile(str(check.value))
            elif check.is_text_check() and check.value is None:
                raise ValueError(f"check '{check.type}' needs a value")
        if not self.checks:
            raise ValueError("a case needs at least one check")
        return self

    def as_messages(self) -> list[dict[str, Any]]:
        return self.messages or [{"role": "user", "content": self.prompt or ""}]

    def as_input(self) -> dict[str, Any]:
        return dict(self.input) if self.input else {"prompt": self.prompt or self.as_messages()[-1].get("content", "")}

    def label(self) -> str:
        return self.name or self.prompt or str((self.input or {}).get("prompt") or (self.input or {}).get("text")
                                               or self.as_messages()[-1].get("content", ""))


def parse_suite(raw: list[dict[str, Any]] | str | Path, check_kinds: set[str] | None = None) -> list[SuiteCase]:
    """Validate a suite (list of dicts, or a JSONL file); errors name the case / line.

    :param check_kinds: the check kinds the modality's plugin evaluates (``regression_checks``); a
        check of another kind is refused here, before any model is loaded.
    """
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
    known = set(TEXT_CHECKS) | set(check_kinds or ())
    cases = []
    for lineno, item in items:
        try:
            case = SuiteCase.model_validate(item)
        except (ValidationError, re.error) as exc:
            raise _suite_error(lineno, str(exc).splitlines()[0] if isinstance(exc, re.error) else
                               "; ".join(e["msg"] for e in exc.errors())) from exc
        unknown = [c.type for c in case.checks if c.type not in known]
        if check_kinds is not None and unknown:
            raise _suite_error(lineno, f"unknown check '{unknown[0]}' (known: {', '.join(sorted(known))})")
        cases.append(case)
    if not cases:
        raise LoRAFactoryError("SUITE_EMPTY", "回帰テストのケースがありません。", "The regression suite has no case.")
    return cases


def _suite_error(line: int, reason: str) -> LoRAFactoryError:
    return LoRAFactoryError("SUITE_INVALID", f"回帰テスト {line} 行目が不正です: {reason}",
                            f"Regression suite line {line} is invalid: {reason}", http_status=422,
                            detail={"errors": [{"line": line, "reason": reason}]})


def answer_case(plugin_host: Any, modality: str, case: SuiteCase, base_model: str, adapter: str | None,
                params: dict[str, Any], session: InferenceSession, task: str | None = None) -> dict[str, Any]:
    """One case answered by one target: ``{"text", "media": [{"kind", "path", ...}], ...}``."""
    request = {"task": case.task or task, "base_model": base_model,
               "adapters": [{"path": adapter, "name": Path(adapter).name, "weight": 1.0}] if adapter else [],
               "messages": case.as_messages(), "input": case.as_input(), "params": {**params, **case.params},
               "stream": False}
    # resolved as a server request is (auxiliary models named in the case, a VAE, a ControlNet, too)
    request = resolve_infer(plugin_host, modality, request, session.workspace)
    events = plugin_host.call("infer", modality, request=request, session=session)
    if events is None:
        raise LoRAFactoryError("HOOK_NOT_IMPLEMENTED", f"「{modality}」は推論に対応していません。",
                               f"Modality '{modality}' has no infer hook.")
    return collect_events(events)


def evaluate_checks(plugin_host: Any, modality: str, case: SuiteCase, output: dict[str, Any],
                    reference: dict[str, Any] | None, session: InferenceSession) -> list[dict[str, Any]]:
    """The text checks here; any other kind by the plugin (``regression_check``)."""
    text = output.get("text") or ""
    results = []
    for check in case.checks:
        if check.is_text_check():
            results.append({"type": check.type, "value": check.value, "passed": check.passes(text)})
            continue
        answer = plugin_host.call("regression_check", modality, check=check.model_dump(), session=session,
                                  output=dict(output, case=case.model_dump()), reference=reference)
        if answer is None:
            raise LoRAFactoryError("CHECK_UNSUPPORTED", f"「{modality}」は検査「{check.type}」に対応していません。",
                                   f"Modality '{modality}' cannot evaluate the check '{check.type}'.",
                                   detail={"check": check.type})
        results.append({**check.model_dump(), **answer, "passed": bool(answer.get("passed"))})
    return results


def score_target(plugin_host: Any, modality: str, cases: list[SuiteCase], outputs: list[dict[str, Any]],
                 references: list[dict[str, Any]] | None, session: InferenceSession, on_case: Any = None,
                 present: Any = None) -> dict[str, Any]:
    results = []
    for i, (case, output) in enumerate(zip(cases, outputs)):
        reference = references[i] if references else None
        checks = evaluate_checks(plugin_host, modality, case, output, reference, session)
        media = [present(m) if present else m for m in output.get("media") or []]
        results.append({"name": case.name, "prompt": case.label(), "output": output.get("text") or "",
                        "media": media, "checks": checks, "passed": all(c["passed"] for c in checks)})
        if on_case:
            on_case()
    passed = sum(r["passed"] for r in results)
    return {"passed": passed, "total": len(results), "pass_rate": passed / len(results) if results else 0.0,
            "cases": results}


def run_eval_job(plugin_host: Any, modality: str, spec: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """The ``eval`` job: the suite against previous adapter, adapter and base; eval loss if a dataset."""
    from lora_factory.core.inference.media import MediaStore

    desc = plugin_host.modalities().get(modality) or {}
    cases = parse_suite(spec["suite"], set(desc.get("regression_checks") or {})) if spec.get("suite") else []
    targets = [("adapter", spec.get("adapter")), ("base", None)]
    if spec.get("previous_adapter"):
        targets.append(("previous", spec["previous_adapter"]))
    total = len(cases) * len(targets) * 2 + (2 if spec.get("dataset") else 0)
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        ctx.progress(done, total)

    media = MediaStore(ctx.workspace)
    session = InferenceSession(workspace=ctx.workspace)
    tasks = [k for k in (desc.get("inference_kinds") or []) if k != "chat"]
    out: dict[str, Any] = {"targets": {}, "metrics": {}}
    params = dict(spec.get("params") or {})
    params.setdefault("temperature", 0)
    params.setdefault("seed", DEFAULT_SEED)  # every target renders with the same seed
    answers: dict[str, list[dict[str, Any]]] = {}
    for label, adapter in targets:
        if not cases or ctx.should_stop():
            out["stopped"] = bool(cases)
            break
        ctx.log(f"regression suite on {label}: {len(cases)} cases")
        session.outputs_dir = ctx.run_dir / "outputs" / label
        answers[label] = []
        for case in cases:
            answers[label].append(answer_case(plugin_host, modality, case, spec["base_model"], adapter, params,
                                              session, tasks[0] if tasks else None))
            tick()
    for label, outputs in answers.items():
        references = answers.get("previous") if label == "adapter" else None
        out["targets"][label] = score_target(plugin_host, modality, cases, outputs, references, session, tick,
                                             present=lambda m: media.present(m, modality, ctx.job_id))
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
