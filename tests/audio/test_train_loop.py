"""The audio training loops give the same losses step for step as the hand-written loops they replaced.

``RECORDED_*`` are the per-step losses the hand-written loops (plain ``loss.backward()``,
``clip_grad_norm_``, ``optimizer.step()``) printed on the tiny models (seed 42, CPU, fp32) before the
loops moved onto ``accelerate.Accelerator``; the resumed values are the TTS loop's losses after resuming
from its step-2 checkpoint (optimizer state included, so they equal the uninterrupted run's).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lora_factory.core.jobs.context import JobContext
from lora_factory.core.storage.workspace import Workspace
from lora_factory.plugins import audio as plugin
from tests.audio.synthetic import write_clip_dataset

TEXTS = ["こんにちは。", "今日はいい天気ですね。", "1,100円です。", "東京に行きます。"]
RECORDED_TTS = [7.326178073883057, 6.569614887237549, 5.668473243713379, 5.3323822021484375]
RECORDED_TTS_RESUMED = [5.668473243713379, 5.3323822021484375]
RECORDED_ASR = [7.70289421081543, 7.523718595504761, 7.433277606964111]


def _ctx(ws: Workspace, name: str, **kwargs) -> JobContext:
    return JobContext(name, ws, ws.home / "runs" / name, ws.home / "logs" / f"{name}.log", kind="train",
                      modality="audio", **kwargs)


def _losses(ctx: JobContext) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in map(json.loads, ctx.metrics_path.read_text().splitlines())]


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    ws = Workspace(tmp_path / "ws")
    ws.ensure(["audio"])
    return ws


def test_tts_losses_match_the_hand_written_loop(workspace: Workspace, tiny_tts: Path) -> None:
    voice = write_clip_dataset(workspace.datasets_dir("audio") / "v", TEXTS, seconds=0.5)
    base = workspace.models_dir("audio") / "tiny-tts"
    shutil.copytree(tiny_tts, base)
    spec = plugin.resolve_train_spec(modality="audio", spec={
        "base_model": str(base), "dataset": str(voice), "preset": "quick", "output_name": "same",
        "params": {"max_steps": 4, "batch_size": 2, "gradient_accumulation": 2, "warmup_ratio": 0.25,
                   "max_grad_norm": 0.5, "save_every": 2, "sample_every": 0, "sample_max_seconds": 0.3}})
    first = _ctx(workspace, "tts-a")
    plugin.train(modality="audio", spec=spec, ctx=first)
    assert [s for s, _ in _losses(first)] == [1, 2, 3, 4]
    assert [loss for _, loss in _losses(first)] == pytest.approx(RECORDED_TTS, rel=1e-4, abs=1e-6)

    second = _ctx(workspace, "tts-b", resume_checkpoint=first.checkpoint_dir / "checkpoint-2")
    plugin.train(modality="audio", spec=spec, ctx=second)
    assert [s for s, _ in _losses(second)] == [3, 4]
    assert [loss for _, loss in _losses(second)] == pytest.approx(RECORDED_TTS_RESUMED, rel=1e-4, abs=1e-6)


def test_asr_losses_match_the_hand_written_loop(workspace: Workspace, tiny_asr: Path) -> None:
    voice = write_clip_dataset(workspace.datasets_dir("audio") / "a", TEXTS, seconds=0.6)
    base = workspace.models_dir("audio") / "tiny-whisper"
    shutil.copytree(tiny_asr, base)
    spec = plugin.resolve_train_spec(modality="audio", spec={
        "base_model": str(base), "dataset": str(voice), "preset": "quick", "output_name": "asr",
        "params": {"max_steps": 3, "batch_size": 2, "gradient_accumulation": 2, "eval_fraction": 0.25,
                   "max_grad_norm": 0.5}})
    ctx = _ctx(workspace, "asr")
    plugin.train(modality="audio", spec=spec, ctx=ctx)
    assert [s for s, _ in _losses(ctx)] == [1, 2, 3]
    assert [loss for _, loss in _losses(ctx)] == pytest.approx(RECORDED_ASR, rel=1e-4, abs=1e-6)
