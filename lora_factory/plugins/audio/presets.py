"""Training parameters of the audio plugin (one model for TTS and Whisper LoRA) and their presets.

``quick`` is sized for a smoke run on a CPU (a tiny model learns something in seconds); ``standard``
for 10-60 minutes of one speaker on a 12-24 GB GPU with Llasa-1B; ``high_quality`` trains longer,
with a larger rank. Parameters are resolved once in the server; the worker re-validates the dict.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class AudioTrainParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lora_r: int = Field(16, ge=1, le=512)
    lora_alpha: int = Field(32, ge=1, le=2048)
    lora_dropout: float = Field(0.05, ge=0.0, le=0.9)
    target_modules: list[str] | Literal["all-linear"] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    learning_rate: float = Field(2e-4, gt=0.0, le=1.0)
    max_steps: int = Field(300, ge=1, le=1_000_000)
    batch_size: int = Field(4, ge=1, le=512)
    gradient_accumulation: int = Field(1, ge=1, le=512)
    warmup_ratio: float = Field(0.05, ge=0.0, le=0.5)
    weight_decay: float = Field(0.0, ge=0.0, le=1.0)
    max_grad_norm: float = Field(1.0, gt=0.0, le=100.0)
    save_every: int = Field(100, ge=0, le=1_000_000)
    sample_every: int = Field(100, ge=0, le=1_000_000)
    sample_text: str = Field("こんにちは。今日はいい天気ですね。", max_length=300)
    sample_max_seconds: float = Field(8.0, gt=0.1, le=60.0, description="cap per sentence of a sample")
    max_clip_seconds: float = Field(15.0, gt=0.5, le=60.0)
    speaker_prompt: bool = Field(False, description="put 'Speaker <name>' before the speech (multi-speaker data)")
    latin: Literal["keep", "spell", "kana"] = "keep"
    gradient_checkpointing: bool = False
    seed: int = Field(42, ge=0, le=2**31 - 1)
    # Whisper (ASR) only
    language: str = Field("ja", max_length=16)
    eval_fraction: float = Field(0.1, ge=0.0, le=0.5)
    # filled in by the server from the workspace; shown, not edited in the form
    user_dictionary: list[dict[str, str]] = Field(default_factory=list)


PRESETS: dict[str, dict[str, object]] = {
    "quick": {"lora_r": 8, "lora_alpha": 16, "max_steps": 30, "batch_size": 4, "learning_rate": 5e-3,
              "target_modules": "all-linear", "save_every": 0, "sample_every": 15, "lora_dropout": 0.0},
    "standard": {"lora_r": 16, "lora_alpha": 32, "max_steps": 1500, "batch_size": 4, "gradient_accumulation": 4,
                 "learning_rate": 2e-4, "save_every": 250, "sample_every": 250},
    "high_quality": {"lora_r": 64, "lora_alpha": 64, "max_steps": 4000, "batch_size": 4,
                     "gradient_accumulation": 4, "learning_rate": 1e-4, "target_modules": "all-linear",
                     "save_every": 500, "sample_every": 500, "gradient_checkpointing": True},
}
DEFAULT_PRESET = "quick"

# what each preset is for, shown under the preset select
PRESET_INFO: dict[str, dict[str, str]] = {
    "quick": {"label_ja": "お試し", "label_en": "Quick try",
              "description_ja": "30 ステップだけの短い学習。デモモデルで流れを確かめる用です。",
              "description_en": "30 steps only: to check the flow on the demo model."},
    "standard": {"label_ja": "標準", "label_en": "Standard",
                 "description_ja": "1500 ステップ、学習率 2e-4。数十分の録音からの声づくりの基準です。",
                 "description_en": "1500 steps at 2e-4: the default for a voice from tens of minutes of recordings."},
    "high_quality": {"label_ja": "高品質", "label_en": "High quality",
                     "description_ja": "ランク 64、4000 ステップ、勾配チェックポイントで省メモリ。時間はかかります。",
                     "description_en": "Rank 64, 4000 steps, gradient checkpointing: takes longer."},
}

TITLES_JA = {
    "lora_r": "LoRA ランク (r)", "lora_alpha": "LoRA アルファ", "lora_dropout": "LoRA ドロップアウト",
    "target_modules": "対象モジュール", "learning_rate": "学習率", "max_steps": "最大ステップ数",
    "batch_size": "バッチサイズ", "gradient_accumulation": "勾配累積", "warmup_ratio": "ウォームアップ比率",
    "weight_decay": "重み減衰", "max_grad_norm": "勾配クリップ", "save_every": "チェックポイント間隔 (ステップ)",
    "sample_every": "サンプル音声の間隔 (ステップ)", "sample_text": "サンプル音声の文",
    "max_clip_seconds": "クリップの最大秒数", "speaker_prompt": "話者名をプロンプトに入れる",
    "latin": "英字の扱い (keep / spell / kana)", "gradient_checkpointing": "勾配チェックポイント",
    "seed": "乱数シード", "language": "言語 (Whisper)", "eval_fraction": "評価用に分ける割合 (Whisper)",
    "user_dictionary": "ユーザー辞書 (自動)",
}
