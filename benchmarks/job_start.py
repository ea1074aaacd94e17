"""Job start with and without the warm start (core/jobs/warm_start): submit -> done of short train jobs.

One ``lora-factory serve`` per variant on the same workspace (tiny models built by ``lora-factory tiny-model``),
the variants taking turns; each runs ``--jobs`` one-step train jobs of each modality, one after another, and
the time from submit to completed is kept. The first job of a server is printed apart: with a warm start it
pays the imports as a spawned worker does; the following ones are forked with the libraries loaded.

    .venv/bin/python benchmarks/job_start.py                      # text, image and audio, 3 jobs each, 2 rounds
    .venv/bin/python benchmarks/job_start.py --modalities text --jobs 5 --rounds 3
    .venv/bin/python benchmarks/job_start.py --modalities text --devices 2   # 2-rank jobs (simulated devices)

With ``--devices N`` each job trains as N ranks on N simulated CPU devices (``LORA_FACTORY_DEVICES=cpu:N``):
with the warm start the worker forks its ranks too; without it, the worker and each rank are spawned.

Printed per modality: the median submit -> completed of the later jobs with the warm start and without,
their ratio, and the first job of each.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TRAIN = {  # the smallest real training of each modality, on its tiny model
    "text": {"base_model": "tiny", "dataset": "ja_sample.jsonl", "preset": "quick", "params": {"max_steps": 1}},
    "image": {"base_model": "tiny", "dataset": "chars", "preset": "quick",
              "params": {"max_steps": 1, "resolution": 64, "sample_every_n_steps": 0}},
    "audio": {"base_model": "tiny-tts", "dataset": "voices", "preset": "quick",
              "params": {"max_steps": 1, "sample_every": 0}},
}


def build(home: Path, modalities: list[str]) -> None:
    from lora_factory.cli import main

    builds = {"text": [["text", "--out", "models/text/tiny"]], "image": [["image", "--out", "models/image/tiny"]],
              "audio": [["audio", "--out", "models/audio/tiny-tts"]]}
    for modality in modalities:
        for build_args in builds[modality]:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                assert main(["tiny-model", *build_args, "--home", str(home)]) == 0, build_args
    if "text" in modalities:
        from lora_factory.plugins.text import SAMPLE_DIR

        (home / "datasets" / "text").mkdir(parents=True, exist_ok=True)
        shutil.copy(SAMPLE_DIR / "ja_sample.jsonl", home / "datasets" / "text" / "ja_sample.jsonl")
    if "image" in modalities:
        from tests.image.conftest import make_dataset

        make_dataset(home / "datasets" / "image" / "chars", n=4)
    if "audio" in modalities:
        from tests.audio.synthetic import write_clip_dataset

        write_clip_dataset(home / "datasets" / "audio" / "voices", ["こんにちは。", "ありがとう。", "さようなら。", "おはよう。"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_server(home: Path, warm: str, modalities: list[str], jobs: int, devices: int = 1) -> dict[str, list[float]]:
    port = free_port()
    env = dict(os.environ, LORA_FACTORY_WARM_START=warm, LORA_FACTORY_NO_BROWSER="1")
    if devices > 1:
        env["LORA_FACTORY_DEVICES"] = f"cpu:{devices}"
    server = subprocess.Popen([sys.executable, "-m", "lora_factory.cli", "serve", "--home", str(home), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    times: dict[str, list[float]] = {}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300) as c:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if c.get("/api/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("the server did not start")
                time.sleep(0.1)
            for modality in modalities:
                for i in range(jobs):
                    body = dict(TRAIN[modality], modality=modality, output_name=f"b-{warm}-{time.time_ns()}-{i}")
                    if devices > 1:
                        body["devices"] = [f"cpu:{d}" for d in range(devices)]
                    started = time.monotonic()
                    r = c.post("/train/start", json=body)
                    r.raise_for_status()
                    job_id = r.json()["job_id"]
                    while (job := c.get(f"/train/status/{job_id}").json())["status"] not in ("completed", "failed"):
                        time.sleep(0.05)
                    if job["status"] != "completed":
                        raise RuntimeError(json.dumps(job["error"]))
                    times.setdefault(modality, []).append(time.monotonic() - started)
    finally:
        server.terminate()
        server.wait(30)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modalities", default="text,image,audio")
    parser.add_argument("--jobs", type=int, default=3, help="train jobs per modality per server")
    parser.add_argument("--rounds", type=int, default=2, help="servers per variant, taking turns")
    parser.add_argument("--devices", type=int, default=1, help="train each job as this many ranks (simulated CPU devices)")
    args = parser.parse_args()
    modalities = [m.strip() for m in args.modalities.split(",") if m.strip()]
    runs: dict[str, dict[str, list[list[float]]]] = {"on": {}, "off": {}}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "ws"
        build(home, modalities)
        for round_ in range(args.rounds):
            for warm in (("on", "off") if round_ % 2 == 0 else ("off", "on")):
                for modality, seconds in run_server(home, warm, modalities, args.jobs, args.devices).items():
                    runs[warm].setdefault(modality, []).append(seconds)
    ranks = f", {args.devices} ranks each" if args.devices > 1 else ""
    print(f"submit -> completed of a one-step train job ({args.jobs} per server, {args.rounds} servers per variant{ranks})")
    for modality in modalities:
        first = {w: statistics.median(r[0] for r in runs[w][modality]) for w in runs}
        later = {w: statistics.median(s for r in runs[w][modality] for s in r[1:]) for w in runs}
        print(f"{modality:6s} later jobs: warm {later['on']:.2f} s, spawned {later['off']:.2f} s "
              f"-> {later['off'] / later['on']:.1f}x faster; first job: warm {first['on']:.2f} s, spawned {first['off']:.2f} s")


if __name__ == "__main__":
    main()
