"""One job on 2 ranks against 1 rank with the doubled batch, on the CPU (2 gloo ranks): throughput and loss agreement.

Each run is a real train job (the job worker, torch's elastic launcher, ``run_rank`` in each rank) in a
temporary workspace; the job asks the scheduler for its devices (``cpu:0,cpu:1``: simulated ones, declared
with ``LORA_FACTORY_DEVICES=cpu:N``; GPU ids: those ``nvidia-smi`` lists). Printed per modality: the steps, the training time rank 0 measured (model loading
excluded), samples/s at the effective batch, the ratio 2 ranks / 1 rank, and the largest relative
difference between the two loss curves (0 up to float noise: both train the very same global batches).

On a 2-core machine two ranks share the cores one rank already uses, so throughput does not double here;
the point is that the launcher and the gradient sync cost little and the curves agree.
``benchmarks/gpu_scale.py`` is the same on GPUs.

    .venv/bin/python benchmarks/scale.py [--modalities text image audio] [--steps 8] [--batch 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def build(home: Path, modality: str) -> tuple[Path, Path, dict[str, Any]]:
    """A tiny model and a small dataset in ``home``; the modality's parameters (per-device batch set later)."""
    if modality == "text":
        from lora_factory.plugins.text.tiny_model import build_tiny_text_model
        from tests.text.conftest import MEMO_ROWS, write_chat_jsonl

        base = home / "models/text/tiny"
        build_tiny_text_model(base, seed=0)
        (home / "datasets/text").mkdir(parents=True)
        data = write_chat_jsonl(home / "datasets/text/memo.jsonl", MEMO_ROWS * 4)
        return base, data, {"learning_rate": 5e-3, "num_epochs": 100, "save_steps": 1000, "grad_accum": 1}
    if modality == "image":
        from lora_factory.plugins.image.tiny_model import build_tiny_image_model
        from tests.image.conftest import make_dataset

        base = home / "models/image/tiny-sd15"
        build_tiny_image_model(base, "sd15", seed=0)
        data = make_dataset(home / "datasets/image/chars", n=8)
        return base, data, {"rank": 4, "alpha": 4, "learning_rate": 5e-3, "grad_accum": 1, "cache_latents": True,
                            "sample_every_n_steps": 0, "sample_steps": 1, "save_every_n_steps": 1000,
                            "mixed_precision": "no"}
    from lora_factory.plugins.audio.tiny_model import build_tiny_tts_model
    from tests.audio.synthetic import write_clip_dataset

    base = home / "models/audio/tiny-tts"
    build_tiny_tts_model(base, seed=0)
    texts = ["こんにちは。", "今日はいい天気ですね。", "東京に行きます。", "猫が好きです。"] * 2
    data = write_clip_dataset(home / "datasets/audio/v", texts, seconds=0.5)
    return base, data, {"gradient_accumulation": 1, "warmup_ratio": 0.0, "save_every": 1000, "sample_every": 0,
                        "sample_max_seconds": 0.3}


def run_job(home: Path, modality: str, base: Path, data: Path, params: dict[str, Any], devices: str,
            name: str) -> dict[str, Any]:
    from lora_factory.core.jobs.scheduler import JobManager
    from lora_factory.core.jobs.store import JobStore
    from lora_factory.core.plugin_host.host import load_plugin_host
    from lora_factory.core.storage.workspace import Workspace

    host = load_plugin_host(home)
    ws = Workspace(home, host.modalities().keys())
    jobs = JobManager(ws, JobStore(ws.db_path))
    spec = {"base_model": str(base), "dataset": str(data), "base_model_ref": ws.relative(base),
            "dataset_ref": ws.relative(data), "dataset_options": {}, "output_name": name, "preset": "quick",
            "params": params}
    spec = host.call("resolve_train_spec", modality, spec=spec) or spec
    wanted = [d for d in devices.split(",") if d]
    simulated = [int(d.split(":", 1)[1]) for d in wanted if d.startswith("cpu:")]
    if simulated:  # the scheduler learns simulated devices from the environment (GPUs: from nvidia-smi)
        os.environ["LORA_FACTORY_DEVICES"] = f"cpu:{max(simulated) + 1}"
    job = jobs.wait(jobs.submit("train", modality, spec, output_name=name, devices=wanted or 0), timeout=1800)
    if job["status"] != "completed":
        raise SystemExit(f"{modality} {devices}: {job['status']} {json.dumps(job['error'], ensure_ascii=False)}")
    records = [json.loads(line) for line in (ws.run_dir(job["id"]) / "metrics.jsonl").read_text().splitlines()]
    first, last = records[0], records[-1]
    steps = last["step"] - first["step"]
    seconds = max(last["elapsed"] - first["elapsed"], 1e-9)  # after the first step: compile / warm-up excluded
    return {"losses": [r["loss"] for r in records], "steps": last["step"], "steps_per_s": steps / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--modalities", nargs="+", default=["text", "image", "audio"])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=2, help="per-device batch of the 2-rank run")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    print(f"{'modality':8} {'ranks':>5} {'batch/dev':>9} {'eff.batch':>9} {'steps/s':>8} {'samples/s':>9}  "
          f"{'2r/1r':>6}  max rel. loss diff")
    for modality in args.modalities:
        with tempfile.TemporaryDirectory() as tmp:
            home = Path(tmp) / "ws"
            base, data, params = build(home, modality)
            common = {**params, "max_steps": args.steps}
            two = run_job(home, modality, base, data, {**common, "batch_size": args.batch}, "cpu:0,cpu:1", "two")
            one = run_job(home, modality, base, data, {**common, "batch_size": 2 * args.batch}, "cpu:0", "one")
        eff = 2 * args.batch
        diff = max(abs(a - b) / max(abs(b), 1e-12) for a, b in zip(two["losses"], one["losses"], strict=True))
        ratio = two["steps_per_s"] / one["steps_per_s"]
        print(f"{modality:8} {1:>5} {2 * args.batch:>9} {eff:>9} {one['steps_per_s']:>8.2f} "
              f"{one['steps_per_s'] * eff:>9.1f}")
        print(f"{modality:8} {2:>5} {args.batch:>9} {eff:>9} {two['steps_per_s']:>8.2f} "
              f"{two['steps_per_s'] * eff:>9.1f}  {ratio:>6.2f}  {diff:.2e}", flush=True)


if __name__ == "__main__":
    main()
