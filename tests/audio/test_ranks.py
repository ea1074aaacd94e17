"""One TTS job across two simulated devices (2 gloo ranks): the same loss curve as one process with the
per-device batch doubled (each rank's share weighted by its loss tokens), rank 0 alone writes, and the
adapter loads in plain peft. One 2-rank job (~40 s on a quiet 2-core machine), its worker and ranks spawned
as on Windows or beside a GPU (the text and image rank tests fork them from a warm worker)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lora_factory.core.jobs.context import JobContext
from lora_factory.plugins import audio as plugin
from tests.audio.synthetic import write_clip_dataset
from tests.ranks_support import JobRunner, copy_into

TEXTS = ["こんにちは。", "今日はいい天気ですね。", "1,100円です。", "東京に行きます。", "猫が好きです。"]
PARAMS = {"max_steps": 3, "gradient_accumulation": 1, "warmup_ratio": 0.0, "max_grad_norm": 0.5, "save_every": 2,
          "sample_every": 0, "sample_max_seconds": 0.3}


def test_tts_two_ranks_match_one_rank_with_the_doubled_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             tiny_tts: Path, request: pytest.FixtureRequest) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    home = tmp_path / "ws"
    runner = JobRunner(home, monkeypatch, warm=False)  # the spawned ranks of Windows and GPU machines
    request.addfinalizer(runner.close)
    base = copy_into(home, tiny_tts, "audio", "models")
    voice = write_clip_dataset(home / "datasets" / "audio" / "v", TEXTS, seconds=0.5)
    job = runner.run("audio", base, voice, {**PARAMS, "batch_size": 1}, "two", "cpu:0,cpu:1")
    assert job["status"] == "completed", job["error"]
    assert "ranks started as new processes" in runner.log(job, 0)
    two = runner.losses(job["id"])

    spec = plugin.resolve_train_spec(modality="audio", spec={
        "base_model": str(base), "dataset": str(voice), "preset": "quick", "output_name": "one",
        "params": {**PARAMS, "batch_size": 2}})
    ctx = JobContext("one", runner.workspace, home / "runs" / "one", home / "logs" / "one.log", kind="train",
                     modality="audio")
    plugin.train(modality="audio", spec=spec, ctx=ctx)
    one = [(r["step"], r["loss"]) for r in map(json.loads, ctx.metrics_path.read_text().splitlines())]
    assert [s for s, _ in two] == [s for s, _ in one] == [1, 2, 3]
    assert [loss for _, loss in two] == pytest.approx([loss for _, loss in one], rel=1e-4)
    assert job["result"]["distributed"]["effective_batch"] == 2

    adapter = home / "lora_adapters" / "audio" / "two"
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(base)), str(adapter))
    assert any("lora_B" in name and param.abs().sum() > 0 for name, param in model.named_parameters())
