"""Near-duplicate detection: MinHash signatures from rensa (a maintained Rust library), LSH banding
and an order-preserving greedy pass here.

Why character n-grams: Japanese has no spaces, so word shingles would make a whole sentence one
token; 5-character shingles work for Japanese and English alike.

How:

- each text becomes its set of character n-grams, hashed to 64 bits for all texts at once (numpy);
  rensa computes the ``num_perm`` MinHash slots of every text in one call
  (``RMinHash.digest_matrix_from_flat_token_hashes``: Rust, no Python object per document), seeded,
  so a run is reproducible;
- the signature (``b * r`` slots) is cut into ``b`` bands of ``r`` rows; two documents become
  candidates when one band matches exactly. ``(b, r)`` minimise the equally weighted false-positive and false-negative
  areas of the S-curve ``1 - (1 - s**r)**b`` around the threshold (datasketch's ``_optimal_param``);
- candidates are confirmed with the estimated Jaccard similarity (share of equal signature slots),
  which removes most LSH false positives.

``benchmarks/dedup.py`` compares this with our former pure-numpy hashing and with datasketch.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

U64 = (1 << 64) - 1
_PRIME = 0x100000001B3  # FNV's 64-bit prime: spreads code points over the 64 bits


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


def shingle_hashes(texts: list[str], ngram: int) -> tuple[Any, Any]:
    """Every text's character n-grams as 64-bit hashes, in one flat array: ``(hashes, row_offsets)``.

    Vectorised over all texts at once (numpy, on the UTF-32 code points): the same n-gram always
    gets the same hash (a polynomial over its code points, modulo 2**64), so a text's hash set
    stands for its shingle set. A text shorter than ``ngram`` is its own single shingle.
    """
    import numpy as np

    n = int(ngram)
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    codes = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32)
    windows = max(len(codes) - n + 1, 0)
    rolling = codes[:windows].astype(np.uint64)
    for k in range(1, n):  # in place: a few passes over one array, whatever the number of texts
        np.multiply(rolling, np.uint64(_PRIME), out=rolling)
        np.add(rolling, codes[k : k + windows], out=rolling)
    ends = np.cumsum(lengths)
    starts = ends - lengths
    inside = np.ones(windows, dtype=bool)
    for k in range(1, n):  # the windows that start in the last n-1 characters of a text cross its end
        position = ends - k
        inside[position[(lengths >= k) & (position < windows)]] = False
    per_text = np.maximum(lengths - n + 1, 0)
    short = np.nonzero((lengths > 0) & (lengths < n))[0]
    if len(short):  # rare: give each short text one hash of its own, in its place
        pieces, counts = [], per_text.copy()
        for i in short:
            value = 0
            for code in codes[starts[i] : ends[i]].tolist():
                value = (value * _PRIME + code) & U64
            counts[i] = 1
            pieces.append((i, value))
        full = rolling[inside]
        offsets = np.concatenate(([0], np.cumsum(per_text)))
        parts, last = [], 0
        for i, value in pieces:
            parts.extend([full[offsets[last] : offsets[i]], np.array([value], dtype=np.uint64)])
            last = i + 1
        parts.append(full[offsets[last] :])
        return np.concatenate(parts), np.concatenate(([0], np.cumsum(counts))).astype(np.uint64)
    return rolling[inside], np.concatenate(([0], np.cumsum(per_text))).astype(np.uint64)


def signatures(texts: list[str], num_perm: int = 128, ngram: int = 5, seed: int = 0) -> Any:
    """A ``(len(texts), num_perm)`` ``uint32`` matrix of MinHash slots (rensa's ``RMinHash``)."""
    import numpy as np
    from rensa import RMinHash

    if not texts:
        return np.zeros((0, int(num_perm)), dtype=np.uint32)
    hashes, offsets = shingle_hashes(texts, ngram)
    matrix = RMinHash.digest_matrix_from_flat_token_hashes(hashes, offsets, int(num_perm), int(seed) & U64)
    return np.array(matrix.to_rows(), dtype=np.uint32).reshape(len(texts), int(num_perm))


class MinHasher:
    """Signatures one text at a time (tests, small inputs); the same values as :func:`signatures`."""

    def __init__(self, num_perm: int = 128, ngram: int = 5, seed: int = 0) -> None:
        self.num_perm = int(num_perm)
        self.ngram = int(ngram)
        self.seed = int(seed)

    def signature(self, text: str) -> Any:
        return signatures([text], self.num_perm, self.ngram, self.seed)[0]


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

    Two passes keep the Python side small: rensa's LSH first flags, in Rust, the documents that
    share a band with any other (``bands * rows`` slots, contiguous bands, as below); only those
    are sketched again, read into numpy and go through the greedy pass. A document that shares no
    band with any other is nobody's candidate and has none: it is kept without a look.

    :return: ``{duplicate_index: (kept_index, estimated_similarity)}``.
    """
    import numpy as np
    from rensa import RMinHash, RMinHashLSH

    if not texts:
        return {}
    bands, rows = optimal_bands(round(float(threshold), 4), int(num_perm))
    used, seed64 = bands * rows, int(seed) & U64
    hashes, offsets = shingle_hashes(texts, ngram)
    matrix = RMinHash.digest_matrix_from_flat_token_hashes(hashes, offsets, used, seed64)
    flags = RMinHashLSH(float(threshold), used, bands).insert_matrix_and_query_duplicate_flags(matrix)
    involved = np.flatnonzero(np.asarray(flags, dtype=bool))
    if not len(involved):
        return {}
    sub_hashes, sub_offsets = _select_rows(hashes, offsets, involved)
    sigs = np.array(RMinHash.digest_matrix_from_flat_token_hashes(sub_hashes, sub_offsets, used, seed64).to_rows(),
                    dtype=np.uint32).reshape(len(involved), used)
    # one 64-bit key per (band, document): the band's slots folded together
    keys = np.zeros((bands, len(involved)), dtype=np.uint64)
    for band in range(bands):
        for column in sigs[:, band * rows : (band + 1) * rows].T:
            keys[band] = keys[band] * np.uint64(_PRIME) + column
    band_keys = [keys[band].tolist() for band in range(bands)]
    buckets: list[dict[int, list[int]]] = [{} for _ in range(bands)]
    duplicates: dict[int, tuple[int, float]] = {}
    for local in range(len(involved)):
        candidates: dict[int, None] = {}
        for band in range(bands):
            for other in buckets[band].get(band_keys[band][local], ()):
                candidates.setdefault(other, None)
        if candidates:
            others = list(candidates)
            similarity = (sigs[others] == sigs[local]).mean(axis=1)
            best = int(similarity.argmax())  # the first of the most similar, as kept in order
            if similarity[best] >= threshold:
                duplicates[int(involved[local])] = (int(involved[others[best]]), float(similarity[best]))
                continue
        for band in range(bands):
            buckets[band].setdefault(band_keys[band][local], []).append(local)
    return duplicates


def _select_rows(hashes: Any, offsets: Any, rows: Any) -> tuple[Any, Any]:
    """The flat hashes and row offsets of the chosen rows only (vectorised gather)."""
    import numpy as np

    offsets = offsets.astype(np.int64)
    starts, counts = offsets[rows], offsets[rows + 1] - offsets[rows]
    new_offsets = np.concatenate(([0], np.cumsum(counts)))
    index = np.repeat(starts - new_offsets[:-1], counts) + np.arange(new_offsets[-1])
    return hashes[index], new_offsets.astype(np.uint64)
