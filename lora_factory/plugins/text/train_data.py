"""Turn conversations and documents into training samples: chat template, assistant-only labels,
long documents split into blocks, overlong conversations truncated or dropped (and counted).

Why our own code rather than TRL's: the loss mask must be right for any chat template (with or
without ``{% generation %}`` markers, with or without tools), packing must not let one sample attend
to another, and the same function must serve training, evaluation and the benchmark so their
numbers are comparable.

Assistant spans are found by rendering the conversation prefix by prefix: the characters between
"history + generation prompt" and "history + this answer" belong to the answer (its tool calls
included; tool results are not the assistant's and carry no loss). Token offsets then map
characters to tokens. This works for every template whose renders are prefix-consistent.

Plain-text rows (continued pre-training) are never truncated: a document longer than
``max_length`` becomes several blocks, consecutive blocks optionally overlapping by ``text_stride``
tokens that serve as context only (their labels are masked), so every token is trained exactly once.

Samples live in one :class:`EncodedSet` of flat numpy arrays (tokens, a trained-token mask, offsets,
the source row of each sample): cheap to cache on disk and to memory-map, and a packing plan is
then just indices into it (:mod:`packing`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lora_factory.kit import LoRAFactoryError

IGNORE_INDEX = -100
OVERLONG_MODES = ("truncate", "drop")


def load_rows(path: Path, options: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Read a dataset through the text plugin's format layer (JSONL, CSV, Alpaca, ShareGPT ...)."""
    from lora_factory.plugins.text.formats import load_conversations
    from lora_factory.plugins.text.preference import preference_not_trainable

    rows = load_conversations(Path(path), options or {})
    if not rows:
        raise LoRAFactoryError(
            "DATASET_EMPTY",
            f"データセット「{Path(path).name}」に学習できる行がありません。",
            f"The dataset '{Path(path).name}' has no usable rows.",
            http_status=422,
            detail={"file": str(path)},
        )
    if "preference" in rows[0]:
        raise preference_not_trainable(Path(path).name)
    return rows


def _template_error(tokenizer_name: str, reason: str) -> LoRAFactoryError:
    return LoRAFactoryError(
        "CHAT_TEMPLATE_UNSUPPORTED",
        f"チャットテンプレートからアシスタントの範囲を特定できません({reason})。"
        "assistant_only_loss を false にするか、別のモデルを使ってください。",
        f"Cannot locate assistant turns with this chat template ({reason}); "
        "set assistant_only_loss to false or use another model.",
        http_status=422,
        detail={"tokenizer": tokenizer_name, "reason": reason},
    )


def _render(tokenizer: Any, conversations: list[list[dict[str, Any]]], add_generation_prompt: bool,
            tools: list[dict[str, Any]] | None) -> list[str]:
    """Several conversations in one ``apply_chat_template`` call (its per-call cost is most of a render)."""
    if not conversations:
        return []
    return list(tokenizer.apply_chat_template(conversations, tools=tools or None, tokenize=False,
                                              add_generation_prompt=add_generation_prompt))


def assistant_char_spans(tokenizer: Any, messages: list[dict[str, Any]],
                         tools: list[dict[str, Any]] | None = None) -> tuple[str, list[tuple[int, int]]]:
    """The full rendered text and the character spans of every assistant answer (its end token included)."""
    return assistant_spans_batch(tokenizer, [messages], tools)[0]


