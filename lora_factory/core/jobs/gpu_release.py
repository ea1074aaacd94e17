"""Before a GPU-bound job starts: stop the chat's model process so its VRAM is free for the job.

``LORA_FACTORY_RELEASE_INFERENCE``: ``auto`` (default: when an NVIDIA GPU is present), ``always`` or
``never``. The next chat message loads the model again. The scheduler calls it (``before_gpu_job``).
Where the machine has devices, the chat model sits on one of them and is stopped only for a job
given that device (``auto`` then also counts simulated devices, so CI exercises the same path).
"""

from __future__ import annotations

import os
from typing import Any

from lora_factory.core.inference.client import InferenceClient
from lora_factory.core.jobs.scheduler import JobManager


class ChatModelRelease:
    def __init__(self, inference: InferenceClient, jobs: JobManager) -> None:
        self.inference = inference
        self.jobs = jobs
        self._gpu_present: bool | None = None

    def __call__(self, job: dict[str, Any]) -> None:
        mode = os.environ.get("LORA_FACTORY_RELEASE_INFERENCE", "auto")
        if mode == "never":
            return
        held = self.inference.device if self.inference.running else None
        if held is not None:  # placed on a device: only a job given that device needs it back
            if held not in (job.get("devices") or []):
                return
        elif mode == "auto" and not self._has_gpu():
            return
        if self.inference.release():
            with open(self.jobs.log_path(job), "a", encoding="utf-8") as fh:
                fh.write("[host] the chat model was unloaded to free GPU memory for this job\n")

    def _has_gpu(self) -> bool:
        if self._gpu_present is None:
            from lora_factory.core.system_info import gpus

            self._gpu_present = bool(gpus())
        return self._gpu_present
