"""Refine an image folder dataset into a new version: captions, tags, duplicates, sizes.

A refinement is a list of operations applied in order to the items (image + caption); the result is
written as a new folder (same ``<repeats>_<concept>`` layout) inside ``ctx.output_dir`` and the host
moves it into ``datasets/image/`` with its lineage. The source folder is never touched.

Operations: ``auto_tag`` (WD v3 tagger, anime), ``auto_caption`` (BLIP / Florence-2, photos),
``edit_tags`` (trigger word, remove / replace / dedupe, cap the count), ``edit_items`` (captions the
user edited in the gallery), ``dedupe_images`` (perceptual hash), ``min_resolution``,
``resize_buckets`` (each image resized and cropped to its training bucket).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic.json_schema import SkipJsonSchema

from lora_factory.kit import LoRAFactoryError, files
from lora_factory.kit.refine import Operation, OperationRegistry, RefineParams, RefineReport
from lora_factory.plugins.image.dataset import DATASET_FORMAT, load_items

MAX_EXAMPLES = 4


_Params = RefineParams


class AutoTagParams(_Params):
    model: str = Field(..., description="a WD v3 tagger in models/image/tagger/<name> (model.onnx + selected_tags.csv)")
    model_path: SkipJsonSchema[str | None] = None
    general_threshold: float = Field(0.35, ge=0.0, le=1.0)
    character_threshold: float = Field(0.85, ge=0.0, le=1.0)
    mode: Literal["replace", "append", "missing_only"] = Field("replace", description="what to do with existing captions")
    include_rating: bool = False
    exclude_tags: list[str] = Field(default_factory=list)


class AutoCaptionParams(_Params):
    model: str = Field(..., description="BLIP or Florence-2 in models/image/captioner/<name>")
    model_path: SkipJsonSchema[str | None] = None
    task: Literal["<CAPTION>", "<DETAILED_CAPTION>", "<MORE_DETAILED_CAPTION>"] = "<DETAILED_CAPTION>"
    prefix: str = Field("", description="BLIP: text the caption starts with, e.g. 'a photo of'")
    max_new_tokens: int = Field(60, ge=4, le=512)
    mode: Literal["replace", "append", "missing_only"] = "replace"
    device: Literal["auto", "cpu"] = "auto"


class EditTagsParams(_Params):
    trigger: str = Field("", description="added in front of every caption")
    remove: list[str] = Field(default_factory=list)
    replace: dict[str, str] = Field(default_factory=dict, description='{"old tag": "new tag"}; "" removes')
    dedupe: bool = True
    max_tags: int = Field(0, ge=0, description="keep only the first N tags; 0 = all")


class ItemEdit(_Params):
    id: str
    text: str


class EditItemsParams(_Params):
    edits: list[ItemEdit] = Field(default_factory=list)


class DedupeImagesParams(_Params):
    threshold: int = Field(6, ge=0, le=32, description="pHash bits that may differ (0 = identical pictures only)")


class MinResolutionParams(_Params):
    min_side: int = Field(512, ge=16, le=8192, description="images with a shorter side are removed")


class ResizeBucketsParams(_Params):
    resolution: int = Field(512, ge=64, le=4096)
    step: int = Field(64, ge=8, le=256)
    upscale: bool = Field(False, description="also enlarge images smaller than their bucket")


TITLES_JA = {
    "model": "モデル", "general_threshold": "一般タグのしきい値", "character_threshold": "キャラクタータグのしきい値",
    "mode": "既存キャプションの扱い", "include_rating": "レーティングタグも付ける", "exclude_tags": "付けないタグ",
    "task": "キャプションの詳しさ", "prefix": "書き出し", "max_new_tokens": "最大トークン数", "device": "デバイス",
    "trigger": "トリガーワード", "remove": "削除するタグ", "replace": "置換するタグ", "dedupe": "重複タグを除去",
    "max_tags": "先頭から残すタグ数", "edits": "編集", "threshold": "しきい値 (ビット)", "min_side": "短辺の最小値 (px)",
    "resolution": "解像度", "step": "刻み", "upscale": "小さい画像も拡大",
}
OPERATIONS = OperationRegistry([
    # ``model_folder``: where under models/image/ a bare model name is looked for
    Operation("auto_tag", AutoTagParams, "自動タグ付け (WD タガー)", "Auto-tag (WD tagger)",
              extra={"uses_model": True, "model_folder": "tagger"}),
    Operation("auto_caption", AutoCaptionParams, "自動キャプション (BLIP / Florence-2)",
              "Auto-caption (BLIP / Florence-2)", extra={"uses_model": True, "model_folder": "captioner"}),
    Operation("edit_tags", EditTagsParams, "タグ編集 (トリガーワード・削除・置換)", "Edit tags (trigger, remove, replace)",
              extra={"uses_model": False}),
    Operation("edit_items", EditItemsParams, "キャプションの個別編集", "Edit captions one by one",
              extra={"uses_model": False}),
    Operation("dedupe_images", DedupeImagesParams, "似た画像の除去 (pHash)", "Remove near-duplicates (pHash)",
              extra={"uses_model": False}),
    Operation("min_resolution", MinResolutionParams, "小さい画像の除去", "Remove small images",
              extra={"uses_model": False}),
    Operation("resize_buckets", ResizeBucketsParams, "バケットサイズへリサイズ", "Resize to buckets",
              extra={"uses_model": False}),
], titles_ja=TITLES_JA)
REFINE_OPERATIONS: dict[str, dict[str, Any]] = OPERATIONS.describe()


@dataclass
class Entry:
    """An item on its way through the operations."""

    rel: str
    source: Path  # the image file to copy (the original, or a resized copy in the output)
    caption: str
    width: int
    height: int
    captioned: bool = True  # has its own caption file (else the caption is the folder's class tokens)
    written: bool = False  # already written into the output folder (resized)


def validate_operations(operations: Any) -> list[dict[str, Any]]:
    """``[{"op", "params"}]`` with every parameter filled in; 422 naming the bad op / field."""
    return OPERATIONS.validate_dicts(operations)


class _Report(RefineReport):
    def __init__(self) -> None:
        super().__init__(MAX_EXAMPLES)
        self.steps: list[dict[str, Any]] = []


def _merge_caption(old: str, new: str, mode: str) -> str:
    if mode == "append" and old:
        from lora_factory.plugins.image.dataset import split_tags
        from lora_factory.plugins.image.tags import dedupe, join_tags

        return join_tags(dedupe(split_tags(old) + split_tags(new)))
    return new


def _open(path: Path) -> Any:
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        return ImageOps.exif_transpose(im).copy()


def op_auto_tag(entries: list[Entry], p: dict[str, Any], ctx: Any, report: _Report, step: tuple[int, int]) -> list[Entry]:
    from lora_factory.plugins.image.tagger import WDTagger
    from lora_factory.plugins.image.tags import remove_tags

    tagger = WDTagger(Path(p["model_path"] or p["model"]))
    for i, entry in enumerate(entries):
        if p["mode"] == "missing_only" and entry.captioned:
            continue
        tags = [t for t, _ in tagger.tag(_open(entry.source), p["general_threshold"], p["character_threshold"],
                                         p["include_rating"])]
        tags = remove_tags(tags, p["exclude_tags"])
        new = _merge_caption(entry.caption, ", ".join(tags), p["mode"])
        if new != entry.caption:
            report.changed["auto_tag"] += 1
            report.example("auto_tag", {"id": entry.rel, "before": entry.caption, "after": new})
            entry.caption = new
        _progress(ctx, step, i + 1, len(entries))
    return entries


def op_auto_caption(entries: list[Entry], p: dict[str, Any], ctx: Any, report: _Report, step: tuple[int, int]) -> list[Entry]:
    from lora_factory.kit import devices
    from lora_factory.plugins.image.captioner import Captioner

    device = devices.pick_device() if p["device"] == "auto" else "cpu"
    captioner = Captioner(Path(p["model_path"] or p["model"]), device=device, task=p["task"],
                          max_new_tokens=p["max_new_tokens"], prefix=p["prefix"])
    for i, entry in enumerate(entries):
        if p["mode"] == "missing_only" and entry.captioned:
            continue
        new = _merge_caption(entry.caption, captioner.caption(_open(entry.source)), p["mode"])
        if new != entry.caption:
            report.changed["auto_caption"] += 1
            report.example("auto_caption", {"id": entry.rel, "before": entry.caption, "after": new})
            entry.caption = new
        _progress(ctx, step, i + 1, len(entries))
        if ctx.should_stop():
            raise LoRAFactoryError("CANCELED", "中止しました。", "Canceled.", 409)
    return entries


def op_edit_tags(entries: list[Entry], p: dict[str, Any], ctx: Any, report: _Report, step: tuple[int, int]) -> list[Entry]:
    from lora_factory.plugins.image.tags import edit_caption

    for entry in entries:
        new = edit_caption(entry.caption, trigger=p["trigger"], remove=p["remove"], replace=p["replace"],
                           deduplicate=p["dedupe"], max_tags=p["max_tags"])
        if new != entry.caption:
            report.changed["edit_tags"] += 1
            report.example("edit_tags", {"id": entry.rel, "before": entry.caption, "after": new})
            entry.caption = new
    return entries


def op_edit_items(entries: list[Entry], p: dict[str, Any], ctx: Any, report: _Report, step: tuple[int, int]) -> list[Entry]:
    by_id = {e.rel: e for e in entries}
    unknown = [edit["id"] for edit in p["edits"] if edit["id"] not in by_id]
    if unknown:
        raise LoRAFactoryError("REFINE_INVALID_PARAMS", f"データセットにない項目です: {', '.join(unknown[:5])}",
                               f"Items not in the dataset: {', '.join(unknown[:5])}", 422,
                               detail={"field": "edits", "unknown": unknown[:50]})
    for edit in p["edits"]:
        entry = by_id[edit["id"]]
        text = " ".join(edit["text"].split())
        if text != entry.caption:
            report.changed["edit_items"] += 1
            report.example("edit_items", {"id": entry.rel, "before": entry.caption, "after": text})
            entry.caption = text
    return entries


def op_dedupe_images(entries: list[Entry], p: dict[str, Any], ctx: Any, report: _Report, step: tuple[int, int]) -> list[Entry]:
    from lora_factory.plugins.image.phash import near_duplicate_groups, phash_file

    hashes = [phash_file(e.source) for e in entries]
    drop: set[int] = set()
    for group in near_duplicate_groups(hashes, p["threshold"]):
        keep = max(group, key=lambda i: (entries[i].width * entries[i].height, -i))  # the largest picture stays
        for i in group:
            if i != keep:
                drop.add(i)
                report.removed["near_duplicate"] += 1
                report.example("near_duplicate", {"id": entries[i].rel, "kept": entries[keep].rel})
    return [e for i, e in enumerate(entries) if i not in drop]


def op_min_resolution(entries: list[Entry], p: dict[str, Any], ctx: Any, report: _Report, step: tuple[int, int]) -> list[Entry]:
    kept = []
    for entry in entries:
        if min(entry.width, entry.height) < p["min_side"]:
            report.removed["too_small"] += 1
            report.example("too_small", {"id": entry.rel, "size": f"{entry.width}x{entry.height}"})
        else:
            kept.append(entry)
    return kept


def op_resize_buckets(entries: list[Entry], p: dict[str, Any], ctx: Any, report: _Report, step: tuple[int, int],
                      out_root: Path | None = None) -> list[Entry]:
    from PIL import Image

    from lora_factory.plugins.image.buckets import assign_bucket, crop_box, make_buckets

    buckets = make_buckets(p["resolution"], p["step"])
    assert out_root is not None
    for i, entry in enumerate(entries):
        bucket = assign_bucket(entry.width, entry.height, buckets)
        if not p["upscale"] and (entry.width < bucket[0] or entry.height < bucket[1]):
            continue
        (rw, rh), box = crop_box(entry.width, entry.height, bucket)
        image = _open(entry.source)
        image = image.resize((rw, rh), Image.Resampling.LANCZOS).crop(box)
        target = out_root / entry.rel
        target.parent.mkdir(parents=True, exist_ok=True)
        _save_like(image, target)
        entry.source, entry.written = target, True
        entry.width, entry.height = bucket
        report.changed["resized"] += 1
        _progress(ctx, step, i + 1, len(entries))
    return entries


def _save_like(image: Any, path: Path) -> None:
    suffix = path.suffix.lower()
    if suffix in (".jpg", ".jpeg"):
        image.convert("RGB").save(path, quality=95)
    elif suffix == ".webp":
        image.save(path, quality=95)
    else:
        image.save(path)


def _progress(ctx: Any, step: tuple[int, int], done: int, total: int) -> None:
    index, count = step
    ctx.progress(index * 1000 + int(1000 * done / max(1, total)), count * 1000)


HANDLERS = {"auto_tag": op_auto_tag, "auto_caption": op_auto_caption, "edit_tags": op_edit_tags,
            "edit_items": op_edit_items, "dedupe_images": op_dedupe_images, "min_resolution": op_min_resolution,
            "resize_buckets": op_resize_buckets}


def run_refine(spec: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """The ``refine_dataset`` hook for images; see the module docstring."""
    source = Path(str(spec["dataset"]))
    operations = validate_operations(spec.get("operations"))
    name = files.safe_name(str(spec.get("output_name") or f"{source.name}-refined"), "output name")
    out_root = Path(ctx.output_dir) / name
    out_root.mkdir(parents=True, exist_ok=True)
    items = load_items(source)
    entries = [Entry(rel=i.rel, source=i.path, caption=i.caption, width=i.width, height=i.height,
                     captioned=i.caption_file is not None) for i in items]
    report = _Report()
    for index, op in enumerate(operations):
        before = len(entries)
        handler = HANDLERS[op["op"]]
        kwargs = {"out_root": out_root} if op["op"] == "resize_buckets" else {}
        entries = handler(entries, op["params"], ctx, report, (index, len(operations)), **kwargs)
        report.steps.append({"op": op["op"], "rows_in": before, "rows_out": len(entries)})
        ctx.log(f"{op['op']}: {before} -> {len(entries)}")
        ctx.progress(index + 1, len(operations))
    if not entries:
        raise LoRAFactoryError("REFINE_EMPTY", "すべての画像が除外されました。条件を見直してください。",
                               "Every image was removed; loosen the conditions.", 422, detail={"removed": dict(report.removed)})
    for entry in entries:
        target = out_root / entry.rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if not entry.written:
            shutil.copy2(entry.source, target)
        if entry.caption:
            target.with_suffix(".txt").write_text(entry.caption + "\n", encoding="utf-8")
    return {
        "rows_in": len(items), "rows_out": len(entries), "removed": dict(report.removed),
        "changed": dict(report.changed), "examples": report.examples, "steps": report.steps,
        "output": {"kind": "folder", "name": name, "format": DATASET_FORMAT},
    }


def resolve_operations(operations: Any, workspace: Any) -> tuple[list[dict[str, Any]], bool]:
    """Server side: validate, resolve model references inside the workspace, say whether the job is GPU-bound.

    A model operation on ``device: auto`` (the captioner; the ONNX tagger has no device choice) makes it
    GPU-bound, as a model-loading refine is for text and audio: the scheduler then queues it with the other GPU
    jobs, and runs it at once where there is no GPU. Asking torch whether CUDA is there would import torch into
    the server (seconds, and libtorch in its memory)."""
    resolved = validate_operations(operations)
    uses_gpu = False
    for op in resolved:
        extra = OPERATIONS[op["op"]].extra
        if not extra["uses_model"]:
            continue
        kind = extra["model_folder"]
        ref = str(op["params"]["model"])
        if "/" not in ref:
            ref = f"models/image/{kind}/{ref}"
        path = workspace.resolve_ref(ref, "models", "image")
        if not path.is_dir():
            raise LoRAFactoryError("MODEL_NOT_FOUND", f"モデル「{ref}」が見つかりません(models/image/{kind}/ に置いてください)。",
                                   f"Model '{ref}' was not found (put it in models/image/{kind}/).", 404,
                                   detail={"field": "model", "op": op["op"], "value": op["params"]["model"]})
        op["params"]["model_path"] = str(path)
        if op["params"].get("device") == "auto":
            uses_gpu = True
    return resolved, uses_gpu
