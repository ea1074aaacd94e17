"""The typed faces a hook receives: the job context (``ctx``), the inference session (``session``) and
the workspace (``workspace``), as ``typing.Protocol`` classes.

Why protocols and not the real classes: the hookspecs name what a plugin may rely on, not how the
host happens to build it. ``core.jobs.context.JobContext``, ``core.inference.session.InferenceSession``
and ``core.storage.workspace.Workspace`` satisfy them (a test checks it), and so do the fakes of
``lora_factory.kit.testing``, with which a third party tests a plugin without a server. The plugin
host stays below the jobs and inference layers: it imports none of them. ``lora_factory.kit``
re-exports these under the same names; a plugin annotates its hooks with them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Workspace(Protocol):
    """The folders of a user's work (``models/``, ``datasets/``, ``lora_adapters/`` per modality)."""

    home: Path

    def models_dir(self, modality: str) -> Path:
        """``models/<modality>/``."""
        ...

    def datasets_dir(self, modality: str) -> Path:
        """``datasets/<modality>/``."""
        ...

    def adapters_dir(self, modality: str) -> Path:
        """``lora_adapters/<modality>/``."""
        ...

    def resolve_ref(self, value: str, folder: str, modality: str) -> Path:
        """A client's reference (``name`` or ``models/<m>/[<kind>/]<name>``) resolved inside
        ``<folder>/<modality>/``, or ``UNSAFE_PATH`` / ``INVALID_PATH`` (never trust an absolute path)."""
        ...


@runtime_checkable
class JobContext(Protocol):
    """What a job hook (``download_model``, ``refine_dataset``, ``train``, ``evaluate``, ``merge_adapter``)
    gets as ``ctx``: progress, log, samples, the stop flag and the folders it may write."""

    job_id: str
    kind: str
    modality: str
    workspace: Workspace
    run_dir: Path
    output_dir: Path
    checkpoint_dir: Path
    sample_dir: Path
    resume_checkpoint: Path | None

    def progress(self, step: int, max_steps: int, loss: float | None = None, **metrics: Any) -> None:
        """One step done (ETA and elapsed time are derived by the host)."""
        ...

    def report_sample(self, path: Path | str, step: int, kind: str = "image", caption: str | None = None,
                      **meta: Any) -> dict[str, Any]:
        """A sample (image, utterance) made during training, shown live in the job view."""
        ...

    def log(self, message: str) -> None:
        """A line in the job's log."""
        ...

    def should_stop(self) -> bool:
        """True once the user cancelled: save what you have and return."""
        ...


@runtime_checkable
class InferenceSession(Protocol):
    """What ``infer`` and ``regression_check`` get as ``session``: a cache that survives between requests
    in one process, the folder to write media into and the workspace the request runs in."""

    cache: dict[str, Any]
    workspace: Workspace | None

    @property
    def outputs_dir(self) -> Path:
        """Where images and audio files go; the host serves what lands there by URL."""
        ...
