"""What keeps the server from doing its work, for ``/api/health`` and the UI's banner: a stopped or
failing job scheduler, unreadable settings, a nearly full disk; plus the notices the user must be
told once (a database rebuilt after damage).
"""

from __future__ import annotations

import shutil
from typing import Any

from lora_factory.core.errors import LoRAFactoryError
from lora_factory.core.jobs.scheduler import JobManager
from lora_factory.core.storage.settings import load_settings
from lora_factory.core.storage.workspace import Workspace

DISK_LOW_BYTES = 512 * 1024**2


class HostHealth:
    def __init__(self, workspace: Workspace, jobs: JobManager) -> None:
        self.workspace = workspace
        self.jobs = jobs
        self.notices: list[dict[str, Any]] = []  # what the user must be told once (UI banner, /api/health)
        self.scheduler_expected = False  # the server sets it; the CLI drives the loop itself

    def report(self) -> dict[str, Any]:
        problems: list[dict[str, Any]] = []
        scheduler = self.jobs.health()
        if self.scheduler_expected and not scheduler["running"]:
            problems.append({"code": "SCHEDULER_STOPPED", "level": "error",
                             "message": "The job scheduler is not running: queued jobs will not start. Restart the server.",
                             "message_ja": "ジョブのスケジューラーが停止しています。待機中のジョブは開始されません。サーバーを再起動してください。",
                             "detail": scheduler.get("last_error")})
        elif self.scheduler_expected and scheduler["consecutive_failures"]:
            last = scheduler.get("last_error") or {}
            problems.append({"code": "SCHEDULER_FAILING", "level": "error",
                             "message": f"The job scheduler keeps failing: {last.get('message')}",
                             "message_ja": f"ジョブのスケジューラーでエラーが続いています: {last.get('message_ja')}",
                             "detail": last})
        try:
            load_settings(self.workspace.home)
        except LoRAFactoryError as exc:
            problems.append(exc.to_dict()["error"] | {"level": "error"})
        try:
            free = shutil.disk_usage(self.workspace.home).free
        except OSError:
            free = None
        if free is not None and free < DISK_LOW_BYTES:
            problems.append({"code": "DISK_LOW", "level": "warning",
                             "message": f"Only {free // 1024**2} MiB free on the workspace's disk.",
                             "message_ja": f"ワークスペースのディスクの空きが {free // 1024**2} MiB しかありません。",
                             "detail": {"free_bytes": free}})
        return {"ok": not any(p.get("level") == "error" for p in problems), "scheduler": scheduler,
                "problems": problems, "notices": self.notices}
