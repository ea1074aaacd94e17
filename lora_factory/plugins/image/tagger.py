"""Booru tags for anime-style images with a WD v3 tagger (``model.onnx`` + ``selected_tags.csv``).

The layout of SmilingWolf's ``wd-*-tagger-v3`` repositories, run with onnxruntime on the CPU (or
CUDA when onnxruntime-gpu is installed): the image is composited on white, padded to a square,
resized to the model's input size, fed as BGR float 0-255 in NHWC; the output is one probability
per row of ``selected_tags.csv`` (category 9 = rating, 4 = character, 0 = general).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lora_factory.kit import LoRAFactoryError

RATING, GENERAL, CHARACTER = 9, 0, 4
# tags whose underscores are part of the face they draw
KAOMOJI = {"0_0", "(o)_(o)", "+_+", "+_-", "._.", "<o>_<o>", "<|>_<|>", "=_=", ">_<", "3_3", "6_9", ">_o", "@_@",
           "^_^", "o_o", "u_u", "x_x", "|_|", "||_||"}


@dataclass
class Tag:
    name: str
    category: int


class WDTagger:
    """A loaded tagger; call :meth:`tag` per image."""

    def __init__(self, folder: Path, providers: list[str] | None = None) -> None:
        import onnxruntime as ort

        folder = Path(folder)
        model, labels = folder / "model.onnx", folder / "selected_tags.csv"
        if not model.is_file() or not labels.is_file():
            raise LoRAFactoryError(
                "TAGGER_NOT_FOUND", f"タガー「{folder.name}」に model.onnx と selected_tags.csv が必要です。",
                f"The tagger '{folder.name}' needs model.onnx and selected_tags.csv.", 422,
                detail={"path": str(folder), "required": ["model.onnx", "selected_tags.csv"]})
        available = ort.get_available_providers()
        wanted = providers or [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        self.session = ort.InferenceSession(str(model), providers=wanted)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.size = int(inp.shape[1]) if isinstance(inp.shape[1], int) else 448
        self.output_name = self.session.get_outputs()[0].name
        with open(labels, newline="", encoding="utf-8") as fh:
            self.tags = [Tag(row["name"], int(row.get("category") or 0)) for row in csv.DictReader(fh)]

    def prepare(self, image: Any) -> Any:
        import numpy as np
        from PIL import Image

        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        canvas.alpha_composite(rgba)
        rgb = canvas.convert("RGB")
        side = max(rgb.size)
        square = Image.new("RGB", (side, side), (255, 255, 255))
        square.paste(rgb, ((side - rgb.width) // 2, (side - rgb.height) // 2))
        if side != self.size:
            square = square.resize((self.size, self.size), Image.Resampling.BICUBIC)
        array = np.asarray(square, dtype=np.float32)[:, :, ::-1]  # RGB -> BGR
        return np.ascontiguousarray(array)[None]

    def tag(self, image: Any, general_threshold: float = 0.35, character_threshold: float = 0.85,
            include_rating: bool = False) -> list[tuple[str, float]]:
        """(tag, probability) above the thresholds: characters first, then general tags by confidence."""
        probs = self.session.run([self.output_name], {self.input_name: self.prepare(image)})[0][0]
        characters, general, rating = [], [], []
        for tag, p in zip(self.tags, probs):
            p = float(p)
            if tag.category == RATING:
                rating.append((tag.name, p))
            elif tag.category == CHARACTER and p >= character_threshold:
                characters.append((_display(tag.name), p))
            elif tag.category not in (RATING, CHARACTER) and p >= general_threshold:
                general.append((_display(tag.name), p))
        ordered = sorted(characters, key=lambda t: -t[1]) + sorted(general, key=lambda t: -t[1])
        if include_rating and rating:
            ordered.append(max(rating, key=lambda t: t[1]))
        return ordered


def _display(name: str) -> str:
    return name if name in KAOMOJI else name.replace("_", " ")