def assistant_spans_batch(tokenizer: Any, conversations: list[list[dict[str, Any]]],
                          tools: list[dict[str, Any]] | None = None) -> list[tuple[str, list[tuple[int, int]]]]:
    """:func:`assistant_char_spans` for several conversations sharing ``tools``, in two renders calls."""
    plans = []
    prefix_convs: list[list[dict[str, Any]]] = []
    upto_convs: list[list[dict[str, Any]]] = []
    for messages in conversations:
        answers = [i for i, m in enumerate(messages) if m.get("role") == "assistant"]
        first_prefix, first_upto = len(prefix_convs), len(upto_convs)
        prefix_convs += [messages[:i] for i in answers if i]
        upto_convs += [messages[: i + 1] for i in answers]
        if not answers or answers[-1] != len(messages) - 1:
            upto_convs.append(messages)
        plans.append((answers, first_prefix, first_upto, len(upto_convs) - 1))
    prefixes = _render(tokenizer, prefix_convs, True, tools)
    uptos = _render(tokenizer, upto_convs, False, tools)
    out = []
    for answers, first_prefix, first_upto, last in plans:
        full = uptos[last]  # the render up to the last message is the full text: rendered once
        spans: list[tuple[int, int]] = []
        p = first_prefix
        for n, i in enumerate(answers):
            prefix = ""
            if i:
                prefix, p = prefixes[p], p + 1
            upto = uptos[first_upto + n]
            if not full.startswith(upto) or not upto.startswith(prefix):
                raise _template_error(getattr(tokenizer, "name_or_path", ""), "renders are not prefix-consistent")
            end = len(upto.rstrip("\n "))
            if end > len(prefix):
                spans.append((len(prefix), end))
        out.append((full, spans))
    return out


