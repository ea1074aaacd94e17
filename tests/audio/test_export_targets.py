"""Exports that Style-Bert-VITS2 and GPT-SoVITS open, checked by their own parsing lines.

The few lines marked "copied from" are the targets' own code (Style-Bert-VITS2 at commit
66de777e, GPT-SoVITS at 48b1a016), so a layout they would not read fails here.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

import pytest
import soundfile as sf

from lora_factory.kit import LoRAFactoryError
from lora_factory.plugins import audio as plugin
from lora_factory.plugins.audio.dataset_export import export_dataset
from tests.audio.synthetic import write_clip_dataset

TEXTS = ["こんにちは。", "今日はいい天気ですね。", "Hello there.", "ありがとう。"]


def _mixed_dataset(root: Path) -> Path:
    """Bare names, a ``wavs/`` path, an absolute path, GPT-SoVITS codes (JA, ja, en) and a FLAC clip."""
    write_clip_dataset(root, TEXTS)
    wave, sr = sf.read(root / "wavs" / "clip003.wav")
    (root / "wavs" / "clip003.wav").unlink()
    sf.write(root / "wavs" / "clip003.flac", wave, sr)
    (root / "esd.list").write_text(
        "clip000.wav|alice|JA|こんにちは。\n"
        "wavs/clip001.wav|alice|ja|今日はいい天気ですね。\n"
        "D:\\GPT-SoVITS\\output\\slicer_opt\\clip002.wav|alice|en|Hello there.\n"
        "wavs/clip003.flac||JP|ありがとう。\n", encoding="utf-8")
    return root


def _unzip(zip_path: Path, into: Path) -> Path:
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(into)
    (folder,) = [p for p in into.iterdir() if p.is_dir()]
    return folder


# ---- Style-Bert-VITS2 -------------------------------------------------------------------------------
SBV2_LANGUAGES = {"JP", "EN", "ZH"}  # style_bert_vits2/constants.py: class Languages(StrEnum)


def sbv2_resample(input_dir: Path, output_dir: Path) -> None:
    """The path rule of Style-Bert-VITS2's resample.py (the audio itself is copied, not resampled)."""
    for file in [f for f in input_dir.rglob("*") if f.is_file()]:  # resample.py, __main__
        # copied from Style-Bert-VITS2 resample.py, resample():
        relative_path = file.relative_to(input_dir)
        output_path = output_dir / relative_path.with_suffix(".wav")
        output_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(file, output_path)


def sbv2_process_line(line: str, transcription_path: Path, correct_path: bool) -> tuple[str, str, str, str]:
    # copied from Style-Bert-VITS2 preprocess_text.py, process_line() (clean_text replaced by the
    # language check it performs: style_bert_vits2/nlp/__init__.py raises for other languages)
    splitted_line = line.strip().split("|")
    if len(splitted_line) != 4:
        raise ValueError(f"Invalid line format: {line.strip()}")
    utt, spk, language, text = splitted_line
    if language not in SBV2_LANGUAGES:
        raise ValueError(f"Language {language} not supported")
    if correct_path:
        utt = str(transcription_path.parent / "wavs" / utt)
    return utt, spk, language, text


def test_sbv2_export_passes_its_resample_and_preprocess_text(tmp_path: Path) -> None:
    root = _mixed_dataset(tmp_path / "voice")
    report = export_dataset(root, "sbv2", tmp_path / "out" / "voice-sbv2.zip")
    data = _unzip(report.path, tmp_path / "Data")  # the user unzips into SBV2's Data/
    assert data.name == "voice" and (data / "esd.list").is_file() and (data / "raw").is_dir()
    assert not (data / "wavs").exists()  # SBV2's resample step makes wavs/ from raw/
    sbv2_resample(data / "raw", data / "wavs")
    esd_path = data / "esd.list"
    parsed = [sbv2_process_line(line, esd_path, correct_path=True)  # the UI always passes --correct_path
              for line in esd_path.read_text(encoding="utf-8").splitlines()]
    assert len(parsed) == len(TEXTS)
    for utt, spk, _language, _text in parsed:
        assert Path(utt).is_file(), f"Audio not found: {utt}"  # preprocess(): the check after cleaning
        assert spk  # an empty speaker became the dataset's name
    assert [p[2] for p in parsed] == ["JP", "JP", "EN", "JP"] and [p[3] for p in parsed] == TEXTS
    assert parsed[3][0].endswith("clip003.wav") and (data / "raw" / "clip003.flac").is_file()


