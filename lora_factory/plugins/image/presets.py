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

import ast
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# generation's schedulers, for the samples (kohya's --sample_sampler names map onto them: KOHYA_SAMPLERS)
SAMPLE_SAMPLERS = ("euler_a", "euler", "dpmpp_2m", "dpmpp_2m_karras", "ddim", "pndm", "lms", "heun", "unipc", "lcm")
KOHYA_SAMPLERS = {"k_euler_a": "euler_a", "k_euler": "euler", "k_lms": "lms", "dpmsolver++": "dpmpp_2m",
                  "dpmsolver": "dpmpp_2m", "k_dpm_2": "heun", "dpm_2": "heun", "ddpm": "ddim"}
# kohya's --optimizer_type values we train with (lower case; kohya's spelling is accepted too)
OPTIMIZERS = ("auto", "adamw", "adamw8bit", "prodigy", "adafactor", "lion", "lion8bit", "dadaptation", "dadaptadam")


class ImageTrainParams(BaseModel):
    """Every knob of an image LoRA run. ``max_steps=-1`` trains for ``num_epochs`` (with repeats)."""

    model_config = ConfigDict(extra="forbid")

    rank: int = Field(16, ge=1, le=512, description="LoRA rank (kohya network_dim)")
    alpha: float = Field(8, gt=0, description="LoRA alpha (kohya network_alpha); scale = alpha / rank")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    network_type: Literal["lora", "locon", "loha", "lokr"] = Field(
        "lora", description="lora: kohya networks.lora; locon / loha / lokr: LyCORIS (lycoris.kohya algo=...)")
    reg_dataset: str | None = Field(
        None, description="regularisation images (kohya --reg_data_dir): a dataset in datasets/image/ with "
        "<repeats>_<class> folders; shown as often as the training images")
    prior_loss_weight: float = Field(1.0, ge=0.0, le=10.0, description="loss weight of the regularisation images")
    network_weights: str | None = Field(
        None, description="continue from a LoRA (kohya --network_weights): lora_adapters/image/<name>, or a "
        "kohya .safetensors inside it or under models/image/ (one trained elsewhere); same rank")
    conv_dim: int | None = Field(None, ge=1, le=512, description="rank of the ResNet / sampler conv layers (locon: default = rank; lora / loha / lokr: empty = none)")
    conv_alpha: float | None = Field(None, gt=0, description="alpha of the conv layers; empty = the LoRA alpha")
    unet_targets: Literal["attention", "transformer"] = Field(
        "transformer", description="attention: to_q/k/v/out; transformer: + proj_in/out and feed-forward (kohya's default)")
    train_text_encoder: bool = Field(False, description="also train LoRA on the text encoder(s)")
    learning_rate: float = Field(1e-4, gt=0, le=1.0)
    text_encoder_lr: float | None = Field(None, gt=0, le=1.0, description="default: half the learning rate")
    num_epochs: int = Field(10, ge=1, le=10000)
    max_steps: int = Field(-1, ge=-1)
    batch_size: int = Field(1, ge=1, le=256)
    grad_accum: int = Field(1, ge=1, le=256)
    lr_scheduler: Literal["constant", "constant_with_warmup", "cosine", "linear", "cosine_with_restarts",
                          "polynomial"] = "constant"
    lr_warmup_steps: int = Field(0, ge=0)
    lr_scheduler_num_cycles: int = Field(1, ge=1, le=1000, description="restarts of cosine_with_restarts")
    lr_scheduler_power: float = Field(1.0, gt=0, le=100.0, description="power of the polynomial schedule")
    max_grad_norm: float = Field(1.0, ge=0.0)
    optimizer: Literal[OPTIMIZERS] = Field(  # type: ignore[valid-type]
        "auto", description="auto = 8-bit AdamW (bitsandbytes) on a CUDA GPU, AdamW elsewhere; prodigy / adafactor / "
        "lion / dadaptation as kohya's --optimizer_type")
    optimizer_args: dict[str, Any] = Field(
        default_factory=dict, description='kohya --optimizer_args: {"weight_decay": 0.01, "betas": [0.9, 0.99], '
        '"d_coef": 1.0} or "weight_decay=0.01 betas=(0.9,0.99)"')
    clip_skip: int | None = Field(None, ge=1, le=12, description="train on the N-th last CLIP layer (2 for anime SD1.5); empty = 1")
    max_token_length: Literal[75, 150, 225] | None = Field(
        None, description="caption length in tokens: 150 / 225 encode in 75-token chunks as kohya does; empty = 75")
    resolution: int | None = Field(None, ge=32, le=4096, description="training size; empty = the model's native size")
    enable_bucket: bool = Field(True, description="aspect-ratio bucketing (kohya --enable_bucket)")
    min_bucket_reso: int | None = Field(None, ge=16, description="default: half the resolution")
    max_bucket_reso: int | None = Field(None, ge=32, description="default: twice the resolution")
    bucket_no_upscale: bool = Field(False, description="never enlarge a small image: its own bucket, cut to the step")
    bucket_reso_steps: int | None = Field(None, ge=8, description="default: what the model needs (64 for SD)")
    random_crop: bool = False
    flip_aug: bool = False
    color_aug: bool = Field(False, description="random hue shift each step (kohya --color_aug); latents are not cached then")
    shuffle_caption: bool = False
    keep_tokens: int = Field(1, ge=0, le=64, description="tags kept in front when shuffling (the trigger word)")
    keep_tokens_separator: str = Field(
        "", max_length=16, description='e.g. "|||": tags before it stay in front (instead of keep_tokens), after a '
        "second one stay at the end")
    caption_dropout_rate: float = Field(0.0, ge=0.0, le=1.0)
    caption_dropout_every_n_epochs: int = Field(0, ge=0, description="train every N-th epoch without captions; 0 = off")
    caption_tag_dropout_rate: float = Field(0.0, ge=0.0, le=1.0)
    noise_offset: float = Field(0.0, ge=0.0, le=1.0)
    min_snr_gamma: float | None = Field(5.0, gt=0, description="Min-SNR weighting; empty = off")
    adaptive_noise_scale: float | None = Field(
        None, ge=-1.0, le=1.0, description="noise offset + this x each latent channel's |mean| (with noise_offset); empty = off")
    multires_noise_iterations: int = Field(0, ge=0, le=20, description="pyramid noise levels (6-10 usual); 0 = off")
    multires_noise_discount: float = Field(0.3, gt=0.0, le=1.0, description="weight decay of each pyramid noise level")
    ip_noise_gamma: float | None = Field(None, ge=0.0, le=1.0, description="input perturbation noise (0.1 usual); empty = off")
    debiased_estimation_loss: bool = Field(False, description="weight each image's loss by 1/sqrt(SNR)")
    zero_terminal_snr: bool = Field(False, description="rescale the noise schedule to zero SNR at the last step (with v-prediction)")
    loss_type: Literal["l2", "l1", "huber", "smooth_l1"] = Field("l2", description="l2 = MSE; huber / smooth_l1 with huber_c")
    huber_schedule: Literal["constant", "exponential", "snr"] = Field("snr", description="how huber_c follows the timestep")
    huber_c: float = Field(0.1, gt=0.0, le=1.0, description="Huber loss threshold")
    huber_scale: float = Field(1.0, gt=0.0, le=10.0, description="scale of huber_c (constant / exponential schedules)")
    prediction_type: Literal["auto", "epsilon", "v_prediction"] = Field(
        "auto", description="auto = the scheduler's (v-prediction for SD2-v models)")
    cache_latents: bool = True
    cache_text_encoder_outputs: bool = Field(
        True, description="only when captions do not change between steps and the text encoders are frozen")
    gradient_checkpointing: bool = False
    vae: str | None = Field(None, description="a VAE to train with (kohya --vae): models/image/vae/<name>; empty = the base's")
    no_half_vae: bool = Field(False, description="keep the VAE in fp32 under mixed precision (kohya --no_half_vae)")
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = Field("auto", description="auto = bf16 / fp16 on a GPU, fp32 on a CPU")
    quantize_base: Literal["none", "nf4"] = Field("none", description="nf4 = 4-bit base (Flux QLoRA, CUDA only)")
    save_every_n_steps: int = Field(0, ge=0, description="checkpoint interval; 0 = only at the end")
    save_every_n_epochs: int = Field(0, ge=0, description="write <name>-00000N.safetensors every N epochs; 0 = none")
    save_last_n_epochs: int = Field(0, ge=0, description="keep only the last N epoch files; 0 = keep all")
    sample_every_n_steps: int = Field(0, ge=0, description="sample images every N steps; 0 = only at the end")
    sample_every_n_epochs: int = Field(0, ge=0, description="sample images at the end of every N epochs; 0 = off")
    sample_prompts: list[str] = Field(
        default_factory=list, json_schema_extra={"ui": "lines"},
        description="fixed prompts, one per line, with kohya's options: --n negative --w width --h height --s steps "
                    "--l CFG --d seed; empty = the first captions")
    sample_sampler: Literal[SAMPLE_SAMPLERS] = Field(  # type: ignore[valid-type]
        "dpmpp_2m", description="sampler of the samples (kohya's names such as k_euler_a or dpmsolver++ accepted)")
    sample_seed: int = Field(1234, ge=0, le=2**32 - 1)
    sample_steps: int = Field(20, ge=1, le=200)
    sample_guidance_scale: float = Field(7.0, ge=0.0, le=50.0)
    save_precision: Literal["fp16", "bf16", "fp32"] = Field("fp16", description="dtype of the kohya file")
    seed: int = Field(42, ge=0, le=2**32 - 1)  # numpy and torch refuse larger seeds (the job crashed)
    vram_profile: Literal["none", "8gb", "12gb", "24gb"] = Field("none", description="memory options for this GPU size")

    @field_validator("optimizer", mode="before")
    @classmethod
    def _optimizer_name(cls, value: Any) -> Any:
        """kohya's spelling (``AdamW8bit``, ``Prodigy``, ``DAdaptation``) is accepted as well."""
        return value.strip().lower().replace("-", "").replace("_", "") if isinstance(value, str) else value

    @field_validator("optimizer_args", mode="before")
    @classmethod
    def _optimizer_args(cls, value: Any) -> Any:
        return parse_optimizer_args(value)

    @field_validator("sample_sampler", mode="before")
    @classmethod
    def _sampler(cls, value: Any) -> Any:
        return KOHYA_SAMPLERS.get(value.strip().lower(), value.strip().lower()) if isinstance(value, str) else value

    @field_validator("sample_prompts", mode="before")
    @classmethod
    def _prompt_lines(cls, value: Any) -> Any:
        """A kohya prompt file's text (one prompt a line, ``#`` comments) is taken as the list it means."""
        if isinstance(value, str):
            return [line for line in value.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        return value

    @field_validator("sample_prompts")
    @classmethod
    def _prompts(cls, value: list[str]) -> list[str]:
        return [p.strip() for p in value if p and p.strip()][:8]


def parse_optimizer_args(value: Any) -> Any:
    """kohya's ``--optimizer_args`` ("key=value" items, values as Python literals) or a mapping -> a mapping.

    A string is split on whitespace outside brackets, so ``"betas=(0.9, 0.99) weight_decay=0.01"`` works as on
    kohya's command line; a tuple becomes a list (JSON has no tuples). Anything not ``key=literal`` raises
    ``ValueError``, which pydantic reports as a 422 naming the field.
    """
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        return {str(k): (list(v) if isinstance(v, tuple) else v) for k, v in value.items()}
    if not isinstance(value, (str, list, tuple)):  # a number: list(5) raised TypeError, which pydantic lets through (500)
        raise ValueError(f"optimizer_args takes key=value items or a mapping, not {type(value).__name__}")
    items = _split_args(value) if isinstance(value, str) else list(value)
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = str(item).partition("=")
        if not sep or not key.strip():
            raise ValueError(f"optimizer_args takes key=value items: {item!r}")
        try:
            parsed = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError):  # "((((…" overflows the parser
            raise ValueError(f"optimizer_args: {key.strip()} is not a number, bool, string or tuple: {text!r}") from None
        out[key.strip()] = list(parsed) if isinstance(parsed, tuple) else parsed
    return out


