"""Refine a text dataset into a new version: normalise, filter, deduplicate, mask PII, evolve.

Why a list of operations: a refinement is a small recipe (``[{"op", "params"}, ...]``) applied in
order and reported step by step (rows in, rows out, removed per reason, a few examples), so the user
sees what each step did and the lineage records exactly how a version was made.

Each operation's parameters are a pydantic model; ``REFINE_OPERATIONS[op]["params_schema"]`` is
its JSON schema (with defaults), which the UI renders as a form.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema

from lora_factory.kit import LoRAFactoryError
from lora_factory.kit.files import safe_name, write_text_atomic
from lora_factory.kit.refine import Operation, OperationRegistry, RefineParams, RefineReport
from lora_factory.plugins.text import evol, minhash, pii
from lora_factory.plugins.text.encodings import estimate_tokens, japanese_ratio
from lora_factory.plugins.text.formats import has_empty_answer, load_conversations, row_text
from lora_factory.plugins.text.schema_ja import TITLES_JA, localise
from lora_factory.plugins.text.tools import call_text

MAX_EXAMPLES = 3
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b-\u200f\u2028\u2029\u2060\ufeff]")
_SPACES_RE = re.compile(r"[ \t\u3000\u00a0]+")
_BLANK_LINES_RE = re.compile(r"\n{3,}")


# -- parameters ---------------------------------------------------------------------------------

_Params = RefineParams


class NormalizeParams(_Params):
    unicode_form: Literal["NFKC", "NFC", "none"] = "NFKC"
    collapse_whitespace: bool = True
    remove_control_chars: bool = True
    strip: bool = True


class FilterParams(_Params):
    unit: Literal["chars", "tokens"] = "chars"
    min_length: int | None = Field(None, ge=0, description="shorter rows are removed")
    max_length: int | None = Field(None, ge=1, description="longer rows are removed")
    tokenizer: str | None = Field(None, description="count real tokens with this model's tokenizer, e.g. models/text/tiny (unit=tokens)",
                                  json_schema_extra={"ui_choices": "models"})
    tokenizer_path: SkipJsonSchema[str | None] = Field(None, description="set from 'tokenizer' by resolve_operations")
    drop_empty_answers: bool = True
    min_japanese_ratio: float = Field(0.0, ge=0.0, le=1.0, description="share of Japanese letters")


class DedupExactParams(_Params):
    scope: Literal["all", "user"] = Field("all", description="compare whole rows or only the user turns")


class DedupNearParams(_Params):
    threshold: float = Field(0.7, gt=0.0, le=1.0)
    num_perm: int = Field(128, ge=16, le=1024)
    ngram: int = Field(5, ge=1, le=32)
    seed: int = Field(0, ge=0, le=2**32 - 1)
    scope: Literal["all", "user"] = "all"


class PiiMaskParams(_Params):
    email: bool = True
    phone: bool = True
    url: bool = False


# -- helpers ------------------------------------------------------------------------------------

def _short(row: dict[str, Any], limit: int = 160) -> str:
    text = row_text(row).replace("\n", " ⏎ ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _map_contents(row: dict[str, Any], fn: Callable[[str], str]) -> dict[str, Any]:
    """``fn`` over every text of a row: a preference row's chosen and rejected answers too."""
    if "text" in row:
        return {**row, "text": fn(row["text"])}
    out = {**row, "messages": [{**m, "content": fn(m["content"])} for m in row["messages"]]}
    for key in ("chosen", "rejected"):
        if isinstance(row.get(key), list):
            out[key] = [{**m, "content": fn(m["content"])} for m in row[key]]
    return out


def _dedup_text(row: dict[str, Any], scope: str) -> str:
    """The text two rows are compared on: NFKC, lower case, whitespace collapsed."""
    if scope == "user" and "messages" in row:
        text = "\n".join(m["content"] for m in row["messages"] if m["role"] == "user")
    elif "messages" in row:  # a preference row: its prompt, then both answers
        messages = list(row["messages"]) + [dict(m, role=f"{key}:{m['role']}") for key in ("chosen", "rejected")
                                            for m in row.get(key) or []]
        text = "\n".join(f"{m['role']}:{m['content']}{call_text(m)}" for m in messages)
    else:
        text = row["text"]
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


