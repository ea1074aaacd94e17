"""What a hook receives as ``ctx`` inside a job's worker process.

The context is the only way a plugin talks back to the host: progress, log lines, the stop flag and
the folders it may write. Keeping it this narrow is what lets a third-party plugin run under the
same job system as the built-in ones.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


class JobContext:
    """Progress, logging and cancellation for one job.

    :param job_id: the job's id (``YYYYMMDD_HHMMSS_xxxx``).
    :param workspace: the :class:`~lora_factory.core.storage.workspace.Workspace`.
    :param run_dir: ``runs/<job_id>/``; ``metrics.jsonl`` and ``checkpoints/`` live here.
    :param log_path: the job's log file (``logs/<kind>_<job_id>.log``).
    :param on_progress: called with each metrics record (the job store persists it).
    :param stop_requested: returns True once a cancel was asked for (polled at most every 0.5 s).
    :param resume_checkpoint: the checkpoint to resume from, or None.
    """

    def __init__(
        self,
        job_id: str,
        workspace: Any,
        run_dir: Path,
        log_path: Path,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
        stop_requested: Callable[[], bool] | None = None,
        resume_checkpoint: Path | None = None,
        kind: str = "train",
        modality: str = "",
    ) -> None:
        self.job_id = job_id
        self.workspace = workspace
        self.kind = kind
        self.modality = modality
        self.run_dir = Path(run_dir)
        self.output_dir = self.run_dir / "output"
        self.checkpoint_dir = self.run_dir / "checkpoints"
        self.resume_checkpoint = resume_checkpoint
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.sample_dir = self.run_dir / "samples"
        self.samples_path = self.run_dir / "samples.jsonl"
        self.log_path = Path(log_path)
        for folder in (self.run_dir, self.output_dir, self.checkpoint_dir, self.log_path.parent):
            folder.mkdir(parents=True, exist_ok=True)
        self._on_progress = on_progress
        self._stop_requested = stop_requested
        self._stop_cached = False
        self._stop_checked_at = 0.0
        self._started = time.monotonic()
        self._first_step: int | None = None
        self._first_time = self._started
        self._lock = threading.Lock()
        self.last_metrics: dict[str, Any] = {}
        # set once the plugin polls should_stop() or reports progress: from then on it stops cooperatively
        self.stop_polled = False
        self.poll_lock = threading.Lock()

    # -- reporting -----------------------------------------------------------------------------
    def progress(self, step: int, max_steps: int, loss: float | None = None, **metrics: Any) -> None:
        """Report one step. ETA and elapsed time are derived here so every plugin gets them."""
        if not self.stop_polled:
            with self.poll_lock:
                self.stop_polled = True
        now = time.monotonic()
        elapsed = now - self._started
        if self._first_step is None:  # a resumed run starts counting from its checkpoint's step
            self._first_step, self._first_time = step, now
        eta = None
        done_here = step - self._first_step
        if done_here > 0 and max_steps and max_steps >= step:
            eta = (now - self._first_time) / done_here * (max_steps - step)
        record: dict[str, Any] = {
            "step": int(step),
            "max_steps": int(max_steps) if max_steps else 0,
            "loss": None if loss is None else float(loss),
            "elapsed": round(elapsed, 3),
            "eta": None if eta is None else round(eta, 3),
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        for key, value in metrics.items():
            record[key] = _jsonable(value)
        with self._lock:
            with open(self.metrics_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            self.last_metrics = record
        if self._on_progress:
            self._on_progress(record)

    def report_sample(self, path: Path | str, step: int, kind: str = "image", caption: str | None = None,
                      **meta: Any) -> dict[str, Any]:
        """Show a sample made during training (an image, an utterance) in the live job view.

        Write it into ``ctx.sample_dir`` (a file elsewhere is copied there). The record lands in
        ``samples.jsonl``; the UI receives it as a ``sample`` event with its URL.
        """
        source = Path(path)
        self.sample_dir.mkdir(parents=True, exist_ok=True)
        if source.resolve().parent != self.sample_dir.resolve():
            import shutil

            target = self.sample_dir / f"{int(step):06d}_{source.name}"
            shutil.copy2(source, target)
            source = target
        record = {"step": int(step), "kind": kind, "file": f"samples/{source.name}", "caption": caption,
                  "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  **{k: _jsonable(v) for k, v in meta.items()}}
        with self._lock, open(self.samples_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        return record

    def log(self, message: str) -> None:
        """Append a line to the job's log (also what the UI's log tail and SSE stream show)."""
        stamp = datetime.now().strftime("%H:%M:%S")
        with self._lock, open(self.log_path, "a", encoding="utf-8") as fh:
            for line in str(message).splitlines() or [""]:
                fh.write(f"[{stamp}] {line}\n")

    def should_stop(self) -> bool:
        """True once a cancel was requested: save what you have and return."""
        if not self.stop_polled:
            with self.poll_lock:
                self.stop_polled = True
        if self._stop_cached or self._stop_requested is None:
            return self._stop_cached
        now = time.monotonic()
        if now - self._stop_checked_at >= 0.5:
            self._stop_checked_at = now
            self._stop_cached = bool(self._stop_requested())
        return self._stop_cached


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, float):
        return round(value, 8)
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)
