"""Which checkpoint a resumed job continues from.

A checkpoint is ``runs/<job_id>/checkpoints/checkpoint-<step>/``. It is *complete* when it holds
``trainer_state.json`` (transformers' Trainer writes it last) or the kit's ``COMPLETE`` marker (the
:class:`lora_factory.kit.trainer.StepReporter` writes it last), so a folder cut off mid-save by a kill
is never resumed from.
"""

from __future__ import annotations

from pathlib import Path

COMPLETE_MARKERS = ("trainer_state.json", "COMPLETE")


def is_complete(checkpoint: Path) -> bool:
    return any((checkpoint / marker).is_file() for marker in COMPLETE_MARKERS)


def checkpoints(checkpoint_dir: Path) -> list[tuple[int, Path]]:
    """Every ``checkpoint-N`` folder, by step."""
    found = []
    for path in Path(checkpoint_dir).glob("checkpoint-*"):
        suffix = path.name.rsplit("-", 1)[-1]
        if path.is_dir() and suffix.isdigit():
            found.append((int(suffix), path))
    return sorted(found)


def latest_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The highest-numbered complete checkpoint; a plugin that marks none gets the highest-numbered folder."""
    found = checkpoints(checkpoint_dir)
    complete = [item for item in found if is_complete(item[1])]
    candidates = complete or found
    return max(candidates)[1] if candidates else None