class _Result(RefineReport):
    """What one operation did: rows out, removals and changes per reason, examples per reason."""

    def __init__(self) -> None:
        super().__init__(MAX_EXAMPLES)
        self.rows: list[dict[str, Any]] = []
        self.extra: dict[str, Any] = {}

    def drop(self, reason: str, row: dict[str, Any], **more: Any) -> None:
        self.remove(reason, {"text": _short(row), **more})


# -- operations ---------------------------------------------------------------------------------

def op_normalize(rows: list[dict[str, Any]], p: NormalizeParams, ctx: Any) -> _Result:
    def clean(text: str) -> str:
        if p.unicode_form != "none":
            text = unicodedata.normalize(p.unicode_form, text)
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        if p.remove_control_chars:
            text = _CONTROL_RE.sub("", text)
        if p.collapse_whitespace:
            text = "\n".join(_SPACES_RE.sub(" ", line).strip() for line in text.split("\n"))
            text = _BLANK_LINES_RE.sub("\n\n", text)
        return text.strip() if p.strip else text

    res = _Result()
    for row in rows:
        new = _map_contents(row, clean)
        if new != row:
            res.changed["normalized"] += 1
            res.example("normalized", {"before": _short(row), "after": _short(new)})
        res.rows.append(new)
    return res


def _token_counter(p: FilterParams) -> Callable[[str], int]:
    if p.unit == "chars":
        return len
    if p.tokenizer_path:
        from transformers import AutoTokenizer  # only when the user asked for exact counts

        path = Path(p.tokenizer_path)
        if not path.exists():
            raise LoRAFactoryError(
                "REFINE_INVALID_PARAMS",
                f"トークナイザー「{path.name}」が見つかりません。",
                f"Tokenizer '{path.name}' was not found.",
                http_status=400,
                detail={"op": "filter", "field": "tokenizer_path"},
            )
        tokenizer = AutoTokenizer.from_pretrained(path)
        return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])
    return estimate_tokens


def op_filter(rows: list[dict[str, Any]], p: FilterParams, ctx: Any) -> _Result:
    count = _token_counter(p)
    res = _Result()
    for row in rows:
        text = row_text(row)
        length = count(text) if (p.min_length is not None or p.max_length is not None) else 0
        if p.drop_empty_answers and has_empty_answer(row):
            res.drop("empty_answer", row)
        elif p.min_length is not None and length < p.min_length:
            res.drop("too_short", row, length=length)
        elif p.max_length is not None and length > p.max_length:
            res.drop("too_long", row, length=length)
        elif p.min_japanese_ratio > 0 and (ratio := japanese_ratio(text)) < p.min_japanese_ratio:
            res.drop("low_japanese_ratio", row, ratio=round(ratio, 3))
        else:
            res.rows.append(row)
    return res


def op_dedup_exact(rows: list[dict[str, Any]], p: DedupExactParams, ctx: Any) -> _Result:
    res = _Result()
    first: dict[str, int] = {}
    for row in rows:
        digest = hashlib.sha256(_dedup_text(row, p.scope).encode("utf-8")).hexdigest()
        if digest in first:
            res.drop("duplicate_exact", row, duplicate_of=_short(res.rows[first[digest]]))
            continue
        first[digest] = len(res.rows)
        res.rows.append(row)
    return res


def op_dedup_near(rows: list[dict[str, Any]], p: DedupNearParams, ctx: Any) -> _Result:
    texts = [_dedup_text(r, p.scope) for r in rows]
    duplicates = minhash.find_near_duplicates(texts, p.threshold, p.num_perm, p.ngram, p.seed)
    res = _Result()
    bands, rows_per_band = minhash.optimal_bands(round(p.threshold, 4), p.num_perm)
    res.extra["lsh"] = {"bands": bands, "rows": rows_per_band}
    for index, row in enumerate(rows):
        if index in duplicates:
            kept, similarity = duplicates[index]
            res.drop("duplicate_near", row, duplicate_of=_short(rows[kept]), similarity=round(similarity, 3))
        else:
            res.rows.append(row)
    return res


