"""One text job across two simulated devices (2 gloo ranks on the CPU), as the job worker launches it.

The 2-rank run (per-device batch 2) and a 1-rank run with the batch doubled (4), same seed and data,
give the same loss curve; rank 0 alone writes; the adapter loads in plain peft. A rank killed mid-run
fails the job within seconds naming it, and the job resumes from its last checkpoint across 2 ranks;
a cancel ends every rank. Each 2-rank job starts three Python processes with torch: ~40 s on a quiet
2-core machine, so the file keeps to three of them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.ranks_support import JobRunner, copy_into, until
from tests.text.conftest import make_ctx

PARAMS = {"max_steps": 4, "save_steps": 2, "learning_rate": 5e-3, "num_epochs": 30}
TWO = "cpu:0,cpu:1"


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path, memo_dataset: Path) -> Iterator[JobRunner]:
    """One workspace and job manager for the file, its scheduler loop running, as a server keeps them: the
    warm process imports torch, transformers and peft once (about 8 s of CPU) for the file's three jobs."""
    home = tmp_path_factory.mktemp("text-ranks") / "ws"
    with pytest.MonkeyPatch.context() as monkeypatch:
        runner = JobRunner(home, monkeypatch)
        runner.base = copy_into(home, tiny_model, "text", "models")
        runner.dataset = copy_into(home, memo_dataset, "text", "datasets")
        runner.jobs.start_background(interval=0.2)
        try:
            yield runner
        finally:
            runner.close()


def rank_pids(runner: JobRunner, job: dict) -> dict[int, int]:
    """Rank -> pid, from the ranks' own first log lines."""
    pids = {}
    for rank in (0, 1):
        try:
            text = runner.log(job, rank)
        except OSError:
            continue
        for line in text.splitlines():
            if f"rank {rank}/2 started (pid " in line:
                pids[rank] = int(line.split("(pid ")[1].split(",")[0])
    return pids


def test_two_ranks_match_one_rank_with_the_doubled_batch(runner: JobRunner, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from lora_factory.plugins.text.presets import resolve_train_spec
    from lora_factory.plugins.text.train import train_text_adapter

    job = runner.run("text", runner.base, runner.dataset, {**PARAMS, "batch_size": 2}, "two", TWO)
    assert job["status"] == "completed", job["error"]
    two = runner.losses(job["id"])

    spec = resolve_train_spec({"base_model": str(runner.base), "dataset": str(runner.dataset), "preset": "quick",
                               "params": {**PARAMS, "batch_size": 4}, "output_name": "one"})
    ctx = make_ctx(tmp_path / "ref", "one_rank")
    train_text_adapter(spec, ctx)
    one = [(r["step"], r["loss"]) for r in ctx.records]
    assert [s for s, _ in two] == [s for s, _ in one] == [1, 2, 3, 4]  # rank 0 alone wrote metrics.jsonl
    assert [loss for _, loss in two] == pytest.approx([loss for _, loss in one], rel=1e-4)

    result = job["result"]
    assert result["distributed"]["effective_batch"] == 4 and result["distributed"]["world_size"] == 2
    assert job["metrics"]["effective_batch"] == 4 and job["metrics"]["world_size"] == 2
    run_dir = runner.workspace.run_dir(job["id"])
    assert json.loads((run_dir / "strategy.json").read_text())["used"] == "ddp"
    assert "rank 1/2 started" in runner.log(job, 1) and "rank 0/2 started" in runner.log(job, 0)
    if runner.jobs.warm is not None:  # the worker was forked warm: its ranks are forked from it, not spawned
        assert "ranks forked from this warm worker" in runner.log(job, 0)
    from lora_factory.core.jobs.views import JobViews  # what GET /api/jobs/{id}/log?rank=1 answers

    view = JobViews(runner.workspace, runner.store, runner.jobs, None).log_tail(job["id"], 50, rank=1)
    assert view["ranks"] == [0, 1] and any("rank 1/2 started" in line for line in view["lines"])
    adapter = runner.home / "lora_adapters" / "text" / "two"
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(runner.base)), str(adapter))
    assert any("lora_A" in name for name, _ in model.named_parameters())


