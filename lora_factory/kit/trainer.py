"""The bridge between a training loop and the job: progress, log lines, cancel, checkpoints, resume.

Two shapes of loop, one behaviour for the user:

* transformers' ``Trainer``: :class:`TrainerBridge` gives a ``TrainerCallback`` that forwards each
  logged step to ``ctx.progress`` and turns a cancel (``ctx.should_stop()``) into "save a checkpoint
  and stop" at the next step.
* a hand-written loop (diffusers / accelerate / plain torch): :class:`StepReporter` does the same
  with explicit calls, and writes checkpoints that the host recognises as complete (``COMPLETE``
  marker written last), so a resumed job never starts from a half-written one.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lora_factory.core.jobs.checkpoints import checkpoints, is_complete, latest_checkpoint
from lora_factory.kit import dist

__all__ = ["TrainerBridge", "StepReporter", "latest_checkpoint", "is_complete", "checkpoint_step"]


def checkpoint_step(checkpoint: Path | str | None) -> int:
    """The step number of a ``checkpoint-N`` folder (0 for None)."""
    if not checkpoint:
        return 0
    suffix = Path(checkpoint).name.rsplit("-", 1)[-1]
    return int(suffix) if suffix.isdigit() else 0


class TrainerBridge:
    """State shared between a ``Trainer`` run and the job: history, stop flag, throughput.

    :param token_counter: returns the number of real (non-pad) tokens seen so far, for tokens/s.
    :param extra_metrics: picks a method's own figures out of the Trainer's log dict (DPO's rewards
        and margins, GRPO's mean reward ...); they go to ``ctx.progress`` and the log line with the loss.
    :param log_interval: seconds between two step lines in the job log. Every logged step still goes to
        ``ctx.progress`` (metrics.jsonl: the live chart, the history); the log gets the first step, the
        last one, the step a stop was asked at, and in between one line per interval. Why: with fast
        steps (tens of ms) a line per step is most of the job's own work per step and floods the log tail.
    """

    def __init__(self, ctx: Any, token_counter: Callable[[], int] | None = None,
                 extra_metrics: Callable[[dict[str, Any]], dict[str, float]] | None = None,
                 log_interval: float = 1.0) -> None:
        self.ctx = ctx
        self.token_counter = token_counter or (lambda: 0)
        self.extra_metrics = extra_metrics
        self.log_interval = float(log_interval)
        self.logged_at: float | None = None
        self.history: list[dict[str, Any]] = []
        self.stopped = False
        self.eval_loss: float | None = None
        self.t0: float | None = None
        self.tokens0 = 0
        self.start_step = 0

    def elapsed(self) -> float:
        return max(time.perf_counter() - (self.t0 or time.perf_counter()), 1e-9)

    def tokens_per_s(self) -> float:
        return (self.token_counter() - self.tokens0) / self.elapsed()

    def callback(self) -> Any:
        """A ``transformers.TrainerCallback`` bound to this bridge (transformers imported here)."""
        from transformers import TrainerCallback

        bridge = self
        ctx = self.ctx

        class ProgressCallback(TrainerCallback):
            """Forwards every logged step to ``ctx.progress`` and turns ``ctx.should_stop()`` into a stop."""

            def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
                bridge.t0 = time.perf_counter()
                bridge.tokens0 = bridge.token_counter()
                bridge.start_step = state.global_step

            def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
                logs = logs or {}
                if "loss" not in logs:
                    if "eval_loss" in logs:
                        ctx.log(f"step {state.global_step}: eval_loss={logs['eval_loss']:.4f}")
                        bridge.eval_loss = float(logs["eval_loss"])
                    return
                # first: a method's extractor may also advance the token count (TRL logs ``num_tokens``)
                extra = bridge.extra_metrics(logs) if bridge.extra_metrics else {}
                tps = bridge.tokens_per_s()
                record = {
                    "step": state.global_step,
                    "loss": float(logs["loss"]),
                    "lr": float(logs.get("learning_rate", 0.0)),
                    "epoch": float(logs.get("epoch", state.epoch or 0.0)),
                    "grad_norm": None if logs.get("grad_norm") is None else float(logs["grad_norm"]),
                    "tokens_per_s": round(tps, 2),
                }
                record.update(extra)
                bridge.history.append(record)
                ctx.progress(state.global_step, state.max_steps, loss=record["loss"], lr=record["lr"],
                             epoch=record["epoch"], tokens_per_s=record["tokens_per_s"], grad_norm=record["grad_norm"],
                             **extra)
                now = time.perf_counter()
                if (bridge.logged_at is None or now - bridge.logged_at >= bridge.log_interval or bridge.stopped
                        or state.global_step >= state.max_steps):
                    bridge.logged_at = now
                    more = "".join(f" {k}={v:.4g}" for k, v in extra.items() if isinstance(v, (int, float)))
                    ctx.log(f"step {state.global_step}/{state.max_steps} loss={record['loss']:.4f} "
                            f"lr={record['lr']:.3g} epoch={record['epoch']:.2f} tok/s={tps:.0f}{more}")
                self._check_stop(state, control)  # on_log runs before the save decision of the same step

            def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
                self._check_stop(state, control)
                return control

            def _check_stop(self, state, control) -> None:  # noqa: ANN001
                if bridge.stopped:
                    return
                # several ranks stop at the same step, or the others wait for the stopped one's gradients:
                # rank 0 reads the cancel, every rank learns it through one collective
                if dist.any_rank(ctx.should_stop()):
                    bridge.stopped = True
                    control.should_training_stop = True
                    control.should_save = True  # a checkpoint to resume from
                    ctx.log(f"停止要求を受けました。ステップ {state.global_step} で保存します / stop requested at step "
                            f"{state.global_step}: saving")

        return ProgressCallback()


class StepReporter:
    """Progress, cancel and checkpoints for a hand-written training loop.

    ::

        reporter = StepReporter(ctx, max_steps, save_every=params.save_steps, save_fn=save_lora)
        start = reporter.resume_step()            # 0, or the step of ctx.resume_checkpoint
        for step in range(start + 1, max_steps + 1):
            loss = train_one_step()
            if reporter.step(step, loss, lr=lr):  # True once the user cancelled: a checkpoint was saved
                break

    :param save_fn: ``save_fn(folder)`` writes everything needed to resume into ``folder`` (adapter
        weights, optimizer / scheduler / RNG state ...). The reporter writes into a temporary folder,
        adds the ``COMPLETE`` marker last and renames it to ``checkpoint-<step>``.
    :param keep: how many checkpoints to keep (older ones are deleted once a newer one is complete).
    """

    def __init__(self, ctx: Any, max_steps: int, *, save_every: int = 0,
                 save_fn: Callable[[Path], None] | None = None, keep: int = 3, log_every: int = 1,
                 unit: str = "") -> None:
        self.ctx = ctx
        self.max_steps = int(max_steps)
        self.save_every = int(save_every or 0)
        self.save_fn = save_fn
        self.keep = max(1, int(keep))
        self.log_every = max(1, int(log_every))
        self.unit = unit
        self.stopped = False
        self.history: list[dict[str, Any]] = []
        self.last_saved: Path | None = None
        self._t0 = time.perf_counter()

    def resume_step(self) -> int:
        """The step to continue after (the resumed checkpoint's step, or 0 for a fresh run)."""
        return checkpoint_step(self.ctx.resume_checkpoint)

    def elapsed(self) -> float:
        return max(time.perf_counter() - self._t0, 1e-9)

    def step(self, step: int, loss: float | None = None, **metrics: Any) -> bool:
        """Report one finished optimizer step; save on schedule; True when the loop must stop now.

        On a cancel the checkpoint of this step is saved first, so a resume loses nothing.
        """
        record = {"step": int(step), "loss": None if loss is None else float(loss), **metrics}
        self.history.append(record)
        self.ctx.progress(step, self.max_steps, loss=record["loss"], **metrics)
        if step % self.log_every == 0 or step == self.max_steps:
            shown = " ".join(f"{k}={_short(v)}" for k, v in metrics.items() if v is not None)
            loss_text = f" loss={record['loss']:.4f}" if record["loss"] is not None else ""
            self.ctx.log(f"step {step}/{self.max_steps}{loss_text} {shown}".rstrip())
        if self.ctx.should_stop():
            self.stopped = True
            self.ctx.log(f"停止要求を受けました。ステップ {step} で保存します / stop requested at step {step}: saving")
            self.save_checkpoint(step)
            return True
        if self.save_every and step % self.save_every == 0 and step < self.max_steps:
            self.save_checkpoint(step)
        return False

    def save_checkpoint(self, step: int) -> Path | None:
        """``checkpoint-<step>`` through a temporary folder; the ``COMPLETE`` marker is written last."""
        if self.save_fn is None:
            return None
        root = Path(self.ctx.checkpoint_dir)
        final = root / f"checkpoint-{step}"
        if final.exists() and is_complete(final):
            return final
        tmp = root / f".tmp-checkpoint-{step}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        self.save_fn(tmp)
        (tmp / "COMPLETE").write_text(str(step), encoding="utf-8")
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        self.last_saved = final
        for _, old in checkpoints(root)[:-self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        return final


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