def op_pii_mask(rows: list[dict[str, Any]], p: PiiMaskParams, ctx: Any) -> _Result:
    res = _Result()
    for row in rows:
        found: Counter[str] = Counter()

        def mask(text: str, found: Counter[str] = found) -> str:
            new, counts = pii.mask_pii(text, email=p.email, phone=p.phone, url=p.url)
            found.update({k: v for k, v in counts.items() if v})
            return new

        new = _map_contents(row, mask)
        for kind, n in found.items():
            res.changed[f"masked_{kind}"] += n
        if found:
            res.changed["rows_masked"] += 1
            res.example("pii_masked", {"before": _short(row), "after": _short(new)})
        res.rows.append(new)
    return res


def op_evol_instruct(rows: list[dict[str, Any]], p: evol.EvolParams, ctx: Any, op_index: int = 0) -> _Result:
    res = _Result()
    res.rows, info = evol.run_evol(rows, p, ctx, op_index=op_index)
    res.extra.update({k: v for k, v in info.items() if k != "examples"})
    for item in info["examples"]:
        res.example(f"evol_{item['reason']}", item)
    for row in res.rows[len(rows):][:MAX_EXAMPLES]:
        res.example("evolved", {"text": _short(row)})
    return res


_RUN: dict[str, Callable[..., _Result]] = {
    "normalize": op_normalize, "filter": op_filter, "dedup_exact": op_dedup_exact, "dedup_near": op_dedup_near,
    "pii_mask": op_pii_mask, "evol_instruct": op_evol_instruct,
}
OPERATIONS = OperationRegistry([
    Operation("normalize", NormalizeParams, "正規化", "Normalize",
              "NFKC 正規化・空白の整理・制御文字の除去を行います。",
              "NFKC normalisation, whitespace collapsing and control-character removal."),
    Operation("filter", FilterParams, "フィルタ", "Filter",
              "長さ(文字数またはトークン数)、空の回答、日本語の割合で行を除外します。",
              "Drop rows by length (characters or tokens), empty answers, or share of Japanese."),
    Operation("dedup_exact", DedupExactParams, "完全重複の除去", "Exact deduplication",
              "正規化したテキストのハッシュが同じ行を除去します(最初の行を残します)。",
              "Remove rows whose normalised text hashes the same (the first one is kept)."),
    Operation("dedup_near", DedupNearParams, "近似重複の除去 (MinHash)", "Near-duplicate removal (MinHash)",
              "文字 n-gram の MinHash LSH で類似度がしきい値以上の行を除去します。",
              "MinHash LSH over character n-grams; rows at or above the Jaccard threshold are removed."),
    Operation("pii_mask", PiiMaskParams, "個人情報のマスク", "PII masking",
              "メールアドレス・電話番号(・URL)を <EMAIL> / <PHONE> / <URL> に置き換えます。",
              "Replace e-mail addresses, phone numbers (and URLs) with <EMAIL> / <PHONE> / <URL>."),
    Operation("evol_instruct", evol.EvolParams, "Evol-Instruct (指示の進化)", "Evol-Instruct",
              "LLM で指示をより複雑・多様に書き換え、回答を生成し、失敗した進化を除外して追加します。",
              "Let an LLM rewrite instructions into harder / rarer ones, answer them, eliminate failed "
              "evolutions and add the survivors."),
], titles_ja=TITLES_JA, http_status=400)
# the forms in Japanese: descriptions, labelled choices, titled generator kinds (schema_ja.localise)
REFINE_OPERATIONS: dict[str, dict[str, Any]] = {
    name: dict(entry, params_schema=localise(entry["params_schema"], {"max_length": "これより長い行を除外します"}))
    for name, entry in OPERATIONS.describe().items()}


# -- the job ------------------------------------------------------------------------------------

def validate_operations(operations: Any) -> list[tuple[str, BaseModel]]:
    """Check every operation and its parameters before any work starts (400 naming the step)."""
    return OPERATIONS.validate(operations)


