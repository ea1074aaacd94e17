"""Test a plugin without a server: a workspace in a temp folder, a recording job context, an inference
session, and the drain of an ``infer`` event stream.

Why the real host classes underneath: a fake that only looks like the host would let a plugin pass
its tests and fail in a job. ``FakeJobContext`` *is* the host's job context (``metrics.jsonl``,
``samples.jsonl``, the log file and the folders are written exactly as in a job) that also keeps what
it was told in lists and stops when the test says so::

    from lora_factory.kit.testing import FakeJobContext, FakeInferenceSession, collect_events, temp_workspace

    def test_train(tmp_path):
        ws = temp_workspace(tmp_path, "echo")
        ctx = FakeJobContext(ws, modality="echo", stop_after=2)
        result = my_plugin.train("echo", {"dataset": ..., "params": {...}}, ctx)
        assert [r["step"] for r in ctx.records] == [1, 2] and ctx.lines
        done = collect_events(my_plugin.infer("echo", {...}, FakeInferenceSession(workspace=ws)))

Nothing here imports an ML library.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from lora_factory.core.inference.session import InferenceSession as _HostSession
from lora_factory.core.inference.session import collect_events
from lora_factory.core.jobs.context import JobContext as _HostContext
from lora_factory.core.storage.workspace import Workspace as _HostWorkspace

__all__ = ["FakeJobContext", "FakeInferenceSession", "collect_events", "temp_workspace"]


def temp_workspace(root: str | os.PathLike[str] | None = None, *modalities: str) -> _HostWorkspace:
    """A workspace (the host's own) at ``root``, or in a fresh temp folder; with the folders of the given
    modalities (the built-in three when none is named)."""
    home = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="lora-factory-test-"))
    return _HostWorkspace(home, modalities) if modalities else _HostWorkspace(home)


class FakeJobContext(_HostContext):
    """A job context that records what the plugin reports and stops when the test wants.

    :param workspace: a workspace (see :func:`temp_workspace`) or the folder to make one in.
    :param stop_after: ``should_stop()`` turns true once this many progress reports were made.
    :param resume_checkpoint: as the host passes it when a job is resumed.

    ``records`` (progress records, as written to ``metrics.jsonl``), ``lines`` (log messages),
    ``samples`` (``report_sample`` records) and ``stop_polls`` (how often ``should_stop`` was asked)
    are kept for the test; ``request_stop()`` is the user's cancel button.
    """

    def __init__(self, workspace: _HostWorkspace | str | os.PathLike[str], job_id: str = "job1", *,
                 kind: str = "train", modality: str = "", stop_after: int | None = None,
                 resume_checkpoint: Path | None = None) -> None:
        ws = temp_workspace(workspace) if isinstance(workspace, (str, os.PathLike)) else workspace
        home = Path(ws.home)
        super().__init__(job_id, ws, home / "runs" / job_id, home / "logs" / f"{kind}_{job_id}.log",
                         resume_checkpoint=resume_checkpoint, kind=kind, modality=modality)
        self.stop_after = stop_after
        self.records: list[dict[str, Any]] = []
        self.lines: list[str] = []
        self.samples: list[dict[str, Any]] = []
        self.stop_polls = 0
        self._cancelled = False

    def progress(self, step: int, max_steps: int, loss: float | None = None, **metrics: Any) -> None:
        super().progress(step, max_steps, loss, **metrics)
        self.records.append(self.last_metrics)

    def report_sample(self, path: Path | str, step: int, kind: str = "image", caption: str | None = None,
                      **meta: Any) -> dict[str, Any]:
        record = super().report_sample(path, step, kind=kind, caption=caption, **meta)
        self.samples.append(record)
        return record

    def log(self, message: str) -> None:
        super().log(message)
        self.lines.append(message)

    def request_stop(self) -> None:
        """What the host does when the user cancels: ``should_stop()`` answers True from now on."""
        self._cancelled = True

    def should_stop(self) -> bool:
        super().should_stop()  # marks the job as one that stops cooperatively, as in a real job
        self.stop_polls += 1
        return self._cancelled or (self.stop_after is not None and len(self.records) >= self.stop_after)


class FakeInferenceSession(_HostSession):
    """The host's inference session with a temp ``outputs_dir`` unless one is given; keep it between
    calls to test that a plugin reuses what it loaded (``session.cache``)."""

    def __init__(self, outputs_dir: str | os.PathLike[str] | None = None, workspace: Any = None) -> None:
        if outputs_dir is None and workspace is not None:
            outputs_dir = Path(workspace.home) / "artifacts" / "outputs"
        super().__init__(Path(outputs_dir) if outputs_dir is not None else None, workspace=workspace)
