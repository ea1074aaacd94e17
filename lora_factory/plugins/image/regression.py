"""Regression checks on generated images: CLIP image-text score and pHash distance to the last version.

- ``clip_score``: 100 x cosine(CLIP image embedding, CLIP text embedding of the prompt), the usual
  CLIPScore scale (a matching picture scores about 25-35 with ViT-L/14). Needs a CLIP model in
  ``models/image/clip/<name>/`` (transformers ``CLIPModel`` + processor); the check names it, or the
  first one found is used; with none present the check is skipped, not failed.
- ``phash_distance``: bits that differ between the 64-bit perceptual hashes of this adapter's image
  and the previous adapter version's image for the same case (same prompt, seed, settings). A large
  distance means the new version draws something else; the first version has nothing to compare to.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHECKS: dict[str, dict[str, Any]] = {
    "clip_score": {
        "label_ja": "CLIP スコア (プロンプトとの一致度)", "label_en": "CLIP score (match with the prompt)",
        "params_schema": {"type": "object", "properties": {
            "min_score": {"type": "number", "default": 20.0, "title": "Minimum score", "title_ja": "最低スコア"},
            "model": {"type": "string", "title": "CLIP model (models/image/clip/<name>)", "title_ja": "CLIP モデル"}}},
    },
    "phash_distance": {
        "label_ja": "前のバージョンとの見た目の差 (pHash)", "label_en": "Visual change vs the previous version (pHash)",
        "params_schema": {"type": "object", "properties": {
            "max_distance": {"type": "integer", "default": 24, "minimum": 0, "maximum": 64,
                             "title": "Maximum distance (bits of 64)", "title_ja": "許容する差 (64 ビット中)"},
            "min_distance": {"type": "integer", "default": 0, "minimum": 0, "maximum": 64,
                             "title": "Minimum distance (the image must change)", "title_ja": "最低限の差"}}},
    },
}


def _first_image(output: dict[str, Any] | None) -> Path | None:
    for item in (output or {}).get("media") or []:
        if item.get("kind") == "image" and item.get("path"):
            return Path(item["path"])
    return None


def _prompt(output: dict[str, Any]) -> str:
    case = output.get("case") or {}
    for item in output.get("media") or []:
        prompt = (item.get("meta") or {}).get("prompt")
        if prompt:
            return str(prompt)
    return str(case.get("prompt") or (case.get("input") or {}).get("prompt") or "")


def image_models_dir(session: Any) -> Path | None:
    """``models/image/`` of the workspace the check runs in (the host gives the session its workspace)."""
    workspace = session.workspace
    return Path(workspace.home) / "models" / "image" if workspace is not None else None


def find_clip_model(check: dict[str, Any], models_dir: Path | None) -> Path | None:
    """The CLIP folder the check names (``models/image/clip/<name>``), else the first one there."""
    root = (Path(models_dir) / "clip") if models_dir else None
    if not root or not root.is_dir():
        return None
    if check.get("model"):
        named = root / Path(str(check["model"])).name
        return named if (named / "config.json").is_file() else None
    for candidate in sorted(root.iterdir()):
        if (candidate / "config.json").is_file():
            return candidate
    return None


def clip_score(image_path: Path, prompt: str, model_dir: Path, session: Any) -> float:
    import torch
    from PIL import Image
    from transformers import CLIPModel, CLIPProcessor

    cache = session.cache.setdefault("image_clip", {})
    key = str(model_dir)
    if key not in cache:
        cache.clear()
        cache[key] = (CLIPModel.from_pretrained(model_dir).eval(), CLIPProcessor.from_pretrained(model_dir))
    model, processor = cache[key]
    with Image.open(image_path) as im, torch.inference_mode():
        inputs = processor(text=[prompt], images=im.convert("RGB"), return_tensors="pt", padding="max_length",
                           truncation=True)
        out = model(**inputs)
        image = out.image_embeds / out.image_embeds.norm(dim=-1, keepdim=True)
        text = out.text_embeds / out.text_embeds.norm(dim=-1, keepdim=True)
        return float(100.0 * (image * text).sum())


def run_check(check: dict[str, Any], output: dict[str, Any], reference: dict[str, Any] | None,
              session: Any) -> dict[str, Any] | None:
    """The ``regression_check`` hook body; None for a check type that is not ours."""
    kind = check.get("type")
    image = _first_image(output)
    if kind not in CHECKS:
        return None
    if image is None:
        return {"passed": False, "score": None, "detail": "no image in the output"}
    if kind == "phash_distance":
        from lora_factory.plugins.image.phash import distance, phash_file, to_hex

        previous = _first_image(reference)
        if previous is None:
            return {"passed": True, "score": None, "detail": "no previous version to compare with"}
        a, b = phash_file(image), phash_file(previous)
        d = distance(a, b)
        low, high = int(check.get("min_distance", 0)), int(check.get("max_distance", 24))
        return {"passed": low <= d <= high, "score": float(d),
                "detail": {"distance": d, "max_distance": high, "min_distance": low, "hash": to_hex(a),
                           "previous_hash": to_hex(b)}}
    model_dir = find_clip_model(check, image_models_dir(session))
    if model_dir is None:
        return {"passed": True, "score": None, "skipped": True,
                "detail": "no CLIP model in models/image/clip/: check skipped"}
    score = clip_score(image, _prompt(output), model_dir, session)
    minimum = float(check.get("min_score", 20.0))
    return {"passed": score >= minimum, "score": round(score, 3), "detail": {"min_score": minimum, "model": model_dir.name}}