def _resolve_ref(workspace: Any, value: str, folder: str, what_ja: str, what_en: str) -> str:
    path = workspace.resolve_ref(value, folder, "text")
    if not path.is_dir():
        raise LoRAFactoryError("REFINE_INVALID_PARAMS", f"{what_ja}「{value}」が見つかりません。",
                               f"{what_en} '{value}' was not found.", http_status=404, detail={"value": value})
    return str(path)


def resolve_operations(operations: Any, workspace: Any) -> tuple[list[dict[str, Any]], bool]:
    """Validate the operations, fill in defaults, and turn model / adapter references into absolute
    paths inside the workspace (a client's own ``*_path`` values are replaced, never trusted).

    :return: the operations and whether one of them loads a model (a GPU-bound job).
    """
    resolved, uses_gpu = [], False
    for name, params in validate_operations(operations):
        data = params.model_dump(mode="json")
        if name == "filter":
            data["tokenizer_path"] = _resolve_ref(workspace, data["tokenizer"], "models", "モデル", "Model") \
                if data.get("tokenizer") else None
        generator = data.get("generator") if name == "evol_instruct" else None
        if isinstance(generator, dict) and generator.get("type") == "local":
            if not generator.get("model"):
                raise LoRAFactoryError("REFINE_INVALID_PARAMS", "ローカル生成には model を指定してください。",
                                       "A local generator needs 'model' (e.g. models/text/tiny).",
                                       detail={"op": name, "field": "generator.model"})
            generator["model_path"] = _resolve_ref(workspace, generator["model"], "models", "モデル", "Model")
            generator["adapter_path"] = _resolve_ref(workspace, generator["adapter"], "lora_adapters",
                                                     "アダプタ", "Adapter") if generator.get("adapter") else None
            uses_gpu = True
        resolved.append({"op": name, "params": data})
    return resolved, uses_gpu


def run_refine(spec: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Load ``spec["dataset"]``, apply ``spec["operations"]`` in order, write
    ``ctx.output_dir / f"{output_name}.jsonl"`` and return the report (see the hook's contract)."""
    operations = validate_operations(spec.get("operations"))
    output_name = safe_name(str(spec.get("output_name") or ""), "output_name")
    if output_name.lower().endswith(".jsonl"):
        output_name = output_name[: -len(".jsonl")]
    rows = load_conversations(Path(spec["dataset"]), spec.get("dataset_options") or {})
    rows_in = len(rows)
    run = RefineReport(MAX_EXAMPLES)
    per_operation: list[dict[str, Any]] = []
    stopped = False
    for index, (name, params) in enumerate(operations):
        if ctx.should_stop():
            stopped = True
            break
        before = len(rows)
        fn = _RUN[name]
        res = fn(rows, params, ctx, op_index=index) if name == "evol_instruct" else fn(rows, params, ctx)
        rows = res.rows
        run.merge(res)
        entry = {"op": name, "params": params.model_dump(mode="json"), "rows_in": before, "rows_out": len(rows),
                 "removed": dict(res.removed), "changed": dict(res.changed), **res.extra}
        if name == "evol_instruct" and isinstance(entry["params"].get("generator"), dict):
            entry["params"]["generator"].pop("api_key", None)  # never store a secret in the lineage
        per_operation.append(entry)
        stopped = stopped or bool(res.extra.get("stopped"))
        summary = ", ".join(f"{k}={v}" for k, v in {**res.removed, **res.changed}.items()) or "no change"
        ctx.log(f"[refine] {name}: {before} -> {len(rows)} rows ({summary})")
        ctx.progress(index + 1, len(operations), op=name, rows=len(rows))
        if stopped:
            break
    output_file = f"{output_name}.jsonl"
    body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    write_text_atomic(Path(ctx.output_dir) / output_file, body)
    ctx.log(f"[refine] wrote {len(rows)} rows to {output_file}")
    return {
        "rows_in": rows_in,
        "rows_out": len(rows),
        "removed": dict(run.removed),
        "per_operation": per_operation,
        "examples": run.examples,
        "output_file": output_file,
        # preference rows stay preference data (pairs / KTO labels read back by the preference reader)
        "output": {"kind": "file", "name": output_file,
                   "format": "preference" if any("preference" in r for r in rows) else "openai"},
        "stopped": stopped,
    }
