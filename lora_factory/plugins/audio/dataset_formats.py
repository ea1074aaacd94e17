"""Folder datasets of voice clips: Style-Bert-VITS2 / GPT-SoVITS ``esd.list``, ``metadata.jsonl``, or
plain recordings (audio files without transcripts, what the builder starts from).

``esd.list``: one clip per line, ``wavs/x.wav|speaker|JP|text``. Paths in files made by other tools
may be relative to the dataset, to ``wavs/``, or absolute from another machine; we find the file by
trying those in order. Lines are kept verbatim, so a dataset imported and exported unchanged is
byte-identical, and a dataset made here opens in SBV2.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")  # what soundfile reads here (audio_io)
ESD_LIST = "esd.list"
METADATA_JSONL = "metadata.jsonl"
FORMATS = ("esd_list", "metadata_jsonl", "recordings")
WAVS = "wavs"
LANGUAGES = ("JP", "EN", "ZH")
# the language column as SBV2 (style_bert_vits2/constants.py Languages) and GPT-SoVITS
# (prepare_datasets/1-get-text.py language_v1_to_language_v2) accept it -> our canonical code
LANGUAGE_CODES = {"JP": "ja", "EN": "en", "ZH": "zh", "jp": "ja", "JA": "ja", "ja": "ja", "en": "en", "En": "en",
                  "zh": "zh", "KO": "ko", "Ko": "ko", "ko": "ko", "yue": "yue", "YUE": "yue", "Yue": "yue"}


def canonical_language(code: str) -> str | None:
    """``ja`` / ``en`` / ``zh`` / ``ko`` / ``yue`` for a language column SBV2 or GPT-SoVITS accepts."""
    return LANGUAGE_CODES.get(code.strip())
_JSONL_FILE_KEYS = ("file_name", "file", "audio", "path", "wav")
_JSONL_TEXT_KEYS = ("text", "transcription", "sentence", "transcript")


@dataclass
class Clip:
    """One voice clip of a dataset; ``id`` is the audio path relative to the dataset folder."""

    id: str
    text: str = ""
    speaker: str = ""
    language: str = "JP"
    line: int | None = None
    source: str = ""  # the path as written in the list file
    extra: dict[str, Any] = field(default_factory=dict)

    def path_in(self, root: Path) -> Path:
        return root / self.id


@dataclass
class ClipList:
    format: str
    clips: list[Clip]
    errors: list[dict[str, Any]]
    list_file: str | None = None


def _candidates(written: str) -> list[str]:
    """Where a path written in a list file may point inside the dataset folder."""
    written = written.strip()
    pure = PureWindowsPath(written) if "\\" in written else PurePosixPath(written)
    name = pure.name
    out = []
    if not pure.is_absolute() and ".." not in pure.parts and not PureWindowsPath(written).drive:
        rel = "/".join(pure.parts)
        out += [rel, f"{WAVS}/{rel}"]
    out.append(f"{WAVS}/{name}")
    # a path from another machine: keep the part after the last "wavs" folder (Data/x/wavs/sub/a.wav)
    parts = list(pure.parts)
    if WAVS in parts:
        idx = len(parts) - 1 - parts[::-1].index(WAVS)
        out.append("/".join([WAVS, *parts[idx + 1:]]))
    seen: list[str] = []
    for c in out:
        if c and c not in seen:
            seen.append(c)
    return seen


def _written_name(written: str) -> str:
    written = written.strip()
    return (PureWindowsPath(written) if "\\" in written else PurePosixPath(written)).name


class AudioIndex:
    """The audio files of a dataset by file name, so a list written on another machine
    (GPT-SoVITS's ``D:\\GPT-SoVITS\\output\\slicer_opt\\x.wav`` or ``/home/…/slicer_opt/x.wav``) finds
    ``slicer_opt/x.wav`` wherever the archive keeps it. Built once per list, on first need."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._by_name: dict[str, list[str]] | None = None

    def by_name(self, name: str) -> list[str]:
        if self._by_name is None:
            self._by_name = {}
            base = self.root.resolve()
            for path in sorted(self.root.rglob("*")):
                rel = path.relative_to(self.root)
                if (path.suffix.lower() in AUDIO_SUFFIXES and not any(p.startswith(".") for p in rel.parts)
                        and path.is_file() and base in path.resolve().parents):
                    self._by_name.setdefault(path.name, []).append(rel.as_posix())
        return self._by_name.get(name, [])


def resolve_clip_path(root: Path, written: str, index: AudioIndex | None = None) -> str | None:
    """The dataset-relative path of an existing file for ``written``, never outside ``root``: the path
    as written, under ``wavs/``, then by file name anywhere in the dataset (when one file has it)."""
    base = root.resolve()
    for rel in _candidates(written):
        path = (root / rel).resolve()
        if base in path.parents and path.is_file():
            return path.relative_to(base).as_posix()
    found = (index or AudioIndex(root)).by_name(_written_name(written))
    return found[0] if len(found) == 1 else None


def missing_reason(root: Path, written: str, index: AudioIndex | None = None) -> str:
    """Why ``written`` was not found, with every place looked at (the user fixes the path or the zip)."""
    name = _written_name(written)
    looked = ", ".join(f"'{c}'" for c in _candidates(written))
    same_name = (index or AudioIndex(root)).by_name(name)
    if len(same_name) > 1:
        return (f"missing audio file '{written.strip()}' (looked at {looked}; '{name}' is ambiguous: "
                f"{', '.join(same_name)})")
    return f"missing audio file '{written.strip()}' (looked at {looked} and for '{name}' anywhere in the dataset)"


def detect_format(root: Path) -> str:
    if (root / ESD_LIST).is_file():
        return "esd_list"
    if (root / METADATA_JSONL).is_file():
        return "metadata_jsonl"
    lists = sorted(p for p in root.glob("*.list") if p.is_file())
    if lists:
        return "esd_list"
    return "recordings"


def list_file_of(root: Path, fmt: str) -> Path | None:
    if fmt == "metadata_jsonl":
        return root / METADATA_JSONL
    if fmt == "esd_list":
        if (root / ESD_LIST).is_file():
            return root / ESD_LIST
        lists = sorted(p for p in root.glob("*.list") if p.is_file())
        return lists[0] if lists else root / ESD_LIST
    return None


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    for encoding in ("utf-8-sig", "cp932"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise UnicodeDecodeError("utf-8", data, 0, 1, "neither UTF-8 nor Shift_JIS")


def read_esd_list(root: Path, list_path: Path) -> ClipList:
    clips: list[Clip] = []
    errors: list[dict[str, Any]] = []
    name = list_path.name
    index = AudioIndex(root)
    try:
        lines = _read_text(list_path).splitlines()
    except UnicodeDecodeError:
        return ClipList("esd_list", [], [{"file": name, "reason": "not UTF-8 / Shift_JIS text"}], name)
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        parts = line.split("|")  # as SBV2 and GPT-SoVITS split: exactly four fields
        if len(parts) != 4:
            hint = " (a '|' in the text?)" if len(parts) > 4 else ""
            errors.append({"file": name, "line": number,
                           "reason": f"expected 4 fields 'wav|speaker|language|text', found {len(parts)}{hint}"})
            continue
        written, speaker, language, text = parts
        if canonical_language(language) is None:
            errors.append({"file": name, "line": number, "reason": (
                f"unknown language '{language.strip()}' (SBV2: JP, EN, ZH; GPT-SoVITS: ja, en, zh, ko, yue)")})
            continue
        rel = resolve_clip_path(root, written, index)
        if rel is None:
            errors.append({"file": name, "line": number, "reason": missing_reason(root, written, index)})
            continue
        clips.append(Clip(id=rel, text=text.strip(), speaker=speaker.strip(), language=language.strip() or "JP",
                          line=number, source=written))
    return ClipList("esd_list", clips, errors, name)


def read_metadata_jsonl(root: Path, list_path: Path) -> ClipList:
    clips: list[Clip] = []
    errors: list[dict[str, Any]] = []
    name = list_path.name
    index = AudioIndex(root)
    for number, line in enumerate(_read_text(list_path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append({"file": name, "line": number, "reason": f"invalid JSON: {exc.msg}"})
            continue
        if not isinstance(row, dict):
            errors.append({"file": name, "line": number, "reason": "a line must be a JSON object"})
            continue
        written = next((str(row[k]) for k in _JSONL_FILE_KEYS if row.get(k)), None)
        if written is None:
            errors.append({"file": name, "line": number, "reason": f"no audio path ({' / '.join(_JSONL_FILE_KEYS)})"})
            continue
        rel = resolve_clip_path(root, written, index)
        if rel is None:
            errors.append({"file": name, "line": number, "reason": missing_reason(root, written, index)})
            continue
        text = next((str(row[k]) for k in _JSONL_TEXT_KEYS if row.get(k) is not None), "")
        extra = {k: v for k, v in row.items() if k not in (*_JSONL_FILE_KEYS, *_JSONL_TEXT_KEYS, "speaker", "language")}
        clips.append(Clip(id=rel, text=text.strip(), speaker=str(row.get("speaker", "")),
                          language=str(row.get("language", "JP")), line=number, source=written, extra=extra))
    return ClipList("metadata_jsonl", clips, errors, name)


def read_recordings(root: Path) -> ClipList:
    base = root.resolve()
    clips = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix.lower() in AUDIO_SUFFIXES and not any(p.startswith(".") for p in
                                                                                 path.relative_to(root).parts):
            if base not in path.resolve().parents:
                continue  # a link pointing out of the dataset
            clips.append(Clip(id=path.relative_to(root).as_posix()))
    return ClipList("recordings", clips, [], None)


def read_clip_list(root: Path, fmt: str = "auto") -> ClipList:
    fmt = detect_format(root) if fmt in ("auto", "", None) else fmt
    if fmt not in FORMATS:
        raise ValueError(f"unknown audio dataset format {fmt!r}; use one of {FORMATS}")
    if fmt == "recordings":
        return read_recordings(root)
    list_path = list_file_of(root, fmt)
    if list_path is None or not list_path.is_file():
        return ClipList(fmt, [], [{"file": (list_path or root).name, "reason": "list file not found"}])
    return read_esd_list(root, list_path) if fmt == "esd_list" else read_metadata_jsonl(root, list_path)


def written_path(clip: Clip) -> str:
    """The path as the source list wrote it (bare name, ``wavs/…``, another machine's absolute path),
    so a list keeps its conventions through edits; ``clip.id`` for a clip made here."""
    return clip.source or clip.id


def with_new_file(written: str, new_name: str) -> str:
    """``written`` pointing at ``new_name`` instead (same folder and separator as written)."""
    if not written:
        return ""
    sep = "\\" if "\\" in written and "/" not in written else "/"
    head, _, _ = written.rstrip().rpartition(sep)
    return f"{head}{sep}{new_name}" if head else new_name


def esd_line(clip: Clip) -> str:
    for field_name, value in (("speaker", clip.speaker), ("text", clip.text)):
        if "|" in value or "\n" in value:
            raise ValueError(f"{field_name} of {clip.id} contains '|' or a line break")
    return f"{written_path(clip)}|{clip.speaker}|{clip.language or 'JP'}|{clip.text}"


def render_clip_list(clips: list[Clip], fmt: str) -> str:
    """The text of the list file for ``clips`` (esd.list lines or metadata.jsonl rows)."""
    if fmt == "esd_list":
        return "".join(esd_line(c) + "\n" for c in clips)
    if fmt == "metadata_jsonl":
        return "".join(json.dumps({"file_name": written_path(c), "text": c.text, "speaker": c.speaker, "language": c.language,
                                   **c.extra}, ensure_ascii=False) + "\n" for c in clips)
    raise ValueError(f"no list file for format {fmt!r}")


def list_file_name(fmt: str, source_name: str | None = None) -> str:
    """The list file of a new version: the source's own name (``slicer_opt.list``) when it had one."""
    if source_name and fmt == "esd_list" and source_name.endswith(".list"):
        return source_name
    return METADATA_JSONL if fmt == "metadata_jsonl" else ESD_LIST
