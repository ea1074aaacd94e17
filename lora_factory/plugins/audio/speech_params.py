"""What a speech request may set (``SpeechParams``), its Japanese labels and its presets.

Apart from ``synthesis.py`` (which runs the codec LM, with numpy) because the server describes the form and
validates every ``/v1/audio/speech`` request before a worker starts: this module imports pydantic only.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class SpeechParams(BaseModel):
    """What the synthesis form and ``/v1/audio/speech`` can set."""

    model_config = ConfigDict(extra="ignore")

    speed: float = Field(1.0, ge=0.25, le=4.0)
    pitch: float = Field(0.0, ge=-12.0, le=12.0, description="semitones")
    volume_db: float = Field(0.0, ge=-30.0, le=12.0, description="gain on top of the loudness target")
    pause_ms: int = Field(250, ge=0, le=5000, description="silence between sentences")
    temperature: float = Field(0.8, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    max_seconds_per_sentence: float = Field(20.0, gt=0.1, le=120.0)
    speaker: str | None = Field(None, max_length=64)
    latin: Literal["keep", "spell", "kana"] = "keep"
    target_lufs: float | None = Field(-16.0, ge=-40.0, le=-5.0, description="None: no loudness normalisation")
    true_peak_db: float = Field(-1.0, ge=-12.0, le=0.0)
    fade_ms: float = Field(10.0, ge=0.0, le=500.0)
    sample_rate: int | None = Field(None, ge=8000, le=48000, description="output rate; the codec's when empty")
    format: Literal["wav", "flac", "mp3", "opus"] = "wav"
    max_sentence_chars: int = Field(80, ge=10, le=500)
    batch_sentences: int = Field(1, ge=1, le=16, description=(
        "sentences generated together after the first one (more throughput on a CPU; the first sentence "
        "still goes alone, so the first audio comes as soon)"))
    int8: bool = Field(False, description="int8 dynamic quantisation of the LM's linear layers (CPU only)")
    accent_marks: bool = Field(True, description=(
        "the accents set in the user dictionary go into the text as pitch marks (ト[ーキョー); off: plain reading"))


# the synthesis form's labels in Japanese (the schema's own titles are English)
SPEECH_TITLES_JA: dict[str, str] = {
    "speed": "話す速さ", "pitch": "声の高さ (半音)", "volume_db": "音量 (dB)", "pause_ms": "文の間の無音 (ミリ秒)",
    "temperature": "温度 (temperature)", "top_p": "top-p", "seed": "乱数シード",
    "max_seconds_per_sentence": "1 文の最大秒数", "speaker": "話者", "latin": "英字の読み方",
    "target_lufs": "目標ラウドネス (LUFS)", "true_peak_db": "トゥルーピーク上限 (dB)", "fade_ms": "フェード (ミリ秒)",
    "sample_rate": "サンプリングレート", "format": "ファイル形式", "max_sentence_chars": "1 文の最大文字数",
}
SPEECH_DESCRIPTIONS_JA: dict[str, str] = {
    "pitch": "半音単位", "volume_db": "ラウドネス目標の上に掛ける増減", "pause_ms": "文と文の間に入れる無音",
    "target_lufs": "空欄: ラウドネスをそろえない", "sample_rate": "出力のサンプリングレート。空欄ならコーデックのまま",
}


SPEECH_PRESETS: dict[str, dict[str, Any]] = {
    "natural": {},
    "slow_clear": {"speed": 0.85, "pause_ms": 450},
    "fast": {"speed": 1.25, "pause_ms": 150},
    "deterministic": {"temperature": 0.0, "seed": 0},
}
