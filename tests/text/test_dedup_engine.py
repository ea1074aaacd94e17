"""The near-duplicate engine (rensa signatures, our banding): finds planted near copies, keeps order."""

from __future__ import annotations

import sys
from pathlib import Path

from lora_factory.plugins.text import minhash

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))


def test_planted_near_duplicates_are_found_with_their_source():
    from dedup import make_rows  # the benchmark's synthetic Japanese rows

    texts, planted = make_rows(1500, seed=3)
    truth = {d for d, s in planted if minhash.exact_jaccard(texts[d], texts[s], 5) >= 0.7}
    found = minhash.find_near_duplicates(texts, threshold=0.7)
    assert len(truth & set(found)) / len(truth) >= 0.95
    for dup, (kept, similarity) in found.items():
        assert kept < dup and kept not in found, "a duplicate points to a kept, earlier row"
        assert minhash.exact_jaccard(texts[dup], texts[kept], 5) >= 0.6 and similarity >= 0.7


def test_short_empty_and_repeated_texts():
    texts = ["", "abc", "", "abc", "abd", "これは十分に長い日本語の文章です。", "これは十分に長い日本語の文章です!"]
    found = minhash.find_near_duplicates(texts, threshold=0.7)
    assert found[2][0] == 0 and found[3][0] == 1 and 4 not in found
    assert found[6][0] == 5
    hashes, offsets = minhash.shingle_hashes(texts, 5)
    windows = [0, 1, 0, 1, 1] + [len(t) - 4 for t in texts[5:]]
    assert offsets.tolist() == [sum(windows[:i]) for i in range(len(texts) + 1)]
    assert len(set(hashes[offsets[5]:offsets[6]].tolist())) == len(minhash.shingles(texts[5], 5))
