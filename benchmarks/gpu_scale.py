"""One text job across the GPUs of a machine against one GPU, through the real job worker and launcher.

Prepared for a machine with NVIDIA GPUs and no hub access: a random-weight model of real size (the shapes
of ``gpu_train_text.py``), synthetic Japanese chat. Each run is a train job (the job worker, torch's elastic
launcher, ``run_rank`` in each rank, nccl), so what is measured is what a user gets.

- With N >= 2 GPUs: N ranks at per-device batch B against 1 rank at batch N*B (the same global batches):
  samples/s of each, the speed-up, and the largest relative loss difference (float noise only).
- With 1 GPU: one rank through the launcher (``LORA_FACTORY_ALWAYS_LAUNCH=1``) against the plain worker
  (no launcher), to show the launcher costs nothing.

    .venv/bin/python benchmarks/gpu_scale.py                       # 0.5B, 30 steps, batch 4 per GPU
    .venv/bin/python benchmarks/gpu_scale.py --size 1.5b --strategy fsdp
    .venv/bin/python benchmarks/gpu_scale.py --size tiny --steps 4 --devices cpu:0,cpu:1   # CPU smoke test
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_train_text import build_model, make_dataset  # noqa: E402
from scale import run_job  # noqa: E402


def gpu_ids() -> list[str]:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="0.5b", choices=["tiny", "0.5b", "1.5b"])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=4, help="per-device batch of the N-rank run")
    parser.add_argument("--strategy", default="ddp", choices=["ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3"])
    parser.add_argument("--devices", default=None, help="device ids (default: every GPU nvidia-smi lists)")
    args = parser.parse_args()
    devices = args.devices.split(",") if args.devices else gpu_ids()
    if not devices:
        raise SystemExit("no GPU found (nvidia-smi); use --devices cpu:0,cpu:1 for a CPU smoke test")
    params = {"learning_rate": 1e-4, "num_epochs": 100, "save_steps": 100000, "grad_accum": 1, "max_length": 512,
              "gradient_checkpointing": False, "strategy": args.strategy, "max_steps": args.steps}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "ws"
        base = home / "models/text/base"
        n_params = build_model(base, args.size)
        (home / "datasets/text").mkdir(parents=True)
        data = home / "datasets/text/chat.jsonl"
        make_dataset(data, 64 * args.batch * max(2, len(devices)))
        print(f"model {args.size} ({n_params / 1e6:.0f}M parameters), {args.steps} steps, strategy {args.strategy}")
        if len(devices) >= 2:
            n = len(devices)
            many = run_job(home, "text", base, data, {**params, "batch_size": args.batch}, ",".join(devices), "many")
            one = run_job(home, "text", base, data, {**params, "batch_size": n * args.batch}, devices[0], "one")
            label_many, label_one = f"{n} ranks x batch {args.batch}", f"1 rank x batch {n * args.batch}"
        else:
            os.environ["LORA_FACTORY_ALWAYS_LAUNCH"] = "1"
            many = run_job(home, "text", base, data, {**params, "batch_size": args.batch}, devices[0], "launched")
            os.environ.pop("LORA_FACTORY_ALWAYS_LAUNCH")
            one = run_job(home, "text", base, data, {**params, "batch_size": args.batch}, devices[0], "plain")
            n, label_many, label_one = 1, f"1 rank via launcher x batch {args.batch}", f"no launcher x batch {args.batch}"
    eff = n * args.batch
    diff = max(abs(a - b) / max(abs(b), 1e-12) for a, b in zip(many["losses"], one["losses"], strict=True))
    print(f"{label_one:32} {one['steps_per_s']:7.3f} steps/s {one['steps_per_s'] * eff:8.1f} samples/s")
    print(f"{label_many:32} {many['steps_per_s']:7.3f} steps/s {many['steps_per_s'] * eff:8.1f} samples/s")
    print(f"ratio {many['steps_per_s'] / one['steps_per_s']:.3f}; largest relative loss difference {diff:.2e}")


if __name__ == "__main__":
    main()
