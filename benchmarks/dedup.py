"""Near-duplicate removal: our engine (rensa) vs our former pure-numpy MinHash vs datasketch, one run.

Synthetic Japanese rows (words drawn from hiragana / katakana / kanji pools) with planted near
duplicates (a few characters changed, inserted or deleted, sometimes a phrase added) are deduplicated
by three engines with the same greedy, order-preserving rule (a document is a duplicate of an
already kept one whose estimated Jaccard similarity of character 5-grams is >= the threshold):

* ``datasketch``: the reference loop (``MinHash.update_batch``, ``MinHashLSH`` query / insert);
* ``ours (old)``: the former ``plugins/text/minhash.py`` (SHA-1 per shingle, numpy universal hashing);
* ``ours (rensa)``: the current ``find_near_duplicates`` (rensa's Rust MinHash, our LSH banding).

It prints documents per second, the speed ratio against datasketch, and recall / precision: recall
over the planted pairs whose true (exact) Jaccard is >= the threshold, precision over the removed
documents (a removal is right when its true Jaccard with the kept match is >= the threshold).

Run: ``.venv/bin/python benchmarks/dedup.py`` (``--rows 20000`` for a quick look, ``--json``).
datasketch is only needed here: ``pip install datasketch`` (it is in the ``test`` extra).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lora_factory.plugins.text import minhash  # noqa: E402

HIRAGANA = "あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわをん"
KATAKANA = "アイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリルレロワン"
KANJI = "日本語学習機械翻訳文章会話質問回答東京大阪時間今日明日天気料理旅行仕事家族友人先生学生電車駅店"
PUNCT = "、。"


def make_rows(n: int, dup_ratio: float = 0.15, seed: int = 0) -> tuple[list[str], list[tuple[int, int]]]:
    """``n`` rows; about ``dup_ratio`` of them near copies of an earlier row: (texts, [(dup, source)])."""
    rng = random.Random(seed)
    words = ["".join(rng.choice(pool) for _ in range(rng.randint(2, 4)))
             for pool in (HIRAGANA, KATAKANA, KANJI) for _ in range(700)]
    texts: list[str] = []
    planted: list[tuple[int, int]] = []
    for index in range(n):
        if texts and rng.random() < dup_ratio:
            source = rng.randrange(len(texts))
            chars = list(texts[source])
            for _ in range(rng.randint(1, max(1, len(chars) // 60))):
                pos = rng.randrange(len(chars))
                action = rng.random()
                if action < 0.4:
                    chars[pos] = rng.choice(HIRAGANA)
                elif action < 0.7:
                    chars.insert(pos, rng.choice(KANJI))
                else:
                    del chars[pos]
            if rng.random() < 0.3:
                chars.extend("ですね。")
            texts.append("".join(chars))
            planted.append((index, source))
        else:
            count = rng.randint(25, 70)
            texts.append("".join(rng.choice(words) + (rng.choice(PUNCT) if rng.random() < 0.15 else "")
                                 for _ in range(count)))
    return texts, planted


# -- the former engine, kept here as a baseline (it was plugins/text/minhash.py) -------------------
MERSENNE_PRIME = (1 << 61) - 1
MAX_HASH = (1 << 32) - 1


class OldMinHasher:
    def __init__(self, num_perm: int, ngram: int, seed: int) -> None:
        import numpy as np

        self.num_perm, self.ngram = num_perm, ngram
        rng = np.random.default_rng(seed)
        self._a = rng.integers(1, MAX_HASH, size=num_perm, dtype=np.uint64)
        self._b = rng.integers(0, MAX_HASH, size=num_perm, dtype=np.uint64)

    def signature(self, text: str) -> Any:
        import numpy as np

        grams = minhash.shingles(text, self.ngram)
        if not grams:
            return np.full(self.num_perm, MAX_HASH, dtype=np.uint64)
        hashed = np.fromiter((int.from_bytes(hashlib.sha1(g.encode("utf-8")).digest()[:4], "little") for g in grams),
                             dtype=np.uint64, count=len(grams))
        values = (hashed[:, None] * self._a[None, :] + self._b[None, :]) % np.uint64(MERSENNE_PRIME)
        values &= np.uint64(MAX_HASH)
        return values.min(axis=0)


def old_engine(texts: list[str], threshold: float, num_perm: int, ngram: int, seed: int) -> dict[int, tuple[int, float]]:
    hasher = OldMinHasher(num_perm, ngram, seed)
    bands, rows = minhash.optimal_bands(round(threshold, 4), num_perm)
    buckets: list[dict[bytes, list[int]]] = [{} for _ in range(bands)]
    signatures: dict[int, Any] = {}
    duplicates: dict[int, tuple[int, float]] = {}
    for index, text in enumerate(texts):
        sig = hasher.signature(text)
        keys = [sig[i * rows : (i + 1) * rows].tobytes() for i in range(bands)]
        candidates: dict[int, None] = {}
        for band, key in enumerate(keys):
            for other in buckets[band].get(key, ()):
                candidates.setdefault(other, None)
        match = None
        for other in candidates:
            similarity = minhash.jaccard_estimate(sig, signatures[other])
            if similarity >= threshold and (match is None or similarity > match[1]):
                match = (other, similarity)
        if match is not None:
            duplicates[index] = match
            continue
        signatures[index] = sig
        for band, key in enumerate(keys):
            buckets[band].setdefault(key, []).append(index)
    return duplicates


def datasketch_engine(texts: list[str], threshold: float, num_perm: int, ngram: int, seed: int) -> dict[int, tuple[int, float]]:
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    kept: dict[int, Any] = {}
    duplicates: dict[int, tuple[int, float]] = {}
    for index, text in enumerate(texts):
        sig = MinHash(num_perm=num_perm, seed=seed + 1)
        sig.update_batch([g.encode("utf-8") for g in minhash.shingles(text, ngram)])
        match = None
        for other in lsh.query(sig):
            similarity = sig.jaccard(kept[other])
            if similarity >= threshold and (match is None or similarity > match[1]):
                match = (other, similarity)
        if match is not None:
            duplicates[index] = match
            continue
        kept[index] = sig
        lsh.insert(index, sig)
    return duplicates


def rensa_engine(texts: list[str], threshold: float, num_perm: int, ngram: int, seed: int) -> dict[int, tuple[int, float]]:
    return minhash.find_near_duplicates(texts, threshold, num_perm, ngram, seed)


def quality(found: dict[int, tuple[int, float]], texts: list[str], truth: set[int], threshold: float,
            ngram: int) -> dict[str, float]:
    removed_true = sum(1 for d in truth if d in found)
    right = sum(1 for d, (k, _) in found.items() if minhash.exact_jaccard(texts[d], texts[k], ngram) >= threshold)
    return {"recall": removed_true / len(truth) if truth else 1.0,
            "precision": right / len(found) if found else 1.0, "removed": len(found)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--threshold", type=float, default=0.7)
    parser.add_argument("--num-perm", type=int, default=128)
    parser.add_argument("--ngram", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    try:
        import datasketch  # noqa: F401
    except ImportError:
        print("datasketch is needed for this benchmark only: pip install datasketch "
              "(or pip install -e .[test])", file=sys.stderr)
        return 2

    texts, planted = make_rows(args.rows)
    truth = {d for d, s in planted if minhash.exact_jaccard(texts[d], texts[s], args.ngram) >= args.threshold}
    print(f"{len(texts)} rows, {sum(len(t) for t in texts) / len(texts):.0f} characters on average, "
          f"{len(planted)} planted near duplicates ({len(truth)} with true Jaccard >= {args.threshold})", flush=True)
    results: dict[str, dict[str, Any]] = {}
    for name, engine in (("datasketch", datasketch_engine), ("ours (old)", old_engine), ("ours (rensa)", rensa_engine)):
        start = time.perf_counter()
        found = engine(texts, args.threshold, args.num_perm, args.ngram, 0)
        seconds = time.perf_counter() - start
        results[name] = {"seconds": round(seconds, 2), "docs_per_s": round(len(texts) / seconds),
                         **quality(found, texts, truth, args.threshold, args.ngram)}
        print(f"  {name:<13} {seconds:8.2f} s  {len(texts) / seconds:10.0f} docs/s", flush=True)
    base = results["datasketch"]["docs_per_s"]
    print(f"\n{'engine':<13} {'docs/s':>10} {'vs datasketch':>14} {'recall':>8} {'precision':>10} {'removed':>8}")
    for name, r in results.items():
        r["speedup_vs_datasketch"] = round(r["docs_per_s"] / base, 2)
        print(f"{name:<13} {r['docs_per_s']:>10} {r['speedup_vs_datasketch']:>13.2f}x {r['recall']:>8.4f} "
              f"{r['precision']:>10.4f} {r['removed']:>8}")
    if args.json:
        print(json.dumps({"rows": len(texts), "planted": len(planted), "true_pairs": len(truth), **results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
