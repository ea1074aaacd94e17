"""The Trainer bridge: every logged step reaches ``ctx.progress``; the job log gets step lines on a time budget."""

from __future__ import annotations

import pytest

from lora_factory.kit.trainer import TrainerBridge


def _steps(bridge: TrainerBridge, steps: int, stop_at: int | None = None) -> None:
    from transformers import TrainerControl, TrainerState

    callback = bridge.callback()
    state, control = TrainerState(max_steps=steps), TrainerControl()
    callback.on_train_begin(None, state, control)
    for step in range(1, steps + 1):
        state.global_step, state.epoch = step, step / steps
        if step == stop_at:
            bridge.ctx.request_stop()
        callback.on_step_end(None, state, control)
        callback.on_log(None, state, control, logs={"loss": 1.0 / step, "learning_rate": 1e-3, "grad_norm": 0.5})
        if control.should_training_stop:
            return


def _step_lines(ctx) -> list[int]:
    return [int(line.split()[1].split("/")[0]) for line in ctx.lines if line.startswith("step ")]


@pytest.mark.parametrize("interval, lines", [(3600.0, [1, 6]), (0.0, [1, 2, 3, 4, 5, 6])])
def test_every_step_is_recorded_and_the_log_is_paced(tmp_path, ctx_factory, interval, lines):
    ctx = ctx_factory(tmp_path, "bridge")
    _steps(TrainerBridge(ctx, log_interval=interval), 6)
    assert [r["step"] for r in ctx.records] == [1, 2, 3, 4, 5, 6]  # metrics.jsonl: the chart needs every point
    assert _step_lines(ctx) == lines  # the first, the last, and one per interval between


def test_the_step_a_stop_was_asked_at_is_logged(tmp_path, ctx_factory):
    ctx = ctx_factory(tmp_path, "bridge_stop")
    bridge = TrainerBridge(ctx, log_interval=3600.0)
    _steps(bridge, 10, stop_at=4)
    assert bridge.stopped and [r["step"] for r in ctx.records] == [1, 2, 3, 4]
    assert _step_lines(ctx) == [1, 4] and any("stop requested at step 4" in line for line in ctx.lines)
