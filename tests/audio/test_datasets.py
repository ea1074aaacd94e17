"""Voice datasets: esd.list / metadata.jsonl read, validated (the bad line named), exported unchanged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from lora_factory.kit import LoRAFactoryError
from lora_factory.plugins import audio as plugin
from lora_factory.plugins.audio.dataset_formats import read_clip_list, render_clip_list
from lora_factory.plugins.audio.dataset_inspect import DatasetProblems, inspect_audio_dataset
from tests.audio.synthetic import write_clip_dataset

TEXTS = ["こんにちは。", "今日はいい天気ですね。", "1,100円です。"]


def test_esd_list_round_trip_is_byte_identical(tmp_path: Path) -> None:
    root = write_clip_dataset(tmp_path / "voice", TEXTS)
    original = (root / "esd.list").read_bytes()
    listing = read_clip_list(root)
    assert listing.format == "esd_list" and [c.text for c in listing.clips] == TEXTS
    assert render_clip_list(listing.clips, "esd_list").encode("utf-8") == original


def test_sbv2_paths_from_another_machine_resolve(tmp_path: Path) -> None:
    root = write_clip_dataset(tmp_path / "voice", TEXTS[:2])
    (root / "esd.list").write_text("C:\\Data\\model\\wavs\\clip000.wav|alice|JP|こんにちは。\n"
                                   "clip001.wav|alice|JP|今日はいい天気ですね。\n", encoding="utf-8")
    assert [c.id for c in read_clip_list(root).clips] == ["wavs/clip000.wav", "wavs/clip001.wav"]


def test_missing_wav_is_refused_with_its_line(tmp_path: Path) -> None:
    root = write_clip_dataset(tmp_path / "voice", TEXTS)
    (root / "wavs" / "clip001.wav").unlink()
    with pytest.raises(LoRAFactoryError) as err:
        plugin.inspect_dataset(modality="audio", path=str(root), options={})
    assert err.value.code == "DATASET_INVALID" and err.value.http_status == 422
    errors = err.value.detail["errors"]
    assert errors == [{"file": "esd.list", "line": 2, "reason": (
        "missing audio file 'wavs/clip001.wav' (looked at 'wavs/clip001.wav', 'wavs/wavs/clip001.wav' "
        "and for 'clip001.wav' anywhere in the dataset)")}]
    assert "esd.list:2" in err.value.message_en


@pytest.mark.parametrize("prefix", ["D:\\GPT-SoVITS\\output\\slicer_opt\\", "/home/me/GPT-SoVITS/output/slicer_opt/"])
def test_gpt_sovits_layout_resolves_by_file_name(tmp_path: Path, prefix: str) -> None:
    """GPT-SoVITS's own layout: ``slicer_opt/*.wav`` + ``slicer_opt.list`` with its machine's paths."""
    root = write_clip_dataset(tmp_path / "voice", TEXTS)
    (root / "wavs").rename(root / "slicer_opt")
    (root / "esd.list").unlink()
    (root / "slicer_opt.list").write_text("".join(f"{prefix}clip{i:03d}.wav|slicer_opt|JA|{t}\n"
                                                  for i, t in enumerate(TEXTS)), encoding="utf-8")
    listing = read_clip_list(root)
    assert listing.errors == [] and listing.list_file == "slicer_opt.list"
    assert [c.id for c in listing.clips] == [f"slicer_opt/clip{i:03d}.wav" for i in range(3)]
    assert plugin.inspect_dataset(modality="audio", path=str(root), options={})["rows"] == 3
    (root / "slicer_opt" / "clip002.wav").unlink()
    (reason,) = [e["reason"] for e in read_clip_list(root).errors]
    assert reason.startswith(f"missing audio file '{prefix}clip002.wav' (looked at 'wavs/clip002.wav'")
    assert reason.endswith("and for 'clip002.wav' anywhere in the dataset)")


def test_a_name_found_twice_is_not_guessed(tmp_path: Path) -> None:
    root = write_clip_dataset(tmp_path / "voice", TEXTS[:1])
    for sub in ("a", "b"):
        (root / sub).mkdir()
        shutil.copy(root / "wavs" / "clip000.wav", root / sub / "x.wav")
    (root / "esd.list").write_text("/elsewhere/x.wav|s|JP|こんにちは。\n", encoding="utf-8")
    (error,) = read_clip_list(root).errors
    assert "'x.wav' is ambiguous: a/x.wav, b/x.wav" in error["reason"]


def test_unreadable_empty_and_out_of_range_clips_are_named(tmp_path: Path) -> None:
    root = write_clip_dataset(tmp_path / "voice", TEXTS)
    (root / "wavs" / "clip000.wav").write_bytes(b"not audio at all")
    sf.write(root / "wavs" / "long.wav", np.zeros(16000 * 40, np.float32), 16000)
    with open(root / "esd.list", "a", encoding="utf-8") as fh:
        fh.write("wavs/clip002.wav|alice|JP|\nwavs/long.wav|alice|JP|長い\n")
    with pytest.raises(DatasetProblems) as err:
        inspect_audio_dataset(root)
    reasons = {e["line"]: e["reason"] for e in err.value.errors}
    assert reasons[1].startswith("unreadable audio 'wavs/clip000.wav'")
    assert str(tmp_path) not in reasons[1]  # issue 16, item 6: never the (temporary) folder's path
    assert reasons[4] == "empty text for 'wavs/clip002.wav'"
    assert reasons[5].startswith("clip too long: 'wavs/long.wav' is 40.0 s")


def test_stats_and_preview_with_audio_media(tmp_path: Path) -> None:
    root = write_clip_dataset(tmp_path / "voice", TEXTS)
    info = plugin.inspect_dataset(modality="audio", path=str(root), options={"preview_rows": 2})
    stats = info["stats"]
    assert info["format"] == "esd_list" and info["rows"] == 3
    assert stats["sample_rates"] == {"16000": 3} and stats["total_minutes"] > 0
    assert sum(stats["length_histogram"]["counts"]) == 3
    assert -40 < stats["loudness"]["lufs_median"] < 0
    assert info["preview"][0]["media"] == [{"kind": "audio", "file": "wavs/clip000.wav"}]
    assert len(info["preview"]) == 2 and info["preview"][1]["text"] == TEXTS[1]


def test_metadata_jsonl_and_plain_recordings(tmp_path: Path) -> None:
    root = write_clip_dataset(tmp_path / "voice", TEXTS)
    (root / "esd.list").unlink()
    rows = [{"file_name": f"wavs/clip{i:03d}.wav", "text": t, "speaker": "bob"} for i, t in enumerate(TEXTS)]
    (root / "metadata.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    info = inspect_audio_dataset(root)
    assert info["format"] == "metadata_jsonl" and info["stats"]["speakers"] == {"bob": 3}
    (root / "metadata.jsonl").unlink()
    shutil.move(root / "wavs" / "clip000.wav", root / "long take.wav")
    info = inspect_audio_dataset(root)
    assert info["format"] == "recordings" and info["rows"] == 3 and info["stats"]["transcribed"] == 0


def test_lines_are_refused_as_sbv2_and_gpt_sovits_refuse_them(tmp_path: Path) -> None:
    """An extra '|' in the text and an unknown language code are errors there: here too, by line."""
    root = write_clip_dataset(tmp_path / "voice", TEXTS)
    (root / "esd.list").write_text("wavs/clip000.wav|alice|JP|こんにちは|また\n"
                                   "wavs/clip001.wav|alice|XX|今日は\n"
                                   "wavs/clip002.wav|alice|ja|1,100円です。\n", encoding="utf-8")
    listing = read_clip_list(root)
    assert listing.errors == [
        {"file": "esd.list", "line": 1, "reason": "expected 4 fields 'wav|speaker|language|text', found 5 "
                                                  "(a '|' in the text?)"},
        {"file": "esd.list", "line": 2, "reason": "unknown language 'XX' (SBV2: JP, EN, ZH; GPT-SoVITS: ja, en, "
                                                  "zh, ko, yue)"}]
    assert [c.language for c in listing.clips] == ["ja"]


def test_the_language_column_chooses_the_reading_rules(tmp_path: Path) -> None:
    from lora_factory.plugins.audio.refine import run_operations
    from lora_factory.plugins.audio.refine_operations import validate_operations

    root = write_clip_dataset(tmp_path / "voice", ["I have 3 apples.", "I have 3 apples.", "我有3个苹果。"])
    (root / "esd.list").write_text("wavs/clip000.wav|a|EN|I have 3 apples.\n"
                                   "wavs/clip001.wav|a|JP|3個です。\n"
                                   "wavs/clip002.wav|a|ZH|我有3个苹果。\n", encoding="utf-8")
    ctx = type("Ctx", (), {"log": lambda *a: None, "progress": lambda *a: None, "should_stop": lambda *a: False})()
    run_operations(root, tmp_path / "v2", validate_operations([{"op": "normalize_text", "params": {}}]), ctx)
    assert (tmp_path / "v2" / "esd.list").read_text(encoding="utf-8").splitlines() == [
        "wavs/clip000.wav|a|EN|I have three apples.", "wavs/clip001.wav|a|JP|さんこです。",
        "wavs/clip002.wav|a|ZH|我有3个苹果。"]


def _long_silence(path: Path, minutes: float, sr: int = 16000) -> Path:
    block = np.zeros(sr * 60, dtype=np.int16)
    with sf.SoundFile(str(path), "w", samplerate=sr, channels=1, format="FLAC", subtype="PCM_16") as fh:
        for _ in range(int(minutes)):
            fh.write(block)
    return path


def test_a_long_recording_is_measured_in_bounded_memory(tmp_path: Path) -> None:
    """Issue 16, item 8: a small FLAC of hours of silence decoded whole took the server past 1.5 GB.
    The inspection reads a bounded sample for loudness; a whole decode is refused past the limit."""
    import tracemalloc

    from lora_factory.plugins.audio.audio_io import AudioReadError, read_audio

    root = tmp_path / "rec"
    root.mkdir()
    _long_silence(root / "take.flac", 40)
    assert (root / "take.flac").stat().st_size < 5 * 2**20
    tracemalloc.start()
    try:
        info = inspect_audio_dataset(root)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info["rows"] == 1 and info["stats"]["clip_seconds"]["max"] >= 2399
    assert peak < 64 * 2**20, f"peak {peak / 2**20:.0f} MiB"
    with pytest.raises(AudioReadError, match="at most"):
        read_audio(root / "take.flac")


def test_absurd_rates_and_channel_counts_are_refused_before_decoding() -> None:
    from lora_factory.plugins.audio.audio_io import AudioInfo, AudioReadError, check_decodable

    with pytest.raises(AudioReadError, match="sample rate"):
        check_decodable(AudioInfo(sample_rate=10_000_000, channels=1, frames=10))
    with pytest.raises(AudioReadError, match="channels"):
        check_decodable(AudioInfo(sample_rate=16000, channels=64, frames=10))
    check_decodable(AudioInfo(sample_rate=48000, channels=2, frames=48000 * 60))