def _split_args(text: str) -> list[str]:
    items, depth, current = [], 0, ""
    for char in text:
        if char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        if (char.isspace() or char == ";") and depth == 0:
            if current.strip():
                items.append(current.strip())
            current = ""
            continue
        current += char
    if current.strip():
        items.append(current.strip())
    return items


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
    "sample_every_n_steps": "サンプル画像の間隔 (ステップ)", "sample_prompts": "サンプル用プロンプト (1 行に 1 つ)",
    "sample_every_n_epochs": "サンプル画像の間隔 (エポック)", "sample_sampler": "サンプルのサンプラー",
    "sample_seed": "サンプルのシード", "sample_steps": "サンプルのステップ数", "sample_guidance_scale": "サンプルの CFG",
    "save_precision": "kohya ファイルの精度", "seed": "乱数シード", "vram_profile": "VRAM プロファイル",
    "network_type": "ネットワークの種類 (LoRA / LyCORIS)", "network_weights": "続きから学習する LoRA (network_weights)",
    "adaptive_noise_scale": "適応ノイズスケール", "multires_noise_iterations": "マルチ解像度ノイズの段数",
    "multires_noise_discount": "マルチ解像度ノイズの減衰", "ip_noise_gamma": "入力摂動ノイズ (ip_noise_gamma)",
    "debiased_estimation_loss": "デバイアス推定ロス", "zero_terminal_snr": "ゼロ終端 SNR", "loss_type": "損失の種類",
    "huber_schedule": "Huber のスケジュール", "huber_c": "Huber の閾値 (huber_c)", "huber_scale": "Huber のスケール",
    "vae": "学習に使う VAE", "no_half_vae": "VAE を fp32 のままにする (no_half_vae)",
    "keep_tokens_separator": "固定タグの区切り (keep_tokens_separator)", "color_aug": "色相のランダム変化 (color_aug)",
    "caption_dropout_every_n_epochs": "N エポックごとにキャプションなし", "bucket_no_upscale": "小さい画像を拡大しない",
    "reg_dataset": "正則化画像 (reg_data_dir)", "prior_loss_weight": "正則化画像の損失の重み (prior_loss_weight)",
    "conv_dim": "Conv ランク (conv_dim)",
    "conv_alpha": "Conv アルファ (conv_alpha)", "lr_scheduler_num_cycles": "リスタート回数 (num_cycles)",
    "lr_scheduler_power": "多項式の次数 (power)", "optimizer_args": "オプティマイザ引数 (optimizer_args)",
    "clip_skip": "Clip skip", "max_token_length": "最大トークン長 (max_token_length)",
    "save_every_n_epochs": "N エポックごとに保存", "save_last_n_epochs": "残すエポックファイル数",
}


