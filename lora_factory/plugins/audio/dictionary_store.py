"""Where the user's dictionary lives in the workspace, and how each process finds it.

``datasets/audio/.user_dictionary.json``: beside the voice datasets it is used to train on, a
dot-name the listings skip. The server embeds the entries into a job's resolved spec (so
``config.json`` records the dictionary a run used); the inference worker reads the file directly so
an edit applies to the next synthesis.
"""

from __future__ import annotations

from pathlib import Path

from lora_factory.plugins.audio.text_norm.user_dict import UserDictionary

FILE_NAME = ".user_dictionary.json"
MODALITY = "audio"


def dictionary_path(datasets_dir: Path) -> Path:
    return Path(datasets_dir) / FILE_NAME


def path_near(path: Path | str | None) -> Path | None:
    """The dictionary file for a path inside the workspace (a dataset, a model, an adapter)."""
    if not path:
        return None
    path = Path(path).resolve()
    for parent in [path, *path.parents]:
        if parent.name == MODALITY and parent.parent.name in ("datasets", "models", "lora_adapters"):
            return parent.parent.parent / "datasets" / MODALITY / FILE_NAME
    return None


def load_near(path: Path | str | None) -> UserDictionary:
    found = path_near(path)
    try:
        return UserDictionary.load(found) if found else UserDictionary()
    except (ValueError, OSError):
        return UserDictionary()
