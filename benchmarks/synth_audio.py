"""Speech synthesis speed on this machine: real-time factor and time to first audio, per option.

In one process, on one random Llasa-layout LM (random weights never stop early, so every sentence runs
to its length cap: the same audio length for every option) and its tiny XCodec2, the same text is
synthesised through ``synthesize`` (generation + codec decode + shaping), with

* ``no_cache``: sentence by sentence with the KV cache off (what a hand-written loop without a cache does);
* ``baseline``: sentence by sentence, KV cache on (the behaviour before the speed options);
* ``batch``: ``batch_sentences`` (first sentence alone, then N at a time);
* ``int8``: int8 dynamic quantisation of the LM (CPU);
* ``int8_batch``: both.

Rounds alternate the options; the report gives each option's median real-time factor (compute seconds
/ audio seconds), its median ratio of speed against the baseline of the same round, and the time to
its first audio chunk. With ``--http`` it also starts ``lora-factory serve`` on a temporary workspace
and times the first and last bytes of a streamed ``/v1/audio/speech`` PCM answer (the streaming route).

    .venv/bin/python benchmarks/synth_audio.py [--hidden 256] [--layers 4] [--sentences 4] [--rounds 3] [--http]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SENTENCES = ["こんにちは。", "今日はいい天気ですね。", "明日は東京に行きます。", "雨が降っています。",
             "音声合成のデータを作ります。", "ありがとうございます。", "富士山は高い山です。", "また明日。"]


def synth_once(tts, text: str, params) -> dict:  # noqa: ANN001
    from lora_factory.plugins.audio.synthesis import synthesize

    started = time.perf_counter()
    first = None
    samples = rate = 0
    for chunk in synthesize(tts, text, params):
        if first is None:
            first = time.perf_counter() - started
        samples += chunk.wave.size
        rate = chunk.sample_rate
    total = time.perf_counter() - started
    return {"total_s": total, "first_s": first or total, "audio_s": samples / rate}


def without_cache(tts):  # noqa: ANN001, ANN201
    """The same model with generate forced to recompute the whole sequence at every step."""
    from dataclasses import replace

    class NoCache:
        def __init__(self, model) -> None:  # noqa: ANN001
            self.model, self.config = model, model.config

        def generate(self, **kwargs):  # noqa: ANN003, ANN201
            return self.model.generate(**{**kwargs, "use_cache": False})

    return replace(tts, model=NoCache(tts.model))


def run_http(model: Path, text: str, cap: float, extra: dict) -> dict:
    from benchmarks.startup import free_port, serve_command

    home = Path(tempfile.mkdtemp(prefix="lf-bench-synth-http-"))
    shutil.copytree(model, home / "models" / "audio" / "bench-tts")
    port = free_port()
    proc = subprocess.Popen(serve_command(port), cwd=home, env={**__import__("os").environ,
                                                                 "LORA_FACTORY_HOME": str(home)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(url + "/utils/paths", timeout=2)
                break
            except OSError:
                time.sleep(0.1)

        def post(body: dict) -> tuple[float, float, int]:
            request = urllib.request.Request(url + "/v1/audio/speech", data=json.dumps(body).encode(),
                                             headers={"Content-Type": "application/json"})
            started = time.perf_counter()
            first, size = None, 0
            with urllib.request.urlopen(request, timeout=600) as answer:
                while piece := answer.read1(65536):
                    first = first if first is not None else time.perf_counter() - started
                    size += len(piece)
            return first or 0.0, time.perf_counter() - started, size

        base = {"model": "bench-tts", "response_format": "pcm", "temperature": 0.0, "seed": 0,
                "max_seconds_per_sentence": cap}
        post({**base, "input": "はい。", **extra})  # loads the model in the inference worker
        out = {}
        for name, options in (("baseline", {}), ("options", extra)):
            first, last, size = post({**base, "input": text, **options})
            out[name] = {"first_bytes_s": round(first, 3), "last_bytes_s": round(last, 3),
                         "audio_s": round(size / 2 / 24000, 3)}
        return out
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--sentences", type=int, default=4)
    parser.add_argument("--batch", type=int, default=4, help="batch_sentences of the batch options")
    parser.add_argument("--cap", type=float, default=2.0, help="max seconds per sentence")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--http", action="store_true", help="also time the streaming route through a server")
    args = parser.parse_args()

    import torch

    from lora_factory.plugins.audio.synthesis import SpeechParams, TTSModel
    from lora_factory.plugins.audio.tiny_model import build_tiny_tts_model

    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="lf-bench-synth-"))
    try:
        model = work / "tts"
        info = build_tiny_tts_model(model, hidden_size=args.hidden, num_layers=args.layers)
        tts = TTSModel.load(model)
        variants = {"no_cache": (without_cache(tts), 1), "baseline": (tts, 1), "batch": (tts, args.batch),
                    "int8": (tts.int8(), 1)}
        variants["int8_batch"] = (variants["int8"][0], args.batch)
        text = "".join(SENTENCES[i % len(SENTENCES)] for i in range(args.sentences))
        quick = SpeechParams(temperature=0.0, seed=0, max_seconds_per_sentence=args.cap)
        synth_once(tts, "はい。", quick)  # warm-up
        runs: dict[str, list[dict]] = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, (model_, batch) in variants.items():
                print(f"round {len(runs[name]) + 1}: {name}", file=sys.stderr, flush=True)
                runs[name].append(synth_once(model_, text, quick.model_copy(update={"batch_sentences": batch})))
        report = {"lm_parameters": info["parameters"], "hidden": args.hidden, "layers": args.layers,
                  "sentences": args.sentences, "batch_sentences": args.batch, "torch_threads": torch.get_num_threads(),
                  "audio_s": round(runs["baseline"][0]["audio_s"], 2), "options": {}}
        for name, results in runs.items():
            speedups = [b["total_s"] / r["total_s"] for r, b in zip(results, runs["baseline"])]
            report["options"][name] = {
                "rtf_median": round(statistics.median(r["total_s"] / r["audio_s"] for r in results), 3),
                "speed_vs_baseline_median": round(statistics.median(speedups), 2),
                "first_audio_s_median": round(statistics.median(r["first_s"] for r in results), 3)}
        if args.http:
            report["http_stream"] = run_http(model, text, args.cap, {"batch_sentences": args.batch, "int8": True})
        print(json.dumps(report, indent=2, ensure_ascii=False))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
