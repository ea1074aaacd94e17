"""MinHash + LSH banding for near-duplicate detection, written here so it stays small and seeded.

Why character n-grams: Japanese has no spaces, so word shingles would make a whole sentence one
token; 5-character shingles work for Japanese and English alike.

How (as in datasketch / text-dedup):

- each shingle is hashed to 32 bits (SHA-1 prefix), then ``num_perm`` universal hash functions
  ``(a * x + b) mod (2**61 - 1)`` with ``a, b < 2**32`` (so the product never overflows 64 bits)
  are applied; the signature is the per-function minimum;
- the signature is cut into ``b`` bands of ``r`` rows; two documents become candidates when one
  band matches exactly. ``(b, r)`` minimise the equally weighted false-positive and false-negative
  areas of the S-curve ``1 - (1 - s**r)**b`` around the threshold (datasketch's ``_optimal_param``);
- candidates are confirmed with the estimated Jaccard similarity (share of equal signature slots),
  which removes most LSH false positives.

Deterministic: the hash functions come from ``numpy.random.default_rng(seed)``.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Any

MERSENNE_PRIME = (1 << 61) - 1
MAX_HASH = (1 << 32) - 1


def shingles(text: str, ngram: int) -> set[str]:
    """Character n-grams; a text shorter than ``ngram`` is its own single shingle."""
    if len(text) <= ngram:
        return {text} if text else set()
    return {text[i : i + ngram] for i in range(len(text) - ngram + 1)}


def _integrate(f: Any, a: float, b: float, steps: int = 200) -> float:
    """Composite Simpson rule: accurate enough to rank (b, r) pairs, no scipy needed."""
    if b <= a:
        return 0.0
    if steps % 2:
        steps += 1
    h = (b - a) / steps
    total = f(a) + f(b)
    for i in range(1, steps):
        total += (4 if i % 2 else 2) * f(a + i * h)
    return total * h / 3


@lru_cache(maxsize=64)
def optimal_bands(threshold: float, num_perm: int, fp_weight: float = 0.5, fn_weight: float = 0.5) -> tuple[int, int]:
    """``(bands, rows)`` with ``bands * rows <= num_perm`` minimising the weighted error areas."""
    best = (1, num_perm)
    best_error = float("inf")
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            fp = _integrate(lambda s, b=b, r=r: 1 - (1 - s**r) ** b, 0.0, threshold, 60)
            fn = _integrate(lambda s, b=b, r=r: (1 - s**r) ** b, threshold, 1.0, 60)
            error = fp * fp_weight + fn * fn_weight
            if error < best_error:
                best_error, best = error, (b, r)
    return best


class MinHasher:
    """Signatures for many documents with one set of seeded hash functions."""

    def __init__(self, num_perm: int = 128, ngram: int = 5, seed: int = 0) -> None:
        import numpy as np

        self.num_perm = int(num_perm)
        self.ngram = int(ngram)
        rng = np.random.default_rng(seed)
        self._a = rng.integers(1, MAX_HASH, size=self.num_perm, dtype=np.uint64)
        self._b = rng.integers(0, MAX_HASH, size=self.num_perm, dtype=np.uint64)

    def signature(self, text: str) -> Any:
        """A ``uint64`` array of ``num_perm`` minima (all ``MAX_HASH`` for an empty text)."""
        import numpy as np

        grams = shingles(text, self.ngram)
        if not grams:
            return np.full(self.num_perm, MAX_HASH, dtype=np.uint64)
        hashed = np.fromiter(
            (int.from_bytes(hashlib.sha1(g.encode("utf-8")).digest()[:4], "little") for g in grams),
            dtype=np.uint64,
            count=len(grams),
        )
        values = (hashed[:, None] * self._a[None, :] + self._b[None, :]) % np.uint64(MERSENNE_PRIME)
        values &= np.uint64(MAX_HASH)
        return values.min(axis=0)


def jaccard_estimate(sig_a: Any, sig_b: Any) -> float:
    import numpy as np

    return float(np.count_nonzero(sig_a == sig_b)) / len(sig_a)


def exact_jaccard(a: str, b: str, ngram: int) -> float:
    """The true shingle Jaccard similarity (used by tests to check the estimate)."""
    sa, sb = shingles(a, ngram), shingles(b, ngram)
    if not sa and not sb:
        return 1.0
    return len(sa & sb) / len(sa | sb)


def find_near_duplicates(
    texts: list[str], threshold: float = 0.7, num_perm: int = 128, ngram: int = 5, seed: int = 0
) -> dict[int, tuple[int, float]]:
    """Greedy, order-preserving near-duplicate search.

    Documents are visited in order; one whose LSH candidates include an already *kept* document
    with estimated Jaccard >= ``threshold`` is a duplicate of that document.

    :return: ``{duplicate_index: (kept_index, estimated_similarity)}``.
    """
    hasher = MinHasher(num_perm=num_perm, ngram=ngram, seed=seed)
    bands, rows = optimal_bands(round(float(threshold), 4), int(num_perm))
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
        match: tuple[int, float] | None = None
        for other in candidates:
            similarity = jaccard_estimate(sig, signatures[other])
            if similarity >= threshold and (match is None or similarity > match[1]):
                match = (other, similarity)
        if match is not None:
            duplicates[index] = match
            continue
        signatures[index] = sig
        for band, key in enumerate(keys):
            buckets[band].setdefault(key, []).append(index)
    return duplicates
