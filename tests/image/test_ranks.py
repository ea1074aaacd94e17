"""One image job across two simulated devices (2 gloo ranks): the same loss curve as one process with the
per-device batch doubled (same seed, data, noise), latents and text-encoder outputs cached in shares, rank
0 alone writes, and the adapter loads in a plain diffusers pipeline. One 2-rank job (~40 s on a quiet
2-core machine: three Python processes import torch and diffusers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.image.conftest import train_tiny
from tests.ranks_support import JobRunner, copy_into

PARAMS = {"max_steps": 3, "rank": 4, "alpha": 4, "learning_rate": 5e-3, "grad_accum": 2, "cache_latents": True,
          "flip_aug": True, "sample_every_n_steps": 0, "sample_steps": 1, "save_every_n_steps": 2,
          "mixed_precision": "no", "save_precision": "fp32"}


def test_two_ranks_match_one_rank_with_the_doubled_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         tiny_sd15: Path, image_dataset: Path) -> None:
    import torch
    from diffusers import StableDiffusionPipeline

    home = tmp_path / "ws"
    runner = JobRunner(home, monkeypatch)
    base = copy_into(home, tiny_sd15, "image", "models")
    dataset = copy_into(home, image_dataset, "image", "datasets")
    job = runner.run("image", base, dataset, {**PARAMS, "batch_size": 1}, "two", "cpu:0,cpu:1")
    assert job["status"] == "completed", job["error"]
    two = runner.losses(job["id"])

    _, ctx = train_tiny(tmp_path / "ref", tiny_sd15, image_dataset, {**PARAMS, "batch_size": 2}, "one", "one")
    one = [(r["step"], r["loss"]) for r in ctx.records]
    assert [s for s, _ in two] == [s for s, _ in one] == [1, 2, 3]
    assert [loss for _, loss in two] == pytest.approx([loss for _, loss in one], rel=1e-4)
    assert job["result"]["distributed"]["effective_batch"] == 1 * 2 * 2
    log = runner.log(job)
    assert "encoded by rank 0 of 2" in log and "encoded by rank 1 of 2" in runner.log(job, 1)

    pipe = StableDiffusionPipeline.from_pretrained(str(tiny_sd15), safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    before = pipe("mychar", num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np").images
    pipe.load_lora_weights(str(home / "lora_adapters" / "image" / "two"))
    after = pipe("mychar", num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np").images
    assert abs(before - after).max() > 0
