"""Which checkpoint a resumed job continues from.

A checkpoint is ``runs/<job_id>/checkpoints/checkpoint-<step>/``. It is *complete* when it holds
``trainer_state.json`` (transformers' Trainer writes it last) or the kit's ``COMPLETE`` marker (the
:class:`lora_factory.kit.trainer.StepReporter` writes it last), so a folder cut off mid-save by a kill
is never resumed from.

The marker alone is not enough across ranks: in a distributed run every rank writes its own
``rng_state_<rank>.pth`` while rank 0 writes the rest and ``trainer_state.json``, and nothing makes
rank 0 wait for the others. A rank killed mid-save leaves a cut-off ``rng_state_1.pth`` beside a
complete-looking folder, and every resume from it fails in ``torch.load``. So each torch file
(``*.pt``, ``*.pth``: torch writes a zip) must also be a whole zip, which is read from its end only.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

COMPLETE_MARKERS = ("trainer_state.json", "COMPLETE")
TORCH_FILE_SUFFIXES = (".pt", ".pth")


def torch_file_is_whole(path: Path) -> bool:
    """True when a torch-saved file ends with its zip directory (torch.save's format since 1.6)."""
    try:
        return zipfile.is_zipfile(path)
    except OSError:
        return False


def is_complete(checkpoint: Path) -> bool:
    if not any((checkpoint / marker).is_file() for marker in COMPLETE_MARKERS):
        return False
    torch_files = (p for p in checkpoint.iterdir() if p.suffix in TORCH_FILE_SUFFIXES and p.is_file())
    return all(torch_file_is_whole(p) for p in torch_files)


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
