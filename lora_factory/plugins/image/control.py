"""ControlNet condition images: Canny edges (numpy, no OpenCV) and depth maps.

Canny the classic way: Gaussian blur, Sobel gradients, non-maximum suppression along the gradient
direction, then hysteresis between a low and a high threshold (weak edges survive only when
connected to a strong one). Good enough for ControlNet's canny models, which were trained on
OpenCV's output with thresholds around 100 / 200; the same numbers work here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _blur(a: np.ndarray) -> np.ndarray:
    kernel = np.array([1, 4, 6, 4, 1], dtype=np.float64) / 16.0
    padded = np.pad(a, 2, mode="edge")
    rows = sum(kernel[i] * padded[:, i:i + a.shape[1]] for i in range(5))
    return sum(kernel[i] * rows[i:i + a.shape[0], :] for i in range(5))


def _shift(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``a`` moved by (dy, dx), zeros shifted in (no wrap-around)."""
    out = np.zeros_like(a)
    h, w = a.shape
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[yd, xd] = a[ys, xs]
    return out


def canny(image: Any, low: float = 100.0, high: float = 200.0) -> Any:
    """A PIL RGB image of white edges on black, the size of ``image``."""
    from PIL import Image

    grey = np.asarray(image.convert("L"), dtype=np.float64)
    smooth = _blur(grey)
    p = np.pad(smooth, 1, mode="edge")
    gx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2])
    gy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:])
    magnitude = np.hypot(gx, gy)
    angle = (np.rad2deg(np.arctan2(gy, gx)) + 180.0) % 180.0
    direction = np.select([(angle < 22.5) | (angle >= 157.5), angle < 67.5, angle < 112.5], [0, 1, 2], default=3)
    keep = np.zeros_like(magnitude, dtype=bool)
    # neighbours across the edge for each quantised direction: 0 horizontal, 1 diagonal, 2 vertical, 3 anti-diagonal
    for d, (dy, dx) in enumerate([(0, 1), (1, 1), (1, 0), (1, -1)]):
        mask = direction == d
        ahead, behind = _shift(magnitude, dy, dx), _shift(magnitude, -dy, -dx)
        keep |= mask & (magnitude >= ahead) & (magnitude >= behind)
    thin = np.where(keep, magnitude, 0.0)
    strong = thin >= high
    weak = (thin >= low) & ~strong
    edges = strong.copy()
    while True:  # hysteresis: grow strong edges into touching weak ones until nothing changes
        grown = edges.copy()
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                if dy or dx:
                    grown |= _shift(edges, dy, dx) & weak
        if np.array_equal(grown, edges):
            break
        edges = grown
    out = (edges * 255).astype(np.uint8)
    return Image.fromarray(np.stack([out] * 3, axis=-1))


def depth_map(image: Any, estimator: Path | None, device: str = "cpu") -> Any:
    """A depth map for depth ControlNets: estimated with a transformers depth model (DPT / Depth
    Anything in ``models/image/depth/``), or, with none given, the uploaded image taken as the map."""
    from PIL import Image

    if estimator is None:
        return image.convert("L").convert("RGB")
    import torch
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    processor = AutoImageProcessor.from_pretrained(estimator)
    model = AutoModelForDepthEstimation.from_pretrained(estimator).to(device).eval()
    with torch.inference_mode():
        inputs = processor(images=image.convert("RGB"), return_tensors="pt").to(device)
        depth = model(**inputs).predicted_depth
        depth = torch.nn.functional.interpolate(depth[:, None], size=image.size[::-1], mode="bicubic")[0, 0]
    d = depth.float().cpu().numpy()
    d = (d - d.min()) / max(float(d.max() - d.min()), 1e-6) * 255.0
    return Image.fromarray(d.astype(np.uint8)).convert("RGB")
