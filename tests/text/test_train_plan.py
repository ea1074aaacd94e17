"""Before a run starts: the equivalent commands (「コマンドを表示」) and the estimate (steps, time, memory).

The command test parses the shown CLI line with the CLI's own parser and checks it rebuilds the very
request; the step estimate is checked against the step count a real training run reports; the time
against recorded metrics; the memory against the tensors torch loads.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lora_factory.app import create_app
from lora_factory.cli import build_parser, train_request
from lora_factory.core.jobs.train_plan import measured_speed, memory_estimate, time_estimate, total_steps
from tests.text.conftest import MEMO_ROWS, make_ctx, write_chat_jsonl


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, tiny_workspaces) -> TestClient:
    home = tmp_path_factory.mktemp("plan") / "ws"
    tiny_workspaces.copy(home, ("text", "--out", "models/text/tiny"))
    write_chat_jsonl(home / "datasets" / "text" / "memo.jsonl", MEMO_ROWS)
    with TestClient(create_app(home, start_scheduler=False)) as c:
        yield c


BODY = {"modality": "text", "base_model": "models/text/tiny", "dataset": "datasets/text/memo.jsonl",
        "output_name": "my adapter", "preset": "quick", "trust_remote_code": False,
        "params": {"rank": 8, "learning_rate": 0.001, "lr_scheduler": "cosine", "method": "dpo", "beta": None,
                   "target_modules": ["q_proj", "v_proj"], "note": "16", "label": "it's \"quoted\" 日本語"}}


def test_the_shown_cli_line_parses_back_to_the_same_request(client: TestClient) -> None:
    res = client.post("/api/train/command", json=BODY)
    assert res.status_code == 200, res.text
    shown = res.json()
    argv = shlex.split(shown["cli"])
    assert argv[:2] == ["lora-factory", "train"] and "--method" in argv
    args = build_parser(with_plugins=False).parse_args(argv[1:])
    assert args.func.__name__ == "cmd_train"
    # devices: None is "the default" (the form sends no devices key when the picker is left on it)
    assert train_request(args).model_dump(exclude_none=True) == BODY
    assert Path(args.home) == client.app.state.services.workspace.home
    curl = shlex.split(shown["curl"])
    assert curl[:3] == ["curl", "-X", "POST"] and curl[3].endswith("/train/start")
    assert json.loads(curl[curl.index("-d") + 1]) == BODY


def test_steps_follow_max_steps_or_epochs() -> None:
    assert total_steps(8, {"num_epochs": 30, "max_steps": 60, "batch_size": 4, "grad_accum": 1}) | {} == {
        "samples": 8, "batch_size": 4, "grad_accum": 1, "epochs": 30.0, "max_steps": 60, "steps_per_epoch": 2,
        "total_steps": 60, "decided_by": "max_steps", "epochs_covered": 30.0}
    steps = total_steps(10, {"num_epochs": 3, "max_steps": -1, "batch_size": 4, "grad_accum": 2})
    assert (steps["steps_per_epoch"], steps["total_steps"], steps["decided_by"]) == (2, 6, "epochs")
    # kohya's images × repeats count as samples
    assert total_steps(5 * 10, {"num_epochs": 2, "max_steps": -1, "batch_size": 2})["total_steps"] == 50


def test_estimated_steps_are_the_steps_a_real_run_takes(client: TestClient, tmp_path: Path) -> None:
    params = {"num_epochs": 2, "max_steps": -1, "batch_size": 3, "grad_accum": 2, "save_steps": 1000}
    res = client.post("/api/train/estimate", json=dict(BODY, output_name="est", params=params))
    assert res.status_code == 200, res.text
    est = res.json()
    assert est["steps"]["samples"] == len(MEMO_ROWS) and est["steps"]["decided_by"] == "epochs"
    assert est["time"] == {"seconds": None, "source": "none"}  # no past run on this model yet

    from lora_factory.plugins.text.presets import resolve_train_spec
    from lora_factory.plugins.text.train import train_text_adapter

    home = client.app.state.services.workspace.home
    ctx = make_ctx(tmp_path, "steps")
    spec = {"base_model": str(home / "models/text/tiny"), "dataset": str(home / "datasets/text/memo.jsonl"),
            "dataset_options": {}, "preset": "quick", "params": params, "output_name": "est"}
    train_text_adapter(resolve_train_spec(spec), ctx)
    assert ctx.records[-1]["max_steps"] == est["steps"]["total_steps"] == 4


def test_time_comes_from_past_jobs_recorded_speed(tmp_path: Path) -> None:
    run = tmp_path / "j1"
    run.mkdir()
    records = [{"step": 1, "elapsed": 2.0}, {"step": 6, "elapsed": 4.5}, {"step": 11, "elapsed": 7.0}]
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    jobs = [{"id": "other", "status": "completed", "spec": {"base_model_ref": "models/text/other"}},
            {"id": "j1", "status": "completed", "spec": {"base_model_ref": "models/text/tiny",
                                                          "params": {"batch_size": 2, "grad_accum": 1}}}]
    speed = measured_speed(jobs, lambda job_id: tmp_path / job_id, "models/text/tiny")
    assert speed == {"samples_per_s": 4.0, "load_s": 2.0, "jobs": ["j1"]}  # 10 steps × 2 rows in 5 s
    steps = total_steps(40, {"num_epochs": 2, "max_steps": -1, "batch_size": 4, "grad_accum": 1})
    assert time_estimate(steps, speed)["seconds"] == 20 * 4 / 4.0 + 2.0
    assert measured_speed(jobs, lambda job_id: tmp_path / job_id, "models/text/none") is None


def test_memory_counts_the_models_tensors_and_warns_when_it_will_not_fit(client: TestClient) -> None:
    from safetensors.torch import load_file

    model = client.app.state.services.workspace.home / "models/text/tiny"
    numel = sum(t.numel() for f in model.glob("*.safetensors") for t in load_file(f).values())
    params = {"rank": 8, "batch_size": 4, "max_length": 64, "quantization": "none"}
    cpu = memory_estimate(model, params, "cpu", 64 * 1024**3)
    assert cpu["parameters"] == numel and cpu["breakdown"]["weights_bytes"] == numel * 4
    assert cpu["precision"] == "fp32" and cpu["fits"] is True
    gpu = memory_estimate(model, params, "gpu", None)
    assert gpu["breakdown"]["weights_bytes"] == numel * 2 and gpu["fits"] is None
    q = memory_estimate(model, dict(params, quantization="4bit"), "gpu", 1024**3)
    assert q["precision"] == "4bit" and q["breakdown"]["weights_bytes"] < gpu["breakdown"]["weights_bytes"] / 3
    longer = memory_estimate(model, dict(params, max_length=512), "cpu", None)
    assert longer["breakdown"]["activations_bytes"] == 8 * cpu["breakdown"]["activations_bytes"]
    small = memory_estimate(model, params, "cpu", cpu["total_bytes"] - 1)
    assert small["fits"] is False

    # the route warns with words when the machine's memory is too small
    from lora_factory.core.jobs import train_plan

    original = train_plan.available_memory
    train_plan.available_memory = lambda system: ("cpu", 1024)
    try:
        est = client.post("/api/train/estimate", json=dict(BODY, output_name="fits", params={"batch_size": 2})).json()
    finally:
        train_plan.available_memory = original
    assert est["memory"]["fits"] is False
    warning = next(w for w in est["warnings"] if w["code"] == "MEMORY_WILL_NOT_FIT")
    assert "RAM" in warning["message_ja"] and "GiB" in warning["message"]
    # quick preset: max_steps 60 wins over num_epochs 30 on 8 rows, and it is said
    assert est["steps"]["decided_by"] == "max_steps" and any(w["code"] == "MAX_STEPS_WINS" for w in est["warnings"])


def test_dry_run_prints_the_estimate_and_queues_nothing(client: TestClient, capsys: pytest.CaptureFixture[str]) -> None:
    from lora_factory.cli import main

    home = client.app.state.services.workspace.home
    argv = shlex.split(client.post("/api/train/command", json=dict(BODY, output_name="dry", params={"max_steps": 7})).json()["cli"])
    assert main([*argv[1:], "--dry-run"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["steps"]["total_steps"] == 7 and printed["memory"]["parameters"] > 0
    assert not client.app.state.services.store.list(kind="train")
    assert not (home / "lora_adapters" / "text" / "dry").exists()
