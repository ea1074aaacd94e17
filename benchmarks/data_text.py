"""Text data preparation at scale: encode and pack rates, and submit -> first training step.

Prints, for synthetic chat sets of each size (rows of about 20-300 tokens):
  - encode: rows/s of chat template + tokenizer + assistant mask (several processes when large);
  - pack: rows/s of best-fit-decreasing packing into 2048-token blocks, the fill rate, and the old
    first-fit loop on a smaller set for reference (it is quadratic: 100k rows took 35 s);
then, through the real job path (Services.start_train -> worker subprocess, as the CLI's
``train --wait`` and the REST API do), the seconds from submit to the first training step for a
``--first-step-rows`` set on the tiny model, on a token-cache miss and then on a hit (a re-run).

    .venv/bin/python benchmarks/data_text.py                     # 100k and 1M rows, first step on 100k
    .venv/bin/python benchmarks/data_text.py --rows 20000 --first-step-rows 20000   # a quick look
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

QUESTIONS = ["日本の首都は?", "富士山について教えて", "好きな食べ物は?", "LoRAとは何ですか?", "今日の天気は?",
             "おすすめの本は?", "機械学習を説明して", "猫と犬どちらが好き?"]
WORDS = ["東京", "富士山", "猫", "犬", "学習", "データ", "モデル", "天気", "本", "日本", "です", "ます", "とても", "少し"]


def synthetic_rows(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        answer = "".join(rng.choice(WORDS) for _ in range(rng.randint(5, 110))) + "。"
        rows.append({"messages": [{"role": "user", "content": rng.choice(QUESTIONS)},
                                  {"role": "assistant", "content": answer}]})
    return rows


def bench_encode_and_pack(tokenizer, n: int, max_length: int, reference_rows: int) -> None:
    from lora_factory.plugins.text.packing import best_fit_decreasing, first_fit_reference
    from lora_factory.plugins.text.token_cache import encode_dataset
    from lora_factory.plugins.text.train_data import EncodeConfig

    rows = synthetic_rows(n)
    work = Path(tempfile.mkdtemp(prefix="lf_encode_"))
    started = time.perf_counter()
    data, processes = encode_dataset(rows, tokenizer, EncodeConfig(max_length), work)
    encode_s = time.perf_counter() - started
    lengths = data.lengths
    started = time.perf_counter()
    plan = best_fit_decreasing(lengths, max_length)
    pack_s = time.perf_counter() - started
    print(f"{n:>9,} rows  encode {encode_s:7.1f} s = {n / encode_s:9,.0f} rows/s ({processes} proc)   "
          f"pack {pack_s:6.2f} s = {n / pack_s:11,.0f} rows/s   {plan.blocks:,} blocks, fill {plan.fill_rate:.1%}  "
          f"(tokens {int(lengths.sum()):,}, {lengths.min()}-{lengths.max()} per row)")
    if reference_rows:
        sample = lengths[:reference_rows].tolist()
        started = time.perf_counter()
        old = first_fit_reference(sample, max_length)
        old_s = time.perf_counter() - started
        started = time.perf_counter()
        new = best_fit_decreasing(sample, max_length)
        new_s = max(time.perf_counter() - started, 1e-9)
        print(f"{'':>9}       old first-fit on {reference_rows:,} rows: {old_s:.2f} s ({len(old):,} blocks); "
              f"best-fit decreasing {new_s:.3f} s ({new.blocks:,} blocks): {old_s / new_s:,.0f}x faster")


def first_step(home: Path, dataset: str, output: str, params: dict) -> tuple[float, dict]:
    """Submit through Services (what the CLI and the REST API call) and time until step 1 is reported."""
    from lora_factory.core.schemas import TrainStartRequest
    from lora_factory.core.services import Services

    svc = Services(home)
    started = time.perf_counter()
    job_id = svc.submitter.start_train(TrainStartRequest(base_model="models/text/tiny", dataset=dataset, output_name=output,
                                               preset="quick", modality="text", params=params))
    seen: dict[str, float] = {}

    def watch(job: dict) -> None:
        if (job.get("step") or 0) >= 1 and "first" not in seen:
            seen["first"] = time.perf_counter() - started

    job = svc.jobs.wait(job_id, on_update=watch, poll=0.1)
    if job["status"] != "completed":
        raise SystemExit(f"job {job_id} {job['status']}: {job.get('error')}")
    return seen.get("first", float("nan")), json.loads(job["result"]) if isinstance(job["result"], str) else job["result"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--reference-rows", type=int, default=20_000, help="rows for the old first-fit (0: skip)")
    parser.add_argument("--first-step-rows", type=int, default=100_000, help="0: skip the job measurement")
    args = parser.parse_args()

    from transformers import AutoTokenizer

    from lora_factory.plugins.text.tiny_model import build_tiny_text_model

    tmp = Path(tempfile.mkdtemp(prefix="lf_data_bench_"))
    home = tmp / "ws"
    model_dir = home / "models" / "text" / "tiny"
    build_tiny_text_model(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    print(f"tiny model tokenizer, max_length {args.max_length}, synthetic Japanese chat rows")
    for n in args.rows:
        bench_encode_and_pack(tokenizer, n, args.max_length, args.reference_rows if n == args.rows[0] else 0)

    if args.first_step_rows:
        data = home / "datasets" / "text" / "big.jsonl"
        data.parent.mkdir(parents=True, exist_ok=True)
        with open(data, "w", encoding="utf-8") as fh:
            for row in synthetic_rows(args.first_step_rows, seed=1):
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        params = {"max_steps": 1, "packing": True, "max_length": 512, "save_steps": 1000, "batch_size": 4}
        miss, miss_result = first_step(home, "big.jsonl", "first-miss", params)
        hit, hit_result = first_step(home, "big.jsonl", "first-hit", params)
        for label, seconds, result in (("cache miss", miss, miss_result), ("cache hit ", hit, hit_result)):
            cache = result["data_report"]["token_cache"]
            print(f"submit -> first step, {args.first_step_rows:,} rows, {label}: {seconds:6.1f} s  "
                  f"(token cache {cache['status']}, data prep {cache['seconds']} s, "
                  f"{result['data_report']['packing']['blocks']:,} packed blocks)")


if __name__ == "__main__":
    main()
