"""Read a dataset file into raw records, each tagged with the physical line it starts on.

Why line numbers everywhere: when row 4 812 of a user's file is broken, "line 4812: output is
missing" is the message that lets them fix it in a text editor. JSON arrays are therefore parsed
element by element with ``raw_decode`` (so each element knows its first line), CSV records report
the line they start on (a quoted field may span several lines), and plain text reports the first
line of each document.

Plain ``.txt`` files: one document per block separated by one or more blank lines (paragraphs stay
together, which suits continued pre-training); ``text_split="line"`` makes every non-empty line a
document instead.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lora_factory.kit import LoRAFactoryError
from lora_factory.plugins.text.encodings import decode_bytes

SUPPORTED_EXTENSIONS = (".json", ".jsonl", ".csv", ".parquet", ".txt")


@dataclass
class RawRecord:
    """One record as found in the file: ``line`` is 1-based (for Parquet: the row number)."""

    line: int
    value: Any


@dataclass
class RawFile:
    """What a reader found: records, the encoding used, the column names, and per-line errors."""

    records: list[RawRecord]
    encoding: str
    columns: list[str]
    errors: list[dict[str, Any]] = field(default_factory=list)
    kind: str = "records"  # "records" (dicts) or "text" (plain documents)


def _line_of(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def _columns(records: list[RawRecord]) -> list[str]:
    seen: dict[str, None] = {}
    for rec in records[:200]:
        if isinstance(rec.value, dict):
            for key in rec.value:
                seen.setdefault(str(key), None)
    return list(seen)


def unsupported_extension(path: Path) -> LoRAFactoryError:
    return LoRAFactoryError(
        "DATASET_UNSUPPORTED_FORMAT",
        f"「{path.name}」の形式には対応していません。対応形式: {', '.join(SUPPORTED_EXTENSIONS)}",
        f"'{path.name}' has an unsupported file type. Supported: {', '.join(SUPPORTED_EXTENSIONS)}",
        http_status=422,
        detail={"file": path.name, "extension": path.suffix.lower(), "supported": list(SUPPORTED_EXTENSIONS)},
    )


def read_raw(path: Path, encoding: str = "auto", text_split: str = "blank_line") -> RawFile:
    """Read ``path`` by its extension. Syntax errors become ``errors`` entries, not exceptions,
    so the caller can report every broken line at once."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        raise unsupported_extension(path)
    if ext == ".parquet":
        return _read_parquet(path)
    text, used = decode_bytes(path.read_bytes(), encoding, path.name)
    if ext == ".jsonl":
        return _read_jsonl(text, used)
    if ext == ".json":
        return _read_json(text, used)
    if ext == ".csv":
        return _read_csv(text, used)
    return _read_txt(text, used, text_split)


def _read_jsonl(text: str, encoding: str) -> RawFile:
    records: list[RawRecord] = []
    errors: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(RawRecord(number, json.loads(line)))
        except json.JSONDecodeError as exc:
            errors.append({"line": number, "reason": f"invalid JSON: {exc.msg} (column {exc.colno})"})
    return RawFile(records, encoding, _columns(records), errors)


def _read_json(text: str, encoding: str) -> RawFile:
    """A JSON array (the usual case), a single object, or JSON lines saved with a .json name."""
    stripped = text.lstrip()
    if not stripped.startswith("["):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            return _read_jsonl(text, encoding)  # JSON lines under a .json name (LLaMA-Factory accepts it)
        start = len(text) - len(stripped)
        records = [RawRecord(_line_of(text, start), value)]
        return RawFile(records, encoding, _columns(records))

    decoder = json.JSONDecoder()
    records: list[RawRecord] = []
    pos = text.index("[") + 1
    end = len(text)

    def skip_ws(i: int) -> int:
        while i < end and text[i] in " \t\r\n":
            i += 1
        return i

    pos = skip_ws(pos)
    if pos < end and text[pos] == "]":
        return RawFile([], encoding, [], [])
    while True:
        pos = skip_ws(pos)
        try:
            value, after = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            line = _line_of(text, exc.pos)
            err = {"line": line, "reason": f"invalid JSON: {exc.msg} (column {exc.colno})"}
            # The rest of the array cannot be located reliably once the syntax is broken.
            return RawFile(records, encoding, _columns(records), [err])
        records.append(RawRecord(_line_of(text, pos), value))
        pos = skip_ws(after)
        if pos < end and text[pos] == ",":
            pos += 1
            continue
        if pos < end and text[pos] == "]":
            if skip_ws(pos + 1) < end:
                err = {"line": _line_of(text, skip_ws(pos + 1)), "reason": "invalid JSON: extra data after the array"}
                return RawFile(records, encoding, _columns(records), [err])
            return RawFile(records, encoding, _columns(records), [])
        where = _line_of(text, min(pos, end - 1) if end else 0)
        reason = "invalid JSON: expected ',' or ']' between array elements"
        return RawFile(records, encoding, _columns(records), [{"line": where, "reason": reason}])


def _read_csv(text: str, encoding: str) -> RawFile:
    reader = csv.reader(io.StringIO(text, newline=""))
    records: list[RawRecord] = []
    errors: list[dict[str, Any]] = []
    header: list[str] | None = None
    previous_end = 0
    try:
        for row in reader:
            start = previous_end + 1
            previous_end = reader.line_num
            if not row or all(not cell.strip() for cell in row):
                continue
            if header is None:
                header = [cell.strip() for cell in row]
                if len(set(header)) != len(header) or any(not h for h in header):
                    errors.append({"line": start, "reason": "CSV header has empty or duplicate column names"})
                continue
            if len(row) != len(header):
                errors.append({
                    "line": start,
                    "reason": f"CSV record has {len(row)} fields, the header has {len(header)}",
                })
                continue
            records.append(RawRecord(start, dict(zip(header, row, strict=True))))
    except csv.Error as exc:
        errors.append({"line": reader.line_num, "reason": f"invalid CSV: {exc}"})
    return RawFile(records, encoding, header or [], errors)


def _read_txt(text: str, encoding: str, text_split: str) -> RawFile:
    records: list[RawRecord] = []
    lines = text.splitlines()
    if text_split == "line":
        for number, line in enumerate(lines, start=1):
            if line.strip():
                records.append(RawRecord(number, line.strip()))
    else:
        block: list[str] = []
        block_start = 0
        for number, line in enumerate(lines, start=1):
            if line.strip():
                if not block:
                    block_start = number
                block.append(line.rstrip())
            elif block:
                records.append(RawRecord(block_start, "\n".join(block)))
                block = []
        if block:
            records.append(RawRecord(block_start, "\n".join(block)))
    return RawFile(records, encoding, ["text"], [], kind="text")


def _read_parquet(path: Path) -> RawFile:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - pyarrow is a declared dependency
        raise LoRAFactoryError(
            "DATASET_UNSUPPORTED_FORMAT",
            "Parquet を読むには pyarrow が必要です。",
            "Reading Parquet needs pyarrow.",
            http_status=422,
            detail={"file": path.name},
        ) from exc
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise LoRAFactoryError(
            "DATASET_INVALID",
            f"「{path.name}」を Parquet として読めません: {exc}",
            f"'{path.name}' is not a readable Parquet file: {exc}",
            http_status=422,
            detail={"file": path.name, "errors": [{"line": 0, "reason": str(exc)}], "error_count": 1},
        ) from exc
    rows = table.to_pylist()
    records = [RawRecord(i, row) for i, row in enumerate(rows, start=1)]
    return RawFile(records, "binary", list(table.column_names), [])
