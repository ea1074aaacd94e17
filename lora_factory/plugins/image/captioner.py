"""Sentence captions for photos with BLIP or Florence-2 through transformers (both native in 5.x).

The model folder is a transformers checkpoint with its processor (``config.json``,
``*.safetensors``, ``preprocessor_config.json`` / ``processor_config.json``, tokenizer files), as
``Salesforce/blip-image-captioning-*`` or ``florence-community/Florence-2-*`` on the Hub; it runs
offline once downloaded. The family is read from ``config.json``'s ``model_type``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lora_factory.kit import LoRAFactoryError

FLORENCE_TASKS = ("<CAPTION>", "<DETAILED_CAPTION>", "<MORE_DETAILED_CAPTION>")


def captioner_family(folder: Path) -> str:
    """``blip`` or ``florence2`` (from ``config.json``), else ``CAPTIONER_UNSUPPORTED``."""
    config = Path(folder) / "config.json"
    try:
        model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type", "")
    except (OSError, json.JSONDecodeError) as exc:
        raise LoRAFactoryError("CAPTIONER_NOT_FOUND", f"キャプションモデル「{Path(folder).name}」に config.json がありません。",
                               f"The captioning model '{Path(folder).name}' has no readable config.json.", 422,
                               detail={"path": str(folder), "reason": str(exc)}) from exc
    if model_type in ("blip", "florence2"):
        return model_type
    raise LoRAFactoryError("CAPTIONER_UNSUPPORTED", f"キャプションモデルの種類「{model_type}」には対応していません(BLIP / Florence-2)。",
                           f"Captioning model type '{model_type}' is not supported (BLIP or Florence-2).", 422,
                           detail={"model_type": model_type})


class Captioner:
    """A loaded BLIP or Florence-2 model; :meth:`caption` one PIL image at a time."""

    def __init__(self, folder: Path, device: str = "cpu", task: str = "<DETAILED_CAPTION>", max_new_tokens: int = 60,
                 prefix: str = "") -> None:
        import torch
        from transformers import AutoProcessor

        self.family = captioner_family(folder)
        self.device = device
        self.task = task if task in FLORENCE_TASKS else "<DETAILED_CAPTION>"
        self.max_new_tokens = max_new_tokens
        self.prefix = prefix
        dtype = torch.float16 if device == "cuda" else torch.float32
        self.processor = AutoProcessor.from_pretrained(folder)
        if self.family == "blip":
            from transformers import BlipForConditionalGeneration as ModelClass
        else:
            from transformers import Florence2ForConditionalGeneration as ModelClass
        self.model = ModelClass.from_pretrained(folder, dtype=dtype).to(device).eval()
        self.dtype = dtype

    def caption(self, image: Any) -> str:
        import torch

        image = image.convert("RGB")
        with torch.inference_mode():
            if self.family == "blip":
                inputs = self.processor(images=image, text=self.prefix or None, return_tensors="pt")
                inputs = {k: (v.to(self.device, self.dtype) if v.is_floating_point() else v.to(self.device))
                          for k, v in inputs.items()}
                out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens)
                return self.processor.decode(out[0], skip_special_tokens=True).strip()
            inputs = self.processor(text=self.task, images=image, return_tensors="pt")
            inputs = {k: (v.to(self.device, self.dtype) if v.is_floating_point() else v.to(self.device))
                      for k, v in inputs.items()}
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, num_beams=3)
            text = self.processor.batch_decode(out, skip_special_tokens=False)[0]
            parsed = self.processor.post_process_generation(text, task=self.task, image_size=image.size)
            return str(parsed.get(self.task, "")).strip()
