"""The voice dataset builder's operations: their parameters, names and checks, without running them.

Apart from ``refine.py`` (which runs them on audio, with numpy, soundfile and the VAD) because the server
describes and validates operations at start-up and at every submit: this module imports pydantic only.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from lora_factory.kit.refine import Operation, OperationRegistry, RefineParams

_Params = RefineParams


class SliceOp(_Params):
    min_seconds: float = Field(2.0, ge=0.2, le=60)
    max_seconds: float = Field(12.0, ge=1.0, le=120)
    min_silence_ms: int = Field(300, ge=50, le=5000)
    pad_ms: int = Field(100, ge=0, le=2000)
    method: Literal["webrtc", "energy"] = "webrtc"
    aggressiveness: int = Field(2, ge=0, le=3)
    cuts: dict[str, list[tuple[float, float]]] = Field(
        default_factory=dict, description="recording id -> [start, end] seconds chosen in the slice review; "
                                          "these recordings are cut there instead of at detected pauses")

    @field_validator("cuts")
    @classmethod
    def _ordered_cuts(cls, value: dict[str, list[tuple[float, float]]]) -> dict[str, list[tuple[float, float]]]:
        from lora_factory.plugins.audio.slice_review import check_cuts

        return {k: [(a, b) for a, b in v] for k, v in check_cuts({k: [list(c) for c in v] for k, v in value.items()}).items()}


class TranscribeOp(_Params):
    model: str = Field(..., description="a Whisper model under models/audio/")
    adapter: str | None = None
    language: str = "ja"
    prompt: str = Field("", max_length=200, description="style hint, e.g. 「はい。こんにちは、元気です。」")
    overwrite: bool = False
    max_new_tokens: int | None = Field(None, ge=4, le=440, description="longest transcript per clip, in tokens "
                                                                        "(default: from the clip's length)")


class NormalizeTextOp(_Params):
    latin: Literal["keep", "spell", "kana"] = "keep"
    use_user_dictionary: bool = True
    accent_marks: bool = Field(True, description="the dictionary's accents as pitch marks, as synthesis writes them")
    user_dictionary: list[dict[str, Any]] = Field(default_factory=list)  # filled by the server


class LoudnessOp(_Params):
    target_lufs: float = Field(-20.0, ge=-40, le=-5)
    true_peak_db: float = Field(-1.0, ge=-12, le=0)


class TrimSilenceOp(_Params):
    threshold_db: float = Field(-45.0, ge=-90, le=-10)
    keep_ms: int = Field(80, ge=0, le=2000)


class ResampleOp(_Params):
    sample_rate: int = Field(22050, ge=8000, le=96000)


class FilterOp(_Params):
    min_seconds: float = Field(1.0, ge=0, le=600)
    max_seconds: float = Field(15.0, gt=0, le=3600)
    max_clipping: float = Field(0.001, ge=0, le=1, description="share of samples at full scale")
    min_lufs: float = Field(-45.0, ge=-80, le=0, description="quieter clips are removed")


class DedupOp(_Params):
    by: Literal["text", "audio", "both"] = "both"


class EditItemsOp(_Params):
    edits: list[dict[str, Any]] = Field(default_factory=list, description="[{id, text?, delete?}]")


OPERATIONS = OperationRegistry([
    Operation("slice", SliceOp, "無音で分割", "Slice at pauses"),
    Operation("transcribe", TranscribeOp, "文字起こし (Whisper)", "Transcribe (Whisper)"),
    Operation("normalize_text", NormalizeTextOp, "テキスト正規化", "Normalise text"),
    Operation("loudness", LoudnessOp, "ラウドネス調整", "Loudness"),
    Operation("trim_silence", TrimSilenceOp, "前後の無音を削除", "Trim silence"),
    Operation("resample", ResampleOp, "サンプリングレート変換", "Resample"),
    Operation("filter", FilterOp, "フィルタ (長さ・クリップ・音量)", "Filter (length, clipping, quiet)"),
    Operation("dedup", DedupOp, "重複の削除", "Remove duplicates"),
    Operation("edit_items", EditItemsOp, "文字起こしの編集", "Edit transcripts"),
])


def refine_operations_description() -> dict[str, dict[str, Any]]:
    return OPERATIONS.describe()


def validate_operations(operations: Any) -> list[dict[str, Any]]:
    """Every operation known and its parameters complete; 422 ``REFINE_INVALID_*`` naming the step."""
    return OPERATIONS.validate_dicts(operations)
