"""ControlNet condition images: Canny edges (OpenCV) and depth maps.

Canny with OpenCV's ``cv2.Canny`` on the RGB picture, as ControlNet's own annotator
(lllyasviel/ControlNet ``annotator/canny``) and diffusers' examples do: the canny ControlNets were
trained on exactly that output, so thresholds like 100 / 200 mean what their model cards say.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def canny(image: Any, low: float = 100.0, high: float = 200.0) -> Any:
    """A PIL RGB image of white edges on black, the size of ``image``."""
    import cv2
    from PIL import Image

    edges = cv2.Canny(np.asarray(image.convert("RGB"), dtype=np.uint8), float(low), float(high))
    return Image.fromarray(np.stack([edges] * 3, axis=-1))


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
