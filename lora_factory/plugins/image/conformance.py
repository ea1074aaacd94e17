"""The image modality's conformance scenario: a two-image kohya folder, a tag-edit refine, one training
step, one generated picture, a regression suite with a pHash check, and a single-file checkpoint
(written from the tiny base itself) imported back."""

from __future__ import annotations

from pathlib import Path

from lora_factory.kit.conformance import Scenario


def _dataset(folder: Path) -> Path:
    from PIL import Image, ImageDraw

    concept = folder / "2_thing"
    concept.mkdir(parents=True, exist_ok=True)
    for i, size in enumerate([(64, 96), (96, 64)]):
        im = Image.new("RGB", size, (200, 40 + 60 * i, 40))
        ImageDraw.Draw(im).ellipse((8, 8, 40, 40), fill=(240, 240, 240))
        im.save(concept / f"img{i}.png")
        (concept / f"img{i}.txt").write_text(f"thing, pose{i}", encoding="utf-8")
    return folder


def _single_file(folder: Path) -> Path:
    from lora_factory.plugins.image.ldm_export import save_sd15_single_file

    base = next(folder.parent.glob("*/models/image/base"))  # the scenario's tiny base, beside this folder
    folder.mkdir(parents=True, exist_ok=True)
    return save_sd15_single_file(base, folder / "tiny_single.safetensors")


def scenario() -> Scenario:
    return Scenario(
        modality="image",
        make_dataset=_dataset,
        train_params={"max_steps": 1, "sample_every_n_steps": 0, "sample_steps": 1},
        infer={"task": "image", "input": {"prompt": "thing"}, "params": {"seed": 1, "steps": 1, "width": 64, "height": 64}},
        suite=[{"input": {"prompt": "thing"}, "params": {"steps": 1, "width": 64, "height": 64},
                "checks": [{"type": "phash_distance", "max_distance": 64}]}],
        refine_operations=[{"op": "edit_tags", "params": {"trigger": "thing"}}],
        make_single_file=_single_file,
        export={"target": "lora_resize", "params": {"rank": 1}},  # the cheapest target: no pipeline is loaded
        timeout_s=600,
    )