def test_sbv2_refuses_a_language_it_cannot_train(tmp_path: Path) -> None:
    root = write_clip_dataset(tmp_path / "voice", TEXTS[:1])
    (root / "esd.list").write_text("wavs/clip000.wav|a|KO|안녕\n", encoding="utf-8")
    with pytest.raises(LoRAFactoryError) as err:
        plugin.export_dataset(modality="audio", path=str(root), target="sbv2", out_file=str(tmp_path / "x.zip"))
    assert err.value.code == "EXPORT_IMPOSSIBLE" and "KO" in err.value.message_en
    assert not (tmp_path / "x.zip").exists()


# ---- GPT-SoVITS -------------------------------------------------------------------------------------
# copied from GPT-SoVITS GPT_SoVITS/prepare_datasets/1-get-text.py
language_v1_to_language_v2 = {
    "ZH": "zh", "zh": "zh", "JP": "ja", "jp": "ja", "JA": "ja", "ja": "ja", "EN": "en", "en": "en", "En": "en",
    "KO": "ko", "Ko": "ko", "ko": "ko", "yue": "yue", "YUE": "yue", "Yue": "yue",
}


def gsv_clean_path(path_str: str) -> str:
    # copied from GPT-SoVITS tools/my_utils.py, clean_path()
    if path_str.endswith(("\\", "/")):
        return gsv_clean_path(path_str[0:-1])
    path_str = path_str.replace("/", os.sep).replace("\\", os.sep)
    return path_str.strip(" '\n\"\u202a")


def gsv_read_list(inp_text: Path, inp_wav_dir: str) -> list[tuple[str, str, str]]:
    """(wav_path, language v2, text) per line, as GPT-SoVITS's dataset preparation reads them."""
    with open(inp_text, encoding="utf8") as f:  # 1-get-text.py / 2-get-hubert-wav32k.py
        lines = f.read().strip("\n").split("\n")
    out = []
    for line in lines:
        wav_name, spk_name, language, text = line.split("|")  # 1-get-text.py (a 5th field raises)
        assert language in language_v1_to_language_v2, f"The {language = } is not supported for training."
        # copied from 2-get-hubert-wav32k.py:
        wav_name = gsv_clean_path(wav_name)
        if inp_wav_dir != "" and inp_wav_dir is not None:
            wav_name = os.path.basename(wav_name)
            wav_path = "%s/%s" % (inp_wav_dir, wav_name)  # noqa: UP031 (as written there)
        else:
            wav_path = wav_name
        out.append((wav_path, language_v1_to_language_v2[language], text))
    return out


def test_gpt_sovits_export_passes_its_dataset_preparation(tmp_path: Path) -> None:
    root = _mixed_dataset(tmp_path / "voice")
    report = export_dataset(root, "gpt_sovits", tmp_path / "out" / "voice-gpt_sovits.zip")
    folder = _unzip(report.path, tmp_path / "unzipped")
    # the WebUI's fields: the list file, and the training audio folder (inp_wav_dir)
    rows = gsv_read_list(folder / "voice.list", str(folder / "wavs"))
    assert [Path(p).is_file() for p, _, _ in rows] == [True] * len(TEXTS)
    assert [lang for _, lang, _ in rows] == ["ja", "ja", "en", "ja"] and [t for _, _, t in rows] == TEXTS


def test_hook_export_dataset_through_the_archive_and_unknown_target(tmp_path: Path) -> None:
    """The host's dataset archive with ``target=`` calls the owner's ``export_dataset``; an undeclared target is
    refused with the declared ones named."""
    from lora_factory.core.services import Services

    home = tmp_path / "home"
    svc = Services(home)
    try:
        src = _mixed_dataset(tmp_path / "voice")
        shutil.copytree(src, home / "datasets" / "audio" / "voice")
        zipped = svc.datasets.archive("audio", "voice", tmp_path / "exports", target="gpt_sovits")
        assert zipfile.ZipFile(zipped).read("voice/voice.list").decode().startswith("clip000.wav|alice|ja|")
        with pytest.raises(LoRAFactoryError) as err:
            svc.datasets.archive("audio", "voice", tmp_path / "exports", target="vits")
        assert err.value.code == "EXPORT_TARGET_UNKNOWN" and err.value.detail["targets"] == ["sbv2", "gpt_sovits"]
    finally:
        svc.close()

