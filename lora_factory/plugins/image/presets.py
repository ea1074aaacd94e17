"""Training parameters of an image LoRA, the presets, and the VRAM profiles that pick memory options.

The knobs are kohya sd-scripts' (``network_dim``, ``--enable_bucket``, ``--min_snr_gamma``,
``--noise_offset``, ``--shuffle_caption --keep_tokens`` ...) under plain names, so a kohya user finds
what they know. Resolution ``None`` means the base model's native size (512 for SD1.5, 1024 for
SDXL / Flux, the tiny models' own); bucket sizes follow from it.

A VRAM profile (``8gb`` / ``12gb`` / ``24gb``) sets only the memory options (batch size, gradient
checkpointing, mixed precision, 8-bit AdamW, caching, text-encoder training) over the preset; the
user's own values still win over both.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class ImageTrainParams(BaseModel):
    """Every knob of an image LoRA run. ``max_steps=-1`` trains for ``num_epochs`` (with repeats)."""

    model_config = ConfigDict(extra="forbid")

    rank: int = Field(16, ge=1, le=512, description="LoRA rank (kohya network_dim)")
    alpha: float = Field(8, gt=0, description="LoRA alpha (kohya network_alpha); scale = alpha / rank")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    unet_targets: Literal["attention", "transformer"] = Field(
        "transformer", description="attention: to_q/k/v/out; transformer: + proj_in/out and feed-forward (kohya's default)")
    train_text_encoder: bool = Field(False, description="also train LoRA on the text encoder(s)")
    learning_rate: float = Field(1e-4, gt=0, le=1.0)
    text_encoder_lr: float | None = Field(None, gt=0, le=1.0, description="default: half the learning rate")
    num_epochs: int = Field(10, ge=1, le=10000)
    max_steps: int = Field(-1, ge=-1)
    batch_size: int = Field(1, ge=1, le=256)
    grad_accum: int = Field(1, ge=1, le=256)
    lr_scheduler: Literal["constant", "constant_with_warmup", "cosine", "linear"] = "constant"
    lr_warmup_steps: int = Field(0, ge=0)
    max_grad_norm: float = Field(1.0, ge=0.0)
    optimizer: Literal["auto", "adamw", "adamw8bit"] = Field(
        "auto", description="auto = 8-bit AdamW (bitsandbytes) on a CUDA GPU, AdamW elsewhere")
    resolution: int | None = Field(None, ge=32, le=4096, description="training size; empty = the model's native size")
    enable_bucket: bool = Field(True, description="aspect-ratio bucketing (kohya --enable_bucket)")
    min_bucket_reso: int | None = Field(None, ge=16, description="default: half the resolution")
    max_bucket_reso: int | None = Field(None, ge=32, description="default: twice the resolution")
    bucket_reso_steps: int | None = Field(None, ge=8, description="default: what the model needs (64 for SD)")
    random_crop: bool = False
    flip_aug: bool = False
    shuffle_caption: bool = False
    keep_tokens: int = Field(1, ge=0, le=64, description="tags kept in front when shuffling (the trigger word)")
    caption_dropout_rate: float = Field(0.0, ge=0.0, le=1.0)
    caption_tag_dropout_rate: float = Field(0.0, ge=0.0, le=1.0)
    noise_offset: float = Field(0.0, ge=0.0, le=1.0)
    min_snr_gamma: float | None = Field(5.0, gt=0, description="Min-SNR weighting; empty = off")
    prediction_type: Literal["auto", "epsilon", "v_prediction"] = Field(
        "auto", description="auto = the scheduler's (v-prediction for SD2-v models)")
    cache_latents: bool = True
    cache_text_encoder_outputs: bool = Field(
        True, description="only when captions do not change between steps and the text encoders are frozen")
    gradient_checkpointing: bool = False
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = Field("auto", description="auto = bf16 / fp16 on a GPU, fp32 on a CPU")
    quantize_base: Literal["none", "nf4"] = Field("none", description="nf4 = 4-bit base (Flux QLoRA, CUDA only)")
    save_every_n_steps: int = Field(0, ge=0, description="checkpoint interval; 0 = only at the end")
    sample_every_n_steps: int = Field(0, ge=0, description="sample images every N steps; 0 = only at the end")
    sample_prompts: list[str] = Field(default_factory=list, description="fixed prompts; empty = the first captions")
    sample_seed: int = 1234
    sample_steps: int = Field(20, ge=1, le=200)
    sample_guidance_scale: float = Field(7.0, ge=0.0, le=50.0)
    save_precision: Literal["fp16", "bf16", "fp32"] = Field("fp16", description="dtype of the kohya file")
    seed: int = 42
    vram_profile: Literal["none", "8gb", "12gb", "24gb"] = Field("none", description="memory options for this GPU size")

    @field_validator("sample_prompts")
    @classmethod
    def _prompts(cls, value: list[str]) -> list[str]:
        return [p.strip() for p in value if p and p.strip()][:8]


_COMMON: dict[str, Any] = {
    "dropout": 0.0, "unet_targets": "transformer", "lr_warmup_steps": 0, "max_grad_norm": 1.0, "optimizer": "auto",
    "resolution": None, "enable_bucket": True, "random_crop": False, "flip_aug": False, "keep_tokens": 1,
    "caption_tag_dropout_rate": 0.0, "prediction_type": "auto", "cache_latents": True,
    "cache_text_encoder_outputs": True, "mixed_precision": "auto", "quantize_base": "none", "sample_seed": 1234,
    "save_precision": "fp16", "seed": 42, "vram_profile": "none", "grad_accum": 1,
}

PRESETS: dict[str, dict[str, Any]] = {
    # A first look: few steps, a high learning rate, samples along the way. Seconds on the tiny model.
    "quick": {**_COMMON, "rank": 8, "alpha": 8, "train_text_encoder": False, "learning_rate": 1e-3,
              "text_encoder_lr": None, "num_epochs": 4, "max_steps": 300, "batch_size": 2, "lr_scheduler": "constant",
              "shuffle_caption": False, "caption_dropout_rate": 0.0, "noise_offset": 0.0, "min_snr_gamma": 5.0,
              "gradient_checkpointing": False, "save_every_n_steps": 0, "sample_every_n_steps": 100,
              "sample_prompts": [], "sample_steps": 20, "sample_guidance_scale": 7.0},
    # kohya's usual character / style LoRA: dim 16 / alpha 8, 10 epochs at 1e-4, shuffled tags.
    "standard": {**_COMMON, "rank": 16, "alpha": 8, "train_text_encoder": False, "learning_rate": 1e-4,
                 "text_encoder_lr": None, "num_epochs": 10, "max_steps": -1, "batch_size": 2,
                 "lr_scheduler": "cosine", "shuffle_caption": True, "caption_dropout_rate": 0.05,
                 "noise_offset": 0.05, "min_snr_gamma": 5.0, "gradient_checkpointing": True,
                 "save_every_n_steps": 500, "sample_every_n_steps": 250, "sample_prompts": [],
                 "sample_steps": 25, "sample_guidance_scale": 7.0},
    # More capacity and the text encoder too, at a lower rate for longer.
    "high_quality": {**_COMMON, "rank": 32, "alpha": 16, "train_text_encoder": True, "learning_rate": 5e-5,
                     "text_encoder_lr": 2.5e-5, "num_epochs": 20, "max_steps": -1, "batch_size": 2,
                     "lr_scheduler": "cosine", "shuffle_caption": True, "caption_dropout_rate": 0.05,
                     "noise_offset": 0.05, "min_snr_gamma": 5.0, "gradient_checkpointing": True,
                     "save_every_n_steps": 500, "sample_every_n_steps": 500, "sample_prompts": [],
                     "sample_steps": 30, "sample_guidance_scale": 7.0},
}

# what each preset is for, shown under the preset select
PRESET_INFO: dict[str, dict[str, str]] = {
    "quick": {"label_ja": "お試し", "label_en": "Quick try",
              "description_ja": "最大 300 ステップ、高めの学習率で途中のサンプル画像も出します。流れの確認用。",
              "description_en": "At most 300 steps at a high learning rate, with samples along the way: to check the flow."},
    "standard": {"label_ja": "標準", "label_en": "Standard",
                 "description_ja": "kohya でよく使われるキャラクター・画風 LoRA の設定 (dim 16 / alpha 8、10 エポック、学習率 1e-4、タグのシャッフル)。",
                 "description_en": "kohya's usual character / style LoRA: dim 16 / alpha 8, 10 epochs at 1e-4, shuffled tags."},
    "high_quality": {"label_ja": "高品質", "label_en": "High quality",
                     "description_ja": "ランク 32、テキストエンコーダーも学習、低めの学習率で 20 エポック。時間とメモリが増えます。",
                     "description_en": "Rank 32 and the text encoder too, at a lower rate for 20 epochs: slower and larger."},
}

# Memory options only; applied over the preset, under the user's own values.
VRAM_PROFILES: dict[str, dict[str, Any]] = {
    "none": {},
    "8gb": {"batch_size": 1, "gradient_checkpointing": True, "mixed_precision": "auto", "optimizer": "adamw8bit",
            "cache_latents": True, "cache_text_encoder_outputs": True, "train_text_encoder": False,
            "quantize_base": "nf4"},
    "12gb": {"batch_size": 2, "gradient_checkpointing": True, "mixed_precision": "auto", "optimizer": "adamw8bit",
             "cache_latents": True, "cache_text_encoder_outputs": True, "quantize_base": "nf4"},
    "24gb": {"batch_size": 4, "gradient_checkpointing": False, "mixed_precision": "auto", "optimizer": "adamw",
             "cache_latents": True, "quantize_base": "none"},
}
for _size in ("8gb", "12gb", "24gb"):  # the profiles as whole presets too: the standard run for that GPU
    PRESETS[f"vram_{_size}"] = {**PRESETS["standard"], **VRAM_PROFILES[_size], "vram_profile": _size}

TITLES_JA: dict[str, str] = {
    "rank": "LoRA ランク (network_dim)", "alpha": "LoRA アルファ (network_alpha)", "dropout": "ドロップアウト",
    "unet_targets": "対象レイヤー", "train_text_encoder": "テキストエンコーダーも学習", "learning_rate": "学習率",
    "text_encoder_lr": "テキストエンコーダーの学習率", "num_epochs": "エポック数",
    "max_steps": "最大ステップ数 (-1 = エポックで決める)", "batch_size": "バッチサイズ", "grad_accum": "勾配累積",
    "lr_scheduler": "学習率スケジューラ", "lr_warmup_steps": "ウォームアップ (ステップ)", "max_grad_norm": "勾配クリップ",
    "optimizer": "オプティマイザ", "resolution": "解像度 (空欄 = モデル標準)", "enable_bucket": "アスペクト比バケット",
    "min_bucket_reso": "バケット最小辺", "max_bucket_reso": "バケット最大辺", "bucket_reso_steps": "バケットの刻み",
    "random_crop": "ランダムクロップ", "flip_aug": "左右反転", "shuffle_caption": "タグをシャッフル",
    "keep_tokens": "先頭に固定するタグ数", "caption_dropout_rate": "キャプションを落とす確率",
    "caption_tag_dropout_rate": "タグを落とす確率", "noise_offset": "ノイズオフセット", "min_snr_gamma": "Min-SNR ガンマ",
    "prediction_type": "予測タイプ", "cache_latents": "潜在表現をキャッシュ",
    "cache_text_encoder_outputs": "テキストエンコーダー出力をキャッシュ", "gradient_checkpointing": "勾配チェックポイント (省メモリ)",
    "mixed_precision": "混合精度", "quantize_base": "ベースの量子化 (Flux QLoRA)", "save_every_n_steps": "チェックポイント間隔 (ステップ)",
    "sample_every_n_steps": "サンプル画像の間隔 (ステップ)", "sample_prompts": "サンプル用プロンプト",
    "sample_seed": "サンプルのシード", "sample_steps": "サンプルのステップ数", "sample_guidance_scale": "サンプルの CFG",
    "save_precision": "kohya ファイルの精度", "seed": "乱数シード", "vram_profile": "VRAM プロファイル",
}


# Japanese for every English ``description`` above, so a Japanese form has no English hints under its labels
DESCRIPTIONS_JA: dict[str, str] = {
    "rank": "LoRA のランク (kohya の network_dim)", "alpha": "LoRA のアルファ (kohya の network_alpha)。効き = alpha / rank",
    "unet_targets": "attention: to_q/k/v/out のみ。transformer: さらに proj_in/out とフィードフォワード (kohya の既定)",
    "train_text_encoder": "テキストエンコーダーにも LoRA を学習させる", "text_encoder_lr": "既定: 学習率の半分",
    "optimizer": "auto = CUDA GPU では 8bit AdamW (bitsandbytes)、それ以外は AdamW",
    "resolution": "学習サイズ。空欄 = モデル本来のサイズ", "enable_bucket": "アスペクト比バケット (kohya の --enable_bucket)",
    "min_bucket_reso": "既定: 解像度の半分", "max_bucket_reso": "既定: 解像度の 2 倍",
    "bucket_reso_steps": "既定: モデルが必要とする刻み (SD は 64)",
    "keep_tokens": "シャッフル時に先頭に固定するタグの数 (トリガーワード)", "min_snr_gamma": "Min-SNR 重み付け。空欄 = なし",
    "prediction_type": "auto = スケジューラの設定 (SD2-v モデルは v-prediction)",
    "cache_text_encoder_outputs": "キャプションがステップ間で変わらず、テキストエンコーダーを学習しないときだけ有効",
    "mixed_precision": "auto = GPU では bf16 / fp16、CPU では fp32", "quantize_base": "nf4 = 4bit のベース (Flux QLoRA、CUDA のみ)",
    "save_every_n_steps": "チェックポイントの間隔。0 = 最後だけ", "sample_every_n_steps": "N ステップごとにサンプル画像。0 = 最後だけ",
    "sample_prompts": "固定のプロンプト。空 = 最初のキャプション", "save_precision": "kohya ファイルの数値型",
    "vram_profile": "この GPU の VRAM に合わせた省メモリ設定",
}


def preset_layers(preset: str, overrides: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The VRAM layer to apply between the preset and the overrides (the one the user or preset named)."""
    profile = (overrides or {}).get("vram_profile") or PRESETS.get(preset, {}).get("vram_profile") or "none"
    return [VRAM_PROFILES.get(str(profile), {})]
