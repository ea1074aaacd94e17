"""Where the user's dictionary lives in the workspace, and how each process finds it.

``datasets/audio/.user_dictionary.json``: beside the voice datasets it is used to train on, a
dot-name the listings skip. The server embeds the entries into a job's resolved spec (so
``config.json`` records the dictionary a run used); the inference worker reads the file directly so
an edit applies to the next synthesis.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


# -- the operations the REST routes and the CLI command share (``web.py``, ``commands.py``) --------

def load_entries(datasets_dir: Path) -> list[dict[str, str]]:
    return UserDictionary.load(dictionary_path(datasets_dir)).to_list()


def save_entries(datasets_dir: Path, entries: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Validate every entry, then replace the whole list (written atomically).

    :raises LoRAFactoryError: ``DICTIONARY_INVALID`` (422) naming the first bad entry (1-based).
    """
    from lora_factory.kit import LoRAFactoryError
    from lora_factory.kit.files import write_text_atomic
    from lora_factory.plugins.audio.text_norm.user_dict import validate_entry

    for index, raw in enumerate(entries):
        try:
            validate_entry(raw)
        except ValueError as exc:
            raise LoRAFactoryError("DICTIONARY_INVALID", f"{index + 1} 行目の登録が正しくありません: {exc}",
                                   f"Entry {index + 1} is invalid: {exc}", 422,
                                   detail={"index": index, "reason": str(exc)}) from None
    dictionary = UserDictionary.from_list(entries)
    path = dictionary_path(datasets_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, dictionary.to_json())
    return dictionary.to_list()


def read_preview(datasets_dir: Path, text: str, latin: str = "keep") -> dict[str, Any]:
    """The text as it will be read: normalised (numbers, dates, the user dictionary) and its katakana
    reading with accents. No model needed.

    :raises LoRAFactoryError: ``INVALID_REQUEST`` (422) for an unknown ``latin`` mode.
    """
    from lora_factory.kit import LoRAFactoryError
    from lora_factory.plugins.audio.text_norm import LATIN_MODES, NormalizationOptions
    from lora_factory.plugins.audio.text_norm.normalize import normalize_with_spans
    from lora_factory.plugins.audio.text_norm.reading import reading_of
    from lora_factory.plugins.audio.text_norm.user_dict import FALL, RISE

    if latin not in LATIN_MODES:
        raise LoRAFactoryError("INVALID_REQUEST", "latin は keep / spell / kana のいずれかです。",
                               "latin must be keep, spell or kana.", 422, detail={"field": "latin"})
    options = NormalizationOptions(latin=latin, user_dictionary=UserDictionary.load(dictionary_path(datasets_dir)))
    normalized, spans = normalize_with_spans(text, options)  # the rules' readings taken literally
    reading = reading_of(normalized, spans).to_dict()
    # a phrase whose accent the user set is shown under the word they registered, not its reading
    by_marked = {e.spoken(): e.surface for e in options.user_dictionary.entries if e.accent is not None}
    for phrase in reading["phrases"]:
        if phrase["user"]:
            marked = phrase["surface"].replace("[", RISE).replace("]", FALL)
            phrase["surface"] = by_marked.get(marked, phrase["surface"])
    return {"text": text, "normalized": normalized, "reading": reading}
