"""Loading a base model and its tokenizer the same way for training, chat, evaluation and merge.

Why one place: device, dtype, attention kernel and the missing-template fallback must agree between
training and inference, or an adapter is trained on one prompt format and queried with another.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lora_factory.kit import LoRAFactoryError
from lora_factory.kit.devices import pick_attention, pick_device, pick_dtype

__all__ = ["load_causal_lm", "load_failed", "load_tokenizer", "pick_attention", "pick_device", "pick_dtype"]


def load_failed(path: Path, exc: Exception, what: str = "model") -> LoRAFactoryError:
    return LoRAFactoryError(
        "MODEL_LOAD_FAILED",
        f"モデル「{Path(path).name}」を読み込めません: {exc}",
        f"Could not load the {what} '{Path(path).name}': {exc}",
        http_status=500,
        detail={"path": str(path), "reason": f"{type(exc).__name__}: {exc}"},
    )


def load_tokenizer(path: Path, trust_remote_code: bool = False, log: Any = None) -> Any:
    """The tokenizer, with a pad token and a chat template (ChatML when the model ships none)."""
    from transformers import AutoTokenizer

    from lora_factory.plugins.text.tiny_model import CHAT_TEMPLATE

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    except Exception as exc:  # noqa: BLE001 - any loader failure becomes one clear error
        raise load_failed(path, exc, "tokenizer") from exc
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = CHAT_TEMPLATE
        if log:
            log("モデルにチャットテンプレートがないため ChatML を使います / no chat template: using ChatML")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(
    path: Path,
    quantization: str = "none",
    trust_remote_code: bool = False,
    device: str | None = None,
) -> Any:
    """AutoModelForCausalLM on the chosen device; 4-bit nf4 through bitsandbytes when asked."""
    import torch
    from transformers import AutoModelForCausalLM

    device = device or pick_device()
    dtype = pick_dtype(device)
    kwargs: dict[str, Any] = {
        "dtype": dtype,
        "attn_implementation": pick_attention(device),
        "trust_remote_code": trust_remote_code,
        "use_safetensors": True,  # never unpickle weights
    }
    if quantization == "4bit":
        try:
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=dtype if device == "cuda" else torch.float32,
            )
            kwargs["device_map"] = {"": device}
        except Exception as exc:  # noqa: BLE001
            raise LoRAFactoryError(
                "QUANTIZATION_UNAVAILABLE",
                f"4bit 量子化 (bitsandbytes) が使えません: {exc}",
                f"4-bit quantization (bitsandbytes) is unavailable: {exc}",
                http_status=422,
                detail={"field": "quantization"},
            ) from exc
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
    except Exception as exc:  # noqa: BLE001
        raise load_failed(path, exc) from exc
    if quantization != "4bit":
        model.to(device)
    return model