def _tokenize(tokenizer: Any, texts: list[str], offsets: bool) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Token ids (and character offsets) of ``texts``, no special tokens added.

    A fast tokenizer whose backend has no truncation or padding set is called directly: the same
    tokens as ``tokenizer(texts, add_special_tokens=False)``, without converting every encoding
    into Python lists first (a third of the encode time)."""
    backend = getattr(tokenizer, "backend_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None
    if backend is not None and backend.truncation is None and backend.padding is None:
        encodings = backend.encode_batch(texts, add_special_tokens=False)
        return [(np.asarray(e.ids, dtype=np.int32),
                 np.asarray(e.offsets, dtype=np.int64).reshape(-1, 2) if offsets else None) for e in encodings]
    enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=offsets)
    return [(np.asarray(enc["input_ids"][k], dtype=np.int32),
             np.asarray(enc["offset_mapping"][k], dtype=np.int64).reshape(-1, 2) if offsets else None)
            for k in range(len(texts))]


@dataclass
class EncodeConfig:
    """What decides the tokens of a sample (every field is part of the token cache's key)."""

    max_length: int
    assistant_only: bool = True
    overlong: str = "truncate"  # chat rows over max_length: "truncate" or "drop"
    text_stride: int = 0  # tokens of context repeated at the start of the next block of a long document

    def key(self) -> dict[str, Any]:
        return {"max_length": self.max_length, "assistant_only": self.assistant_only, "overlong": self.overlong,
                "text_stride": self.text_stride}


@dataclass
class EncodedSet:
    """Every sample of a dataset as flat arrays: sample i is ``input_ids[offsets[i]:offsets[i+1]]``,
    trained where ``trained`` is 1; ``rows[i]`` is the row of the file it came from."""

    input_ids: np.ndarray  # int32
    trained: np.ndarray  # uint8, 1 = the token carries a loss
    offsets: np.ndarray  # int64, len = samples + 1
    rows: np.ndarray  # int64 source row per sample
    report: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def sample(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        start, end = int(self.offsets[i]), int(self.offsets[i + 1])
        return self.input_ids[start:end], self.trained[start:end]

    def item(self, i: int) -> dict[str, list[int]]:
        ids, trained = self.sample(i)
        return {"input_ids": ids.tolist(), "labels": np.where(trained == 1, ids, IGNORE_INDEX).tolist()}

    @classmethod
    def from_parts(cls, ids: list[np.ndarray], trained: list[np.ndarray], rows: list[int],
                   report: dict[str, Any]) -> EncodedSet:
        offsets = np.zeros(len(ids) + 1, dtype=np.int64)
        if ids:
            np.cumsum([len(x) for x in ids], out=offsets[1:])
        return cls(np.concatenate(ids).astype(np.int32) if ids else np.zeros(0, np.int32),
                   np.concatenate(trained).astype(np.uint8) if trained else np.zeros(0, np.uint8),
                   offsets, np.asarray(rows, dtype=np.int64), report)


REPORT_KEYS = ("rows", "chat_rows", "text_rows", "tool_rows", "samples", "tokens", "label_tokens",
               "rows_truncated", "tokens_truncated", "rows_dropped_too_long", "tokens_dropped_too_long",
               "rows_dropped_no_target", "documents_split", "text_blocks")


def _text_blocks(ids: np.ndarray, max_length: int, stride: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """A document in ``max_length`` windows; window k > 0 starts ``stride`` tokens early, as context."""
    n = len(ids)
    if n <= max_length:
        return [(ids, np.ones(n, np.uint8))]
    step = max_length - stride
    blocks = []
    start = 0
    while True:
        end = min(start + max_length, n)
        trained = np.ones(end - start, np.uint8)
        if start:
            trained[:stride] = 0
        blocks.append((ids[start:end], trained))
        if end == n:
            return blocks
        start += step


def _chat_trained(offsets: np.ndarray, spans: list[tuple[int, int]]) -> np.ndarray:
    """1 for tokens lying inside an assistant span (vectorised: one search per token, not a loop)."""
    trained = np.zeros(len(offsets), np.uint8)
    if not spans or not len(offsets):
        return trained
    span_starts = np.asarray([s for s, _ in spans])
    span_ends = np.asarray([e for _, e in spans])
    starts, ends = offsets[:, 0], offsets[:, 1]
    which = np.searchsorted(span_starts, starts, side="right") - 1
    ok = (which >= 0) & (ends > starts)
    safe = np.where(which >= 0, which, 0)
    ok &= ends <= span_ends[safe]
    trained[ok] = 1
    return trained


def _render_chat(tokenizer: Any, conversations: list[list[dict[str, Any]]], assistant_only: bool,
                 tools: list[dict[str, Any]] | None) -> list[tuple[str, list[tuple[int, int]] | None]]:
    if assistant_only:
        return assistant_spans_batch(tokenizer, conversations, tools)
    return [(text, None) for text in _render(tokenizer, conversations, False, tools)]


def encode_batch(rows: list[dict[str, Any]], tokenizer: Any, cfg: EncodeConfig,
                 first_row: int = 0) -> tuple[list[np.ndarray], list[np.ndarray], list[int], Counter]:
    """Encode rows ``first_row ...``: the samples (ids, trained mask, source row) and the counts."""
    from lora_factory.plugins.text.tools import row_uses_tools, template_supports_tools, tools_unsupported

    stats: Counter = Counter()
    out_ids: list[np.ndarray] = []
    out_trained: list[np.ndarray] = []
    out_rows: list[int] = []
    chat_rows: list[int] = []
    plain: list[int] = []  # chat rows without tools: rendered together
    text_texts, text_rows = [], []
    eos = tokenizer.eos_token or ""
    rendered: dict[int, tuple[str, list[tuple[int, int]] | None]] = {}
    for n, row in enumerate(rows):
        stats["rows"] += 1
        if "messages" not in row:
            text_texts.append(str(row.get("text", "")) + eos)
            text_rows.append(first_row + n)
            continue
        chat_rows.append(n)
        if row_uses_tools(row):
            stats["tool_rows"] += 1
            if not template_supports_tools(tokenizer):
                raise tools_unsupported(Path(str(getattr(tokenizer, "name_or_path", "") or "?")).name)
            rendered[n] = _render_chat(tokenizer, [row["messages"]], cfg.assistant_only, row.get("tools"))[0]
        else:
            plain.append(n)
    for n, result in zip(plain, _render_chat(tokenizer, [rows[n]["messages"] for n in plain], cfg.assistant_only, None),
                         strict=True):
        rendered[n] = result
    stats["chat_rows"] += len(chat_rows)
    stats["text_rows"] += len(text_texts)

    if chat_rows:
        tokens = _tokenize(tokenizer, [rendered[n][0] for n in chat_rows], cfg.assistant_only)
        for n, (ids, offsets) in zip(chat_rows, tokens, strict=True):
            spans = rendered[n][1]
            trained = _chat_trained(offsets, spans) if spans is not None else np.ones(len(ids), np.uint8)
            if len(ids) > cfg.max_length:
                if cfg.overlong == "drop":
                    stats["rows_dropped_too_long"] += 1
                    stats["tokens_dropped_too_long"] += len(ids)
                    continue
                stats["rows_truncated"] += 1
                stats["tokens_truncated"] += len(ids) - cfg.max_length
                ids, trained = ids[: cfg.max_length], trained[: cfg.max_length]
            if not trained.any():
                stats["rows_dropped_no_target"] += 1
                continue
            out_ids.append(ids)
            out_trained.append(trained)
            out_rows.append(first_row + n)
    if text_texts:
        for row_index, (ids, _) in zip(text_rows, _tokenize(tokenizer, text_texts, False), strict=True):
            if len(ids) < 2:  # a single token has nothing to predict
                stats["rows_dropped_no_target"] += 1
                continue
            blocks = _text_blocks(ids, cfg.max_length, cfg.text_stride)
            if len(blocks) > 1:
                stats["documents_split"] += 1
            stats["text_blocks"] += len(blocks)
            for block_ids, trained in blocks:
                out_ids.append(block_ids)
                out_trained.append(trained)
                out_rows.append(row_index)
    stats["samples"] += len(out_ids)
    stats["tokens"] += sum(len(x) for x in out_ids)
    stats["label_tokens"] += int(sum(int(t.sum()) for t in out_trained))
    return out_ids, out_trained, out_rows, stats


def finish_report(stats: Counter) -> dict[str, Any]:
    report = {key: int(stats.get(key, 0)) for key in REPORT_KEYS}
    report["rows_dropped"] = report["rows_dropped_too_long"] + report["rows_dropped_no_target"]
    return report


def nothing_to_train(max_length: int) -> LoRAFactoryError:
    return LoRAFactoryError(
        "DATASET_NOTHING_TO_TRAIN",
        "学習対象のトークンがありません(max_length が短すぎるか、assistant の発話がありません)。",
        "No trainable tokens: max_length is too short or there are no assistant turns.",
        http_status=422,
        detail={"field": "max_length", "value": max_length},
    )


def encode_in_process(rows: list[dict[str, Any]], tokenizer: Any, cfg: EncodeConfig,
                      batch_size: int = 512) -> EncodedSet:
    """Every row encoded in this process, in batches (the tokenizer's batch call is the fast path)."""
    ids: list[np.ndarray] = []
    trained: list[np.ndarray] = []
    sources: list[int] = []
    stats: Counter = Counter()
    for start in range(0, len(rows), batch_size):
        i, t, r, s = encode_batch(rows[start:start + batch_size], tokenizer, cfg, first_row=start)
        ids += i
        trained += t
        sources += r
        stats.update(s)
    return EncodedSet.from_parts(ids, trained, sources, finish_report(stats))


# -- the one-row API (tests, the benchmark's reference, evaluation of a few rows) ---------------

def encode_row(row: dict[str, Any], tokenizer: Any, max_length: int, assistant_only: bool) -> dict[str, list[int]] | None:
    """One row -> its first sample ``{"input_ids", "labels"}`` (a conversation truncated to
    ``max_length``); None when nothing is trainable. A long document gives several samples:
    use :func:`encode_rows` to get them all."""
    ids, trained, _, _ = encode_batch([row], tokenizer, EncodeConfig(max_length, assistant_only))
    if not ids:
        return None
    return {"input_ids": ids[0].tolist(), "labels": np.where(trained[0] == 1, ids[0], IGNORE_INDEX).tolist()}


def encode_rows(rows: list[dict[str, Any]], tokenizer: Any, max_length: int, assistant_only: bool) -> list[dict[str, list[int]]]:
    """Every sample of ``rows`` as lists (rows with nothing to learn are dropped)."""
    data = encode_in_process(rows, tokenizer, EncodeConfig(max_length, assistant_only))
    if not len(data):
        raise nothing_to_train(max_length)
    return [data.item(i) for i in range(len(data))]
