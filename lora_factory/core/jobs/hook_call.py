"""Calling a job's hook and recording what it reports: shared by the job worker (one process) and each
rank of a multi-device job (:mod:`lora_factory.core.jobs.ranks`), so neither imports the other."""

from __future__ import annotations

import threading
import time
from typing import Any

from lora_factory.core.errors import LoRAFactoryError, as_user_error
from lora_factory.core.jobs.context import JobContext
from lora_factory.core.jobs.store import JobStore
from lora_factory.core.plugin_host.host_targets import HUB_TARGET

__all__ = ["HOOK_BY_KIND", "ProgressWriter", "error_body", "call_hook"]


HOOK_BY_KIND = {
    "download": "download_model",
    "refine": "refine_dataset",
    "train": "train",
    "merge": "merge_adapter",
    "export": "export_adapter",
}


class ProgressWriter:
    """Persists progress to the job row, at most every 0.25 s (the last record always lands)."""

    def __init__(self, store: JobStore, job_id: str) -> None:
        self.store = store
        self.job_id = job_id
        self._last_write = 0.0
        self._pending: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def __call__(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._pending = record
            if time.monotonic() - self._last_write >= 0.25:
                self.flush_locked()

    def flush(self) -> None:
        with self._lock:
            self.flush_locked()

    def flush_locked(self) -> None:
        if self._pending is None:
            return
        rec = self._pending
        self.store.update(self.job_id, step=rec.get("step"), max_steps=rec.get("max_steps"),
                          loss=rec.get("loss"), metrics=rec)
        self._pending = None
        self._last_write = time.monotonic()


def error_body(exc: BaseException) -> dict[str, Any]:
    known = as_user_error(exc)
    if known is not None:
        return {"code": known.code, "message": known.message_en, "message_ja": known.message_ja, "detail": known.detail}
    return {"code": "JOB_FAILED", "message": f"{type(exc).__name__}: {exc}",
            "message_ja": f"ジョブが失敗しました: {type(exc).__name__}: {exc}", "detail": None}


def call_hook(plugin_host: Any, kind: str, modality: str, spec: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    if kind == "eval":
        from lora_factory.core.jobs.regression import run_eval_job

        return run_eval_job(plugin_host, modality, spec, ctx)
    if kind == "export" and spec.get("target") == HUB_TARGET:
        from lora_factory.core.jobs.hub_push import run_hub_push

        return run_hub_push(spec, ctx)
    result = plugin_host.call(HOOK_BY_KIND[kind], modality, spec=spec, ctx=ctx)
    if result is None:
        raise LoRAFactoryError(
            "HOOK_NOT_IMPLEMENTED",
            f"モダリティ「{modality}」のプラグインは {HOOK_BY_KIND[kind]} を実装していません。",
            f"No plugin implements {HOOK_BY_KIND[kind]} for modality '{modality}'.",
            http_status=400,
        )
    # a third-party hook may return any value: a dict is the contract, anything else is kept as is
    return dict(result) if isinstance(result, dict) else {"value": result}
