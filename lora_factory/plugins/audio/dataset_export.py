"""Exports a voice dataset in the layout another tool opens: Style-Bert-VITS2 or GPT-SoVITS.

Why per target: each tool reads paths and language codes its own way, checked in their sources.
- **Style-Bert-VITS2** (``Data/<model>/``): its resample step reads ``raw/`` and writes ``wavs/``
  keeping the path relative to ``raw/`` with the suffix turned into ``.wav`` (``resample.py``);
  ``preprocess_text.py --correct_path`` (always on in its UI) prefixes ``<model>/wavs/`` to each
  ``esd.list`` path itself, so lines hold the path relative to ``raw/`` with a ``.wav`` suffix;
  ``clean_text`` accepts only ``JP`` / ``EN`` / ``ZH``.
- **GPT-SoVITS**: ``prepare_datasets/2-get-hubert-wav32k.py`` joins the *base name* of each list path
  to the "audio folder" field when it is set (else opens the path as written), and
  ``1-get-text.py`` accepts the language codes of its ``language_v1_to_language_v2`` table.
  We write bare file names in ``<name>.list`` beside a flat ``wavs/`` folder and its v2 codes.

The zip holds one top-level folder named after the dataset, so it unzips into SBV2's ``Data/`` or
anywhere for GPT-SoVITS.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from lora_factory.plugins.audio.dataset_formats import WAVS, Clip, canonical_language, read_clip_list

SBV2_CODES = {"ja": "JP", "en": "EN", "zh": "ZH"}
GPT_SOVITS_CODES = {"ja": "ja", "en": "en", "zh": "zh", "ko": "ko", "yue": "yue"}
TARGETS = {
    "sbv2": ("Style-Bert-VITS2 (Data/<名前>/ に展開)", "Style-Bert-VITS2 (unzip into Data/)"),
    "gpt_sovits": ("GPT-SoVITS (.list と wavs/)", "GPT-SoVITS (.list + wavs/)"),
}


class ExportError(ValueError):
    """The dataset cannot be written for this target (the reason names the clip)."""


@dataclass
class ExportReport:
    path: Path
    target: str
    clips: int
    list_file: str


def _target_language(clip: Clip, table: dict[str, str], target: str) -> str:
    code = canonical_language(clip.language or "JP")
    if code is None or code not in table:
        raise ExportError(f"{target} cannot train language '{clip.language}' (clip {clip.id}); "
                          f"it accepts {', '.join(sorted(set(table.values())))}")
    return table[code]


def _under_raw(clip_id: str) -> PurePosixPath:
    """SBV2's path under ``raw/``: what followed ``wavs/`` (subfolders are SBV2 styles), else the name."""
    parts = PurePosixPath(clip_id).parts
    return PurePosixPath(*parts[1:]) if len(parts) > 1 and parts[0] == WAVS else PurePosixPath(parts[-1])


def _unique(name: PurePosixPath, taken: set[str]) -> PurePosixPath:
    stem, n = name.stem, 1
    while name.with_suffix(".wav").as_posix().lower() in taken:  # SBV2 turns every suffix into .wav
        name = name.with_name(f"{stem}-{n}{name.suffix}")
        n += 1
    taken.add(name.with_suffix(".wav").as_posix().lower())
    return name


def export_dataset(root: Path, target: str, out_file: Path, name: str | None = None) -> ExportReport:
    """Write ``root`` as a zip for ``target`` (``sbv2`` / ``gpt_sovits``) at ``out_file``."""
    if target not in TARGETS:
        raise ExportError(f"unknown export target '{target}' (one of {', '.join(TARGETS)})")
    listing = read_clip_list(root)
    if listing.errors:
        first = listing.errors[0]
        raise ExportError(f"the dataset has problems: {first.get('file')}:{first.get('line', '')} {first['reason']}")
    clips = [c for c in listing.clips if c.text.strip()]
    if not clips:
        raise ExportError("the dataset has no transcribed clip to export")
    folder = name or root.name
    speaker_default = folder
    lines: list[str] = []
    members: list[tuple[Path, str]] = []
    taken: set[str] = set()
    if target == "sbv2":
        list_name = "esd.list"
        for clip in clips:
            rel = _unique(_under_raw(clip.id), taken)
            members.append((clip.path_in(root), f"{folder}/raw/{rel.as_posix()}"))
            lines.append(f"{rel.with_suffix('.wav').as_posix()}|{clip.speaker or speaker_default}|"
                         f"{_target_language(clip, SBV2_CODES, 'Style-Bert-VITS2')}|{clip.text}")
    else:
        list_name = f"{folder}.list"
        for clip in clips:
            rel = _unique(PurePosixPath(PurePosixPath(clip.id).name), taken)
            members.append((clip.path_in(root), f"{folder}/{WAVS}/{rel.as_posix()}"))
            lines.append(f"{rel.as_posix()}|{clip.speaker or speaker_default}|"
                         f"{_target_language(clip, GPT_SOVITS_CODES, 'GPT-SoVITS')}|{clip.text}")
    out_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_file.with_name(out_file.name + ".part")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{folder}/{list_name}", "".join(line + "\n" for line in lines))
        for source, arcname in members:
            zf.write(source, arcname)
    tmp.replace(out_file)
    return ExportReport(out_file, target, len(clips), list_name)
