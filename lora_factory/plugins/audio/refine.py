"""The dataset builder: refine operations on voice datasets, each run producing a new version.

Long recordings -> ``slice`` (cut at pauses) -> ``transcribe`` (Whisper) -> review / ``edit_items``
-> ``normalize_text`` / ``loudness`` / ``trim_silence`` / ``resample`` / ``filter`` / ``dedup``.
Operations run in order on a working list of clips; audio an operation changes is written into the
new version's ``wavs/``, audio it leaves alone is copied at the end, so the new folder stands alone.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import unicodedata
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from lora_factory.plugins.audio import dsp
from lora_factory.plugins.audio.audio_io import read_audio, resample, write_audio
from lora_factory.plugins.audio.dataset_formats import (
    WAVS,
    Clip,
    canonical_language,
    list_file_name,
    read_clip_list,
    render_clip_list,
    with_new_file,
)
from lora_factory.plugins.audio.loudness import integrated_loudness, normalize_loudness
from lora_factory.plugins.audio.refine_operations import (
    OPERATIONS,
    DedupOp,
    EditItemsOp,
    FilterOp,
    NormalizeTextOp,
    SliceOp,
    TranscribeOp,
)
from lora_factory.plugins.audio.text_norm import NormalizationOptions, UserDictionary, normalize_text
from lora_factory.plugins.audio.vad import Segment, SliceParams, SliceResult, slice_recording

SLICES_FILE = "slices.jsonl"  # {id, source, start, end} per clip cut by ``slice``

RECORDING_DECODE_SECONDS = 4 * 3600.0  # a refine job (its own process) slices recordings of up to 4 h


@dataclass
class WorkClip:
    clip: Clip
    audio: Path  # where its audio is now (the source dataset, or the new version's wavs/)
    changed: bool = False
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass
class RefineState:
    source: Path
    out: Path
    clips: list[WorkClip]
    removed: Counter = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    device: str = "cpu"

    reserved: set[str] = field(default_factory=set)  # the source's clip paths, copied at the end

    def new_audio_path(self, stem: str, suffix: str = ".wav", folder: str = WAVS,
                       own: str | None = None, replace_own: bool = False) -> tuple[str, Path]:
        """A free path in ``folder`` of the new version; ``own`` (the clip's own old path) may be reused,
        and overwritten when ``replace_own`` (this run wrote it: a slice resampled stays one file)."""
        prefix = f"{folder}/" if folder else ""
        rel = f"{prefix}{stem}{suffix}"
        n = 1
        while ((self.out / rel).exists() and not (replace_own and rel == own)) or (rel in self.reserved and rel != own):
            rel = f"{prefix}{stem}-{n}{suffix}"
            n += 1
        return rel, self.out / rel


def _rewrite(state: RefineState, item: WorkClip, wave: np.ndarray, sr: int) -> WorkClip:
    """New audio for a clip, beside where it was, and the list path written the source's way."""
    old = PurePosixPath(item.clip.id)
    folder = "" if str(old.parent) == "." else old.parent.as_posix()
    rel, path = state.new_audio_path(old.stem, ".wav", folder=folder, own=item.clip.id,
                                     replace_own=item.changed and item.audio == state.out / item.clip.id)
    write_audio(path, wave, sr)
    source = with_new_file(item.clip.source, PurePosixPath(rel).name)
    return WorkClip(replace(item.clip, id=rel, source=source), path, changed=True, facts=item.facts)


def op_slice(state: RefineState, p: SliceOp, ctx: Any) -> None:
    params = SliceParams(min_seconds=p.min_seconds, max_seconds=p.max_seconds, min_silence_ms=p.min_silence_ms,
                         pad_ms=p.pad_ms, method=p.method, aggressiveness=p.aggressiveness)
    out: list[WorkClip] = []
    unknown = sorted(set(p.cuts) - {item.clip.id for item in state.clips})
    if unknown:
        raise EditError(f"no recording '{unknown[0]}' in the dataset (slice cuts)")
    for item in state.clips:
        wave, sr = read_audio(item.audio, max_seconds=RECORDING_DECODE_SECONDS)
        if item.clip.id in p.cuts:  # the cut list of the slice review, as the user left it
            result = SliceResult(_chosen_segments(p.cuts[item.clip.id], wave.size, sr, item.clip.id), [])
        else:
            result = slice_recording(wave, sr, params)
        segments = result.segments
        if result.dropped:
            state.removed[f"utterance shorter than {p.min_seconds:g} s (slice)"] += len(result.dropped)
            ctx.log(f"slice: {item.clip.id}: {len(result.dropped)} utterance(s) under {p.min_seconds:g} s dropped at "
                    + ", ".join(f"{d.start / sr:.2f}-{d.end / sr:.2f} s" for d in result.dropped))
        if not segments and not result.dropped:
            state.removed["no speech found"] += 1
        recording = PurePosixPath(item.clip.id)
        # the recording's own sub-folder is kept (wavs/style1/a.wav -> wavs/style1/a_0000.wav)
        inner = [p for p in recording.parent.parts if p != "."]
        folder = "/".join([WAVS, *(inner[1:] if inner[:1] == [WAVS] else inner)])
        for k, seg in enumerate(segments):
            rel, path = state.new_audio_path(f"{recording.stem}_{k:04d}", folder=folder)
            write_audio(path, wave[seg.start:seg.end], sr)
            clip = Clip(id=rel, text="", speaker=item.clip.speaker or state.source.name, language=item.clip.language,
                        extra={"source": item.clip.id, "start": round(seg.start / sr, 3), "end": round(seg.end / sr, 3)})
            out.append(WorkClip(clip, path, changed=True))
        ctx.log(f"slice: {item.clip.id} -> {len(segments)} clips")
    state.clips = out


def _chosen_segments(cuts: list[tuple[float, float]], length: int, sr: int, recording: str) -> list[Segment]:
    segments = [Segment(int(round(a * sr)), min(length, int(round(b * sr)))) for a, b in cuts]
    for seg in segments:
        if seg.end <= seg.start:
            raise EditError(f"{recording}: a cut starts at {seg.start / sr:g} s, past the end of the recording "
                            f"({length / sr:g} s)")
    return segments


def op_transcribe(state: RefineState, p: TranscribeOp, ctx: Any) -> None:
    from lora_factory.plugins.audio.asr import WhisperModel

    todo = {c.clip.id for c in state.clips if p.overwrite or not c.clip.text.strip()}
    if not todo:
        return
    whisper = WhisperModel.load(Path(p.model), Path(p.adapter) if p.adapter else None, device=state.device)
    kept = []
    empty = 0
    for i, item in enumerate(state.clips):
        if item.clip.id in todo:
            if ctx.should_stop():
                raise InterruptedError("stopped")
            wave, sr = read_audio(item.audio, max_seconds=RECORDING_DECODE_SECONDS)
            text = whisper.transcribe(wave, sr, language=p.language, prompt=p.prompt or None, timestamps=False,
                                      max_new_tokens=p.max_new_tokens).text
            text = text.replace("|", " ").replace("\n", " ").strip()
            if not text:
                empty += 1  # kept without text: the slices are not lost, the report says why
                kept.append(item)
                continue
            item = WorkClip(replace(item.clip, text=text), item.audio, item.changed, item.facts)
            ctx.progress(i + 1, len(state.clips))
        kept.append(item)
    state.clips = kept
    if empty:
        state.notes.append(
            f"Whisper ({Path(p.model).name}) wrote no text for {empty} of {len(todo)} clip(s); they are kept "
            "without a transcript (edit them, or transcribe again with another model or language)"
            if empty < len(todo) else
            f"Whisper ({Path(p.model).name}) wrote no text for any of the {len(todo)} clip(s) (a tiny or wrong-language "
            "model does that): the slices are kept as a recordings dataset; transcribe them with another model")
        ctx.log(state.notes[-1])


def op_normalize_text(state: RefineState, p: NormalizeTextOp, ctx: Any) -> None:
    dictionary = UserDictionary.from_list(p.user_dictionary if p.use_user_dictionary else [])
    options = NormalizationOptions(latin=p.latin, user_dictionary=dictionary, accent_marks=p.accent_marks)
    for item in state.clips:
        item.clip = replace(item.clip, text=normalize_text(
            item.clip.text, replace(options, language=canonical_language(item.clip.language))))


def op_audio_map(state: RefineState, fn: Any) -> None:
    out = []
    for item in state.clips:
        wave, sr = read_audio(item.audio, max_seconds=RECORDING_DECODE_SECONDS)
        result = fn(wave, sr)
        if result is None:
            out.append(item)
            continue
        new_wave, new_sr = result
        if new_wave.size == 0:
            state.removed["silent after trimming"] += 1
            continue
        out.append(_rewrite(state, item, new_wave, new_sr))
    state.clips = out


def op_filter(state: RefineState, p: FilterOp, ctx: Any) -> None:
    kept = []
    for item in state.clips:
        wave, sr = read_audio(item.audio, max_seconds=RECORDING_DECODE_SECONDS)
        seconds = wave.size / sr
        if seconds < p.min_seconds:
            state.removed["too short"] += 1
        elif seconds > p.max_seconds:
            state.removed["too long"] += 1
        elif dsp.clipping_ratio(wave) > p.max_clipping:
            state.removed["clipping"] += 1
        elif integrated_loudness(wave, sr) < p.min_lufs:
            state.removed["too quiet"] += 1
        else:
            kept.append(item)
    state.clips = kept


def _audio_hash(path: Path) -> str:
    wave, _ = read_audio(path, 16000, max_seconds=RECORDING_DECODE_SECONDS)
    return hashlib.sha256(np.round(wave * 2048).astype(np.int16).tobytes()).hexdigest()


def op_dedup(state: RefineState, p: DedupOp, ctx: Any) -> None:
    seen_text: set[str] = set()
    seen_audio: set[str] = set()
    kept = []
    for item in state.clips:
        key_text = "".join(unicodedata.normalize("NFKC", item.clip.text).split())
        if p.by in ("text", "both") and key_text and key_text in seen_text:
            state.removed["duplicate transcript"] += 1
            continue
        if p.by in ("audio", "both"):
            key_audio = _audio_hash(item.audio)
            if key_audio in seen_audio:
                state.removed["duplicate audio"] += 1
                continue
            seen_audio.add(key_audio)
        seen_text.add(key_text)
        kept.append(item)
    state.clips = kept


class EditError(ValueError):
    """An edit names a clip that is not in the dataset, or sets an invalid text."""


def op_edit_items(state: RefineState, p: EditItemsOp, ctx: Any) -> None:
    by_id = {item.clip.id: item for item in state.clips}
    for edit in p.edits:
        clip_id = str(edit.get("id", ""))
        if clip_id not in by_id:
            raise EditError(f"no clip '{clip_id}' in the dataset")
        if edit.get("delete"):
            state.removed["deleted by edit"] += 1
            del by_id[clip_id]
            continue
        text = str(edit.get("text", "")).strip()
        if not text or "|" in text or "\n" in text:
            raise EditError(f"text for '{clip_id}' must be one non-empty line without '|'")
        item = by_id[clip_id]
        item.clip = replace(item.clip, text=text)
    state.clips = [item for item in state.clips if item.clip.id in by_id]


def _restore_slice_times(source: Path, clips: list[Clip]) -> None:
    """The source version's slice times travel with its clips into the next version."""
    path = source / SLICES_FILE
    if not path.is_file():
        return
    rows = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and "id" in row:
            rows[row["id"]] = row
    for clip in clips:
        row = rows.get(clip.id)
        if row:
            clip.extra.update({k: row[k] for k in ("source", "start", "end") if k in row})


def run_operations(source: Path, out: Path, operations: list[dict[str, Any]], ctx: Any,
                   device: str = "cpu") -> dict[str, Any]:
    """Apply ``operations`` to the dataset at ``source``; write the new version into ``out``."""
    listing = read_clip_list(source)
    if listing.errors:
        raise EditError(f"the source dataset has problems: {listing.errors[0]}")
    out.mkdir(parents=True, exist_ok=True)
    _restore_slice_times(source, listing.clips)
    state = RefineState(source, out, [WorkClip(c, c.path_in(source)) for c in listing.clips], device=device,
                        reserved={c.id for c in listing.clips})
    rows_in = len(state.clips)
    steps = []
    for op in operations:
        name, params = op["op"], OPERATIONS[op["op"]].params.model_validate(op["params"])
        before = len(state.clips)
        if name == "slice":
            op_slice(state, params, ctx)
        elif name == "transcribe":
            op_transcribe(state, params, ctx)
        elif name == "normalize_text":
            op_normalize_text(state, params, ctx)
        elif name == "loudness":
            op_audio_map(state, lambda w, sr, q=params: (normalize_loudness(w, sr, q.target_lufs, q.true_peak_db), sr))
        elif name == "trim_silence":
            op_audio_map(state, lambda w, sr, q=params: (dsp.trim_silence(w, sr, q.threshold_db, q.keep_ms), sr))
        elif name == "resample":
            op_audio_map(state, lambda w, sr, q=params: None if sr == q.sample_rate else
                         (resample(w, sr, q.sample_rate), q.sample_rate))
        elif name == "filter":
            op_filter(state, params, ctx)
        elif name == "dedup":
            op_dedup(state, params, ctx)
        elif name == "edit_items":
            op_edit_items(state, params, ctx)
        steps.append({"op": name, "rows_in": before, "rows_out": len(state.clips)})
        ctx.log(f"{name}: {before} -> {len(state.clips)} clips")
    # audio left untouched is copied under the same relative path (the new version stands alone)
    for item in state.clips:
        target = out / item.clip.id
        if not item.changed and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(item.audio, target)
    clips = [item.clip for item in state.clips]
    has_text = any(c.text.strip() for c in clips)
    fmt = listing.format if listing.format != "recordings" else "esd_list"
    if has_text:
        (out / list_file_name(fmt, listing.list_file)).write_text(render_clip_list([c for c in clips if c.text.strip()], fmt),
                                                encoding="utf-8")
        untranscribed = sum(1 for c in clips if not c.text.strip())
        if untranscribed:
            state.removed["no transcript"] += untranscribed
        out_format = fmt
    else:
        out_format = "recordings"
    sliced = [{"id": c.id, **{k: c.extra[k] for k in ("source", "start", "end")}} for c in clips
              if {"source", "start", "end"} <= set(c.extra)]
    if sliced:  # where each clip came from in its recording (the slice review reads it)
        (out / SLICES_FILE).write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in sliced),
                                       encoding="utf-8")
    return {"rows_in": rows_in, "rows_out": sum(1 for c in clips if c.text.strip()) if has_text else len(clips),
            "removed": dict(state.removed), "notes": state.notes, "steps": steps, "format": out_format,
            "examples": [{"id": c.id, "text": c.text} for c in clips[:5]]}