# Japanese for every English ``description`` above, so a Japanese form has no English hints under its labels
DESCRIPTIONS_JA: dict[str, str] = {
    "rank": "LoRA のランク (kohya の network_dim)", "alpha": "LoRA のアルファ (kohya の network_alpha)。効き = alpha / rank",
    "unet_targets": "attention: to_q/k/v/out のみ。transformer: さらに proj_in/out とフィードフォワード (kohya の既定)",
    "train_text_encoder": "テキストエンコーダーにも LoRA を学習させる", "text_encoder_lr": "既定: 学習率の半分",
    "resolution": "学習サイズ。空欄 = モデル本来のサイズ", "enable_bucket": "アスペクト比バケット (kohya の --enable_bucket)",
    "min_bucket_reso": "既定: 解像度の半分", "max_bucket_reso": "既定: 解像度の 2 倍",
    "bucket_reso_steps": "既定: モデルが必要とする刻み (SD は 64)",
    "keep_tokens": "シャッフル時に先頭に固定するタグの数 (トリガーワード)", "min_snr_gamma": "Min-SNR 重み付け。空欄 = なし",
    "prediction_type": "auto = スケジューラの設定 (SD2-v モデルは v-prediction)",
    "cache_text_encoder_outputs": "キャプションがステップ間で変わらず、テキストエンコーダーを学習しないときだけ有効",
    "mixed_precision": "auto = GPU では bf16 / fp16、CPU では fp32", "quantize_base": "nf4 = 4bit のベース (Flux QLoRA、CUDA のみ)",
    "save_every_n_steps": "チェックポイントの間隔。0 = 最後だけ", "sample_every_n_steps": "N ステップごとにサンプル画像。0 = 最後だけ",
    "sample_prompts": "固定のプロンプト (1 行に 1 つ)。kohya のオプション --n ネガティブ --w 幅 --h 高さ --s ステップ "
                      "--l CFG --d シード が使えます。空 = 最初のキャプション",
    "sample_every_n_epochs": "N エポックごとにサンプル画像。0 = なし",
    "sample_sampler": "サンプル画像のサンプラー (k_euler_a や dpmsolver++ など kohya の名前も可)", "save_precision": "kohya ファイルの数値型",
    "vram_profile": "この GPU の VRAM に合わせた省メモリ設定",
    "network_type": "lora: kohya の networks.lora。locon / loha / lokr: LyCORIS (lycoris.kohya の algo)",
    "adaptive_noise_scale": "ノイズオフセット + この値 × 潜在チャンネルの平均の絶対値 (noise_offset と併用)。空欄 = なし",
    "multires_noise_iterations": "ピラミッドノイズの段数 (6〜10 が目安)。0 = なし", "multires_noise_discount": "各段のノイズの重みの減衰",
    "ip_noise_gamma": "入力摂動ノイズ (0.1 が目安)。空欄 = なし", "debiased_estimation_loss": "各画像の損失に 1/sqrt(SNR) の重み",
    "zero_terminal_snr": "最後のステップで SNR が 0 になるようノイズスケジュールを補正 (v-prediction と併用)",
    "loss_type": "l2 = 二乗誤差。huber / smooth_l1 は huber_c を使う", "huber_schedule": "huber_c をタイムステップに応じて変える方法",
    "huber_c": "Huber 損失の閾値", "huber_scale": "huber_c の倍率 (constant / exponential)",
    "vae": "学習に使う VAE (kohya の --vae): models/image/vae/<名前>。空欄 = ベースの VAE",
    "no_half_vae": "混合精度でも VAE を fp32 のままにする (kohya の --no_half_vae)",
    "color_aug": "毎ステップ色相をランダムにずらす (kohya の --color_aug)。このとき潜在表現はキャッシュしません",
    "keep_tokens_separator": '例 "|||": その前のタグは先頭に固定 (keep_tokens の代わり)、2 つ目の後は末尾に固定',
    "caption_dropout_every_n_epochs": "N エポックごとにキャプションなしで学習。0 = なし",
    "bucket_no_upscale": "小さな画像は拡大せず、自身の大きさ (刻みに切り下げ) のバケットで学習",
    "reg_dataset": "正則化画像 (kohya の --reg_data_dir): datasets/image/ のデータセット (<繰り返し>_<クラス> フォルダ)。"
                   "学習画像と同じ回数だけ使われます",
    "prior_loss_weight": "正則化画像の損失の重み",
    "network_weights": "この LoRA の続きから学習 (kohya の --network_weights): lora_adapters/image/<名前>、またはその中か "
                       "models/image/ の下の kohya 形式 .safetensors (他で学習したもの)。ランクは同じに",
    "conv_dim": "ResNet / サンプラーの畳み込み層のランク (locon: 既定 = rank。lora / loha / lokr: 空欄 = なし)", "conv_alpha": "畳み込み層のアルファ。空欄 = LoRA アルファ",
    "lr_scheduler_num_cycles": "cosine_with_restarts のリスタート回数", "lr_scheduler_power": "polynomial スケジュールの次数",
    "optimizer": "auto = CUDA GPU では 8bit AdamW (bitsandbytes)、それ以外は AdamW。prodigy / adafactor / lion / "
                 "dadaptation は kohya の --optimizer_type と同じ",
    "optimizer_args": 'kohya の --optimizer_args: {"weight_decay": 0.01, "betas": [0.9, 0.99], "d_coef": 1.0} または '
                      '"weight_decay=0.01 betas=(0.9,0.99)"',
    "clip_skip": "CLIP の最後から N 番目の層で学習 (アニメ系 SD1.5 は 2)。空欄 = 1",
    "max_token_length": "キャプションのトークン長: 150 / 225 は kohya と同じく 75 トークンずつ分けてエンコード。空欄 = 75",
    "save_every_n_epochs": "N エポックごとに <名前>-00000N.safetensors を書く。0 = なし",
    "save_last_n_epochs": "最後の N 個のエポックファイルだけ残す。0 = すべて",
}


def preset_layers(preset: str, overrides: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The VRAM layer to apply between the preset and the overrides (the one the user or preset named)."""
    profile = (overrides or {}).get("vram_profile") or PRESETS.get(preset, {}).get("vram_profile") or "none"
    return [VRAM_PROFILES.get(str(profile), {})]