def test_a_killed_rank_fails_the_job_naming_it_and_the_job_resumes(runner: JobRunner) -> None:
    params = {**PARAMS, "max_steps": 40, "save_steps": 2, "batch_size": 2}
    job_id = runner.submit("text", runner.base, runner.dataset, params, "killed", TWO)
    until(lambda: (runner.store.get(job_id)["step"] or 0) >= 3, timeout=240)  # the fixture's loop runs it
    job = runner.store.get(job_id)
    pids = rank_pids(runner, job)
    victim = psutil.Process(pids[1])
    victim.kill()
    killed_at = time.monotonic()
    until(lambda: runner.store.get(job_id)["status"] != "running", timeout=60)
    assert time.monotonic() - killed_at < 60
    job = runner.store.get(job_id)
    assert job["status"] == "failed"
    assert job["error"]["code"] == "RANK_FAILED" and job["error"]["detail"]["rank"] == 1
    assert "Rank 1" in job["error"]["message"] and job["error"]["detail"]["last_lines"]
    assert not psutil.pid_exists(pids[0]) or psutil.Process(pids[0]).status() == psutil.STATUS_ZOMBIE

    runner.jobs.resume(job_id)
    until(lambda: runner.store.get(job_id)["status"] not in ("queued", "running"), timeout=240)
    job = runner.store.get(job_id)
    assert job["status"] == "completed", job["error"]
    steps = [s for s, _ in runner.losses(job_id)]
    assert steps[-1] == 40 and "resuming from checkpoint-" in runner.log(job)


def test_cancel_ends_every_rank(runner: JobRunner) -> None:
    params = {**PARAMS, "max_steps": 400, "save_steps": 1000, "batch_size": 2}
    job_id = runner.submit("text", runner.base, runner.dataset, params, "canceled", TWO)
    until(lambda: (runner.store.get(job_id)["step"] or 0) >= 2, timeout=240)  # the fixture's loop runs it
    pids = rank_pids(runner, runner.store.get(job_id))
    assert set(pids) == {0, 1}
    runner.jobs.cancel(job_id)
    until(lambda: runner.store.get(job_id)["status"] != "running", timeout=60)
    job = runner.store.get(job_id)
    assert job["status"] == "canceled"
    assert (job["step"] or 0) < 400
    for pid in pids.values():
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert any(p.name.startswith("checkpoint-") for p in runner.workspace.run_dir(job_id).joinpath("checkpoints").iterdir())


def test_strategies_that_cannot_run_here_are_clear_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DeepSpeed without the package: 422 at submit; FSDP on CPU ranks: the job's error, never quiet DDP."""
    from lora_factory.kit import LoRAFactoryError
    from lora_factory.plugins.text import strategy
    from lora_factory.plugins.text.presets import read_train_params, resolve_train_spec

    monkeypatch.setattr(strategy, "deepspeed_available", lambda: False)
    with pytest.raises(LoRAFactoryError) as err:
        resolve_train_spec({"preset": "quick", "params": {"strategy": "deepspeed_zero3"}})
    assert err.value.code == "STRATEGY_UNAVAILABLE" and err.value.http_status == 422
    assert "DeepSpeed" in err.value.message_en

    params = read_train_params(resolve_train_spec({"preset": "quick", "params": {"strategy": "fsdp"}})["params"])
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(LoRAFactoryError) as err:
        strategy.strategy_arguments(params, tmp_path)
    assert err.value.code == "STRATEGY_UNAVAILABLE" and "GPU" in err.value.message_en
    monkeypatch.setenv("WORLD_SIZE", "1")  # one device: the strategy does not matter and is recorded so
    assert "fsdp" not in strategy.strategy_arguments(params, tmp_path)
    assert json.loads((tmp_path / "strategy.json").read_text())["used"] == "single"
