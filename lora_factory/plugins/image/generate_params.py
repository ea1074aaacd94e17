"""The parameters of one image generation, validated (once, server side) and described.

Used for the UI's generation form (``infer_schemas["image"]``), the OpenAI-compatible route and the
settings stored in every PNG; a typo in a parameter name is an error, never silently ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

IGNORED = ("prompt", "temperature")
MAX_IMAGES = 16  # images of one request, all counted: num_images × the LoRA weight grid
SCHEDULERS = ("euler_a", "euler", "dpmpp_2m", "dpmpp_2m_karras", "ddim", "pndm", "lms", "heun", "unipc", "lcm",
              "flow_euler")


class ControlNetParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(..., description="models/image/controlnet/<name>")
    preprocessor: Literal["canny", "depth", "none"] = "canny"
    conditioning_scale: float = Field(1.0, ge=0.0, le=2.0)
    low_threshold: float = Field(100.0, ge=0.0, le=255.0 * 8)
    high_threshold: float = Field(200.0, ge=0.0, le=255.0 * 8)
    depth_model: str | None = Field(None, description="models/image/depth/<name>; empty = the image is the depth map")


class IPAdapterParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(..., description="models/image/ip_adapter/<name> (weights + image_encoder/)")
    scale: float = Field(0.6, ge=0.0, le=2.0)


class RefinerParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(..., description="models/image/refiner/<name> (SDXL refiner)")
    switch_at: float = Field(0.8, gt=0.0, lt=1.0, description="share of the steps done by the base model")


class GenerateParams(BaseModel):
    """Everything a generation can be told; defaults follow the base model (size, steps, CFG)."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["auto", "txt2img", "img2img", "inpaint"] = Field("auto", description="auto: from the given images")
    negative_prompt: str = ""
    seed: int = Field(-1, ge=-1, le=2**32 - 1, description="-1 = random")
    steps: int | None = Field(None, ge=1, le=200)
    guidance_scale: float | None = Field(None, ge=0.0, le=50.0, allow_inf_nan=False)
    width: int | None = Field(None, ge=16, le=4096)
    height: int | None = Field(None, ge=16, le=4096)
    scheduler: Literal[SCHEDULERS] | None = None  # type: ignore[valid-type]
    num_images: int = Field(1, ge=1, le=MAX_IMAGES)
    strength: float = Field(0.6, gt=0.0, le=1.0, description="img2img / inpaint: how much is repainted")
    vae: str | None = Field(None, description="models/image/vae/<name>")
    refiner: RefinerParams | None = None
    controlnet: ControlNetParams | None = None
    ip_adapter: IPAdapterParams | None = None
    lora_weight_grid: list[Annotated[float, Field(ge=-4.0, le=4.0, allow_inf_nan=False)]] = Field(
        default_factory=list, max_length=MAX_IMAGES, description="one image per LoRA weight, same seed")
    epoch_grid: list[Annotated[int, Field(ge=0, le=99999)]] = Field(
        default_factory=list, max_length=MAX_IMAGES,
        description="one image per epoch file <name>-00000N.safetensors of the first LoRA (0 = the final file), same seed")
    clip_skip: int | None = Field(None, ge=1, le=12)


GENERATE_PRESETS: dict[str, dict[str, Any]] = {
    "fast": {"steps": 15, "scheduler": "dpmpp_2m"},
    "standard": {"steps": 25, "scheduler": "dpmpp_2m_karras"},
    "quality": {"steps": 40, "scheduler": "dpmpp_2m_karras"},
}

TITLES_JA = {
    "mode": "モード", "negative_prompt": "ネガティブプロンプト", "seed": "シード (-1 = ランダム)", "steps": "ステップ数",
    "guidance_scale": "CFG スケール", "width": "幅", "height": "高さ", "scheduler": "サンプラー", "num_images": "枚数",
    "strength": "ノイズ除去強度", "vae": "VAE", "refiner": "リファイナー", "controlnet": "ControlNet",
    "ip_adapter": "IP-Adapter", "lora_weight_grid": "LoRA 重みのグリッド", "clip_skip": "Clip skip",
    "epoch_grid": "エポックのグリッド",
    "model": "モデル", "preprocessor": "前処理", "conditioning_scale": "効き具合", "low_threshold": "下側しきい値",
    "high_threshold": "上側しきい値", "depth_model": "深度推定モデル", "scale": "効き具合", "switch_at": "切り替え位置",
}

INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["prompt"],
    "properties": {
        "prompt": {"type": "string", "title": "Prompt", "title_ja": "プロンプト"},
        "image": {"type": "string", "title": "Init image (img2img / inpaint)", "title_ja": "元画像 (img2img / inpaint)",
                  "format": "upload", "accept": "image/*"},
        "mask": {"type": "string", "title": "Mask (white = repaint)", "title_ja": "マスク (白 = 描き直す)",
                 "format": "upload", "accept": "image/*"},
        "control_image": {"type": "string", "title": "ControlNet image", "title_ja": "ControlNet 画像",
                          "format": "upload", "accept": "image/*"},
        "reference_image": {"type": "string", "title": "IP-Adapter reference", "title_ja": "IP-Adapter 参照画像",
                            "format": "upload", "accept": "image/*"},
    },
}


def validate_generate_params(params: dict[str, Any] | None) -> GenerateParams:
    """The request's generation parameters, or a 422 ``INVALID_INFER_PARAMS`` naming the field."""
    from lora_factory.kit import presets

    try:
        # prompt may come in params; temperature is what a host-side eval sets for every modality
        checked = GenerateParams.model_validate({k: v for k, v in (params or {}).items() if k not in IGNORED})
    except ValidationError as exc:
        raise presets.invalid_params(exc, "INVALID_INFER_PARAMS", "生成パラメータ", "Generation parameter") from exc
    images = checked.num_images * max(1, len(checked.lora_weight_grid)) * max(1, len(checked.epoch_grid))
    if images > MAX_IMAGES:
        field = "epoch_grid" if checked.epoch_grid else "lora_weight_grid"
        raise presets.LoRAFactoryError(
            "INVALID_INFER_PARAMS",
            f"生成パラメータ「{field}」が不正です: 枚数 × 重みの数 × エポック数 = {images} 枚は上限 {MAX_IMAGES} 枚を超えます。",
            f"Generation parameter '{field}' is invalid: num_images × weights × epochs = {images} images, "
            f"over the limit of {MAX_IMAGES}.",
            http_status=422, detail={"field": field, "images": images, "limit": MAX_IMAGES})
    return checked
