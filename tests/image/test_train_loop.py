"""The image training loop gives the same losses step for step as the hand-written loop it replaced.

``RECORDED`` are the per-step losses the hand-written autocast / GradScaler loop printed on the tiny
SD1.5 pipeline (seed 42, CPU, fp32) before the loop moved onto ``accelerate.Accelerator``; the resumed
values are that loop's losses after resuming from its step-2 checkpoint. A loop that drops a gradient
accumulation, clips differently, steps the scheduler at another time or resumes other state fails here.
"""

from __future__ import annotations

import pytest

from tests.image.conftest import train_tiny

PARAMS = {"max_steps": 4, "rank": 4, "alpha": 4, "train_text_encoder": True, "learning_rate": 5e-3,
          "grad_accum": 2, "batch_size": 2, "max_grad_norm": 0.05, "lr_scheduler": "cosine", "lr_warmup_steps": 1,
          "flip_aug": True, "cache_latents": False, "sample_every_n_steps": 0, "sample_steps": 1,
          "save_every_n_steps": 2, "save_precision": "fp32", "mixed_precision": "no"}
RECORDED = [1.1370996832847595, 1.18476140499115, 1.1147061586380005, 1.1165732741355896]
RECORDED_RESUMED = [1.1526058912277222, 1.077434778213501]


def test_losses_match_the_hand_written_loop_step_for_step(tmp_path, tiny_sd15, image_dataset):
    result, ctx = train_tiny(tmp_path / "ws", tiny_sd15, image_dataset, PARAMS, "same", "same1")
    losses = [r["loss"] for r in ctx.records]
    assert [r["step"] for r in ctx.records] == [1, 2, 3, 4] and result["steps"] == 4
    assert losses == pytest.approx(RECORDED, rel=1e-4, abs=1e-6)

    checkpoint = ctx.checkpoint_dir / "checkpoint-2"
    resumed, ctx2 = train_tiny(tmp_path / "ws", tiny_sd15, image_dataset, PARAMS, "same", "same2",
                               resume_checkpoint=checkpoint)
    assert [r["step"] for r in ctx2.records] == [3, 4] and resumed["steps"] == 4
    assert [r["loss"] for r in ctx2.records] == pytest.approx(RECORDED_RESUMED, rel=1e-4, abs=1e-6)
