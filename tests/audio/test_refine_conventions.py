"""A refine keeps the source list's own conventions for the lines it does not edit: bare names stay
bare, another machine's absolute paths stay, ``slicer_opt.list`` keeps its name (SBV2 and GPT-SoVITS
users keep working in their tool on the new version)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from lora_factory.plugins.audio.dataset_formats import read_clip_list
from lora_factory.plugins.audio.refine import run_operations
from lora_factory.plugins.audio.refine_operations import validate_operations
from tests.audio.synthetic import write_clip_dataset

TEXTS = ["こんにちは。", "今日はいい天気ですね。", "ありがとう。"]
CTX = SimpleNamespace(log=lambda *a, **k: None, progress=lambda *a, **k: None, should_stop=lambda: False)


def _refine(src: Path, out: Path, ops: list[dict]) -> dict:
    return run_operations(src, out, validate_operations(ops), CTX)


def test_an_edit_keeps_bare_names_and_the_other_lines_verbatim(tmp_path: Path) -> None:
    src = write_clip_dataset(tmp_path / "sbv2", TEXTS)
    lines = [f"clip{i:03d}.wav|alice|JP|{t}" for i, t in enumerate(TEXTS)]
    (src / "esd.list").write_text("\n".join(lines) + "\n", encoding="utf-8")
    _refine(src, tmp_path / "v2", [{"op": "edit_items", "params": {"edits": [{"id": "wavs/clip001.wav",
                                                                               "text": "今日は晴れ。"}]}}])
    assert (tmp_path / "v2" / "esd.list").read_text(encoding="utf-8").splitlines() == [
        lines[0], "clip001.wav|alice|JP|今日は晴れ。", lines[2]]
    assert read_clip_list(tmp_path / "v2").errors == []


def test_gpt_sovits_paths_and_list_name_survive_edits_and_new_audio(tmp_path: Path) -> None:
    src = write_clip_dataset(tmp_path / "gsv", TEXTS)
    (src / "wavs").rename(src / "slicer_opt")
    (src / "esd.list").unlink()
    prefix = "D:\\GPT-SoVITS\\output\\slicer_opt\\"
    lines = [f"{prefix}clip{i:03d}.wav|slicer_opt|JA|{t}" for i, t in enumerate(TEXTS)]
    (src / "slicer_opt.list").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "v2"
    _refine(src, out, [{"op": "edit_items", "params": {"edits": [{"id": "slicer_opt/clip000.wav", "text": "やあ。"}]}},
                       {"op": "resample", "params": {"sample_rate": 22050}}])
    assert sorted(p.name for p in out.iterdir()) == ["slicer_opt", "slicer_opt.list"]
    assert (out / "slicer_opt.list").read_text(encoding="utf-8").splitlines() == [
        f"{prefix}clip000.wav|slicer_opt|JA|やあ。", lines[1], lines[2]]
    listing = read_clip_list(out)
    assert listing.errors == [] and [c.id for c in listing.clips] == [f"slicer_opt/clip{i:03d}.wav" for i in range(3)]


def test_new_audio_never_takes_the_name_of_an_untouched_clip(tmp_path: Path) -> None:
    """A resampled ``x.flac`` becomes ``x-1.wav`` when an untouched ``x.wav`` is in the dataset too."""
    import soundfile as sf

    src = write_clip_dataset(tmp_path / "voice", TEXTS[:2])
    wave, sr = sf.read(src / "wavs" / "clip001.wav")
    sf.write(src / "wavs" / "clip000.flac", wave, 22050)
    (src / "esd.list").write_text("clip000.wav|a|JP|一。\nclip000.flac|a|JP|二。\n", encoding="utf-8")
    out = tmp_path / "v2"
    _refine(src, out, [{"op": "resample", "params": {"sample_rate": 16000}}])
    assert (out / "esd.list").read_text(encoding="utf-8").splitlines() == ["clip000.wav|a|JP|一。",
                                                                           "clip000-1.wav|a|JP|二。"]
    assert sf.info(out / "wavs" / "clip000.wav").frames == sf.info(src / "wavs" / "clip000.wav").frames


def test_slice_reports_every_utterance_it_drops(tmp_path: Path) -> None:
    import numpy as np
    import soundfile as sf

    from tests.audio.synthetic import pause, voiced

    rng = np.random.default_rng(2)
    src = tmp_path / "rec"
    src.mkdir()
    sf.write(src / "take.wav", np.concatenate([pause(0.5, 16000, rng), voiced(3.0, 16000, rng), pause(0.8, 16000, rng),
                                               voiced(1.0, 16000, rng), pause(0.6, 16000, rng)]), 16000)
    report = _refine(src, tmp_path / "clips", [{"op": "slice", "params": {"method": "energy", "min_seconds": 2.0}}])
    assert report["removed"] == {"utterance shorter than 2 s (slice)": 1} and report["rows_out"] == 1


def test_builder_keeps_folders_speaker_slice_times_and_slices_without_text(tmp_path: Path, monkeypatch) -> None:
    """A recordings zip's wavs/<folder>/ stays, the speaker is the dataset's name, slice times are
    kept beside the list, and a Whisper that writes nothing keeps the slices and says why."""
    import json

    import numpy as np
    import soundfile as sf

    from lora_factory.plugins.audio import asr
    from tests.audio.synthetic import recording_with_pauses

    src = tmp_path / "takes"
    (src / "wavs" / "calm").mkdir(parents=True)
    sf.write(src / "wavs" / "calm" / "a.wav", recording_with_pauses(16000)[0], 16000)

    class Silent:
        def transcribe(self, *a, **k):
            return asr.Transcript(text="", segments=[], duration=0.0, language="ja")

    monkeypatch.setattr(asr.WhisperModel, "load", classmethod(lambda cls, *a, **k: Silent()))
    report = _refine(src, tmp_path / "clips", [{"op": "slice", "params": {"method": "energy"}},
                                               {"op": "transcribe", "params": {"model": "/x/tiny-whisper"}}])
    assert report["format"] == "recordings" and report["rows_out"] == 4
    assert "wrote no text for any of the 4 clip(s)" in report["notes"][0]
    clips = sorted(p.relative_to(tmp_path / "clips").as_posix() for p in (tmp_path / "clips").rglob("*.wav"))
    assert clips == [f"wavs/calm/a_{k:04d}.wav" for k in range(4)]
    rows = [json.loads(x) for x in (tmp_path / "clips" / "slices.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["source"] for r in rows] == ["wavs/calm/a.wav"] * 4 and rows[0]["start"] < rows[0]["end"] < rows[1]["start"]

    # a transcribed version: the speaker is the dataset's name; the slice times travel on
    class Talker(Silent):
        def transcribe(self, *a, **k):
            return asr.Transcript(text="こんにちは", segments=[], duration=0.0, language="ja")

    monkeypatch.setattr(asr.WhisperModel, "load", classmethod(lambda cls, *a, **k: Talker()))
    _refine(src, tmp_path / "v2", [{"op": "slice", "params": {"method": "energy"}},
                                   {"op": "transcribe", "params": {"model": "/x/tiny-whisper"}}])
    assert (tmp_path / "v2" / "esd.list").read_text(encoding="utf-8").splitlines()[0] == \
        "wavs/calm/a_0000.wav|takes|JP|こんにちは"
    _refine(tmp_path / "v2", tmp_path / "v3", [{"op": "edit_items", "params": {"edits": [
        {"id": "wavs/calm/a_0000.wav", "text": "やあ"}]}}])
    assert (tmp_path / "v3" / "slices.jsonl").read_text(encoding="utf-8") == \
        (tmp_path / "v2" / "slices.jsonl").read_text(encoding="utf-8")
    assert np.isclose(rows[0]["start"], json.loads((tmp_path / "v3" / "slices.jsonl").read_text().splitlines()[0])["start"])
