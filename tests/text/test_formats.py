"""Dataset formats: every format in every file type, encodings, line-numbered errors, mapping,
LLaMA-Factory dataset_info.json import."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from lora_factory.core.errors import LoRAFactoryError
from lora_factory.plugins.text.dataset_info import import_dataset_info, import_dataset_info_report
from lora_factory.plugins.text.formats import (
    DATASET_EXTENSIONS,
    DATASET_FORMATS,
    inspect_dataset_file,
    load_conversations,
)

ALPACA = [
    {"instruction": "日本の首都は?", "input": "", "output": "東京です。"},
    {"instruction": "翻訳してください", "input": "Hello", "output": "こんにちは", "system": "あなたは翻訳者です。",
     "history": [["こんばんは", "こんばんは!"]]},
]
SHAREGPT = [
    {"conversations": [{"from": "human", "value": "富士山の高さは?"}, {"from": "gpt", "value": "3776mです。"}],
     "system": "簡潔に答えて"},
    {"conversations": [{"from": "human", "value": "こんにちは"}, {"from": "gpt", "value": "こんにちは!"},
                       {"from": "human", "value": "元気?"}, {"from": "gpt", "value": "元気です。"}]},
]
OPENAI = [
    {"messages": [{"role": "system", "content": "丁寧に"}, {"role": "user", "content": "おはよう"},
                  {"role": "assistant", "content": "おはようございます。"}]},
    {"messages": [{"role": "user", "content": [{"type": "text", "text": "1+1は?"}]},
                  {"role": "assistant", "content": "2です。"}]},
]
TEXT = [{"text": "吾輩は猫である。名前はまだ無い。"}, {"text": "どこで生れたかとんと見当がつかぬ。"}]

EXPECTED_FIRST = {
    "alpaca": {"messages": [{"role": "user", "content": "日本の首都は?"}, {"role": "assistant", "content": "東京です。"}]},
    "sharegpt": {"messages": [{"role": "system", "content": "簡潔に答えて"},
                              {"role": "user", "content": "富士山の高さは?"},
                              {"role": "assistant", "content": "3776mです。"}]},
    "openai": {"messages": OPENAI[0]["messages"]},
    "text": {"text": TEXT[0]["text"]},
}
SAMPLES = {"alpaca": ALPACA, "sharegpt": SHAREGPT, "openai": OPENAI, "text": TEXT}


def _cell(value):
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def write(path: Path, rows: list[dict], ext: str, encoding: str = "utf-8") -> Path:
    """Write ``rows`` as ``ext`` (json, jsonl, csv, parquet)."""
    path = path.with_suffix(ext)
    if ext == ".json":
        path.write_text(json.dumps(rows, ensure_ascii=False, indent=2), encoding=encoding)
    elif ext == ".jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding=encoding)
    elif ext == ".csv":
        columns = list(dict.fromkeys(k for r in rows for k in r))
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        for r in rows:
            writer.writerow([_cell(r.get(c, "")) for c in columns])
        path.write_bytes(buf.getvalue().encode(encoding))
    elif ext == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns = list(dict.fromkeys(k for r in rows for k in r))
        table = pa.table({c: [_cell(r.get(c, "")) for r in rows] for c in columns})
        pq.write_table(table, path)
    return path


def test_contract_constants():
    assert DATASET_FORMATS == ["alpaca", "sharegpt", "openai", "text", "preference"]
    assert DATASET_EXTENSIONS == [".json", ".jsonl", ".csv", ".parquet", ".txt"]


@pytest.mark.parametrize("ext", [".json", ".jsonl", ".csv", ".parquet"])
@pytest.mark.parametrize("fmt", ["alpaca", "sharegpt", "openai", "text"])
def test_every_format_in_every_file_type(tmp_path, fmt, ext):
    path = write(tmp_path / f"{fmt}_data", SAMPLES[fmt], ext)
    info = inspect_dataset_file(path, {})
    assert info["format"] == fmt
    assert info["rows"] == 2
    assert info["preview"][0] == EXPECTED_FIRST[fmt]
    rows = load_conversations(path)
    assert rows[0] == EXPECTED_FIRST[fmt]
    if fmt == "alpaca":
        assert rows[1]["messages"] == [
            {"role": "system", "content": "あなたは翻訳者です。"},
            {"role": "user", "content": "こんばんは"}, {"role": "assistant", "content": "こんばんは!"},
            {"role": "user", "content": "翻訳してください\nHello"}, {"role": "assistant", "content": "こんにちは"},
        ]
        assert info["stats"]["turns"]["multi_turn"] == 1
        assert info["stats"]["turns"]["with_system"] == 1
    if fmt == "sharegpt":
        assert [m["role"] for m in rows[1]["messages"]] == ["user", "assistant", "user", "assistant"]
    if fmt == "openai":
        assert rows[1]["messages"][0] == {"role": "user", "content": "1+1は?"}


def test_plain_text_blocks_and_lines(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("一段落目の一行目\n一段落目の二行目\n\n\n二段落目\n", encoding="utf-8")
    info = inspect_dataset_file(path, {})
    assert info["format"] == "text" and info["rows"] == 2
    assert info["preview"][0] == {"text": "一段落目の一行目\n一段落目の二行目"}
    assert info["txt_split"] == "paragraph" and info["read_options"] == {"txt_split": "paragraph"}
    assert len(load_conversations(path, {"txt_split": "line"})) == 3
    assert len(load_conversations(path, {"text_split": "line"})) == 3  # the option's old name still works


def test_stats_and_preview_rows(tmp_path):
    rows = [{"instruction": f"質問{i}", "input": "", "output": "" if i == 3 else "回答" * i} for i in range(1, 8)]
    path = write(tmp_path / "s", rows, ".jsonl")
    info = inspect_dataset_file(path, {"preview_rows": 2})
    assert len(info["preview"]) == 2
    stats = info["stats"]
    assert stats["rows"] == 7 and stats["empty_answers"] == 1
    assert stats["chars"]["min"] == len("質問3\n") and stats["chars"]["max"] == len("質問7\n" + "回答" * 7)
    assert stats["chars"]["min"] <= stats["chars"]["p50"] <= stats["chars"]["p90"] <= stats["chars"]["max"]
    assert stats["token_estimate"] > 0
    assert info["columns"] == ["instruction", "input", "output"]


def test_cp932_csv_with_japanese(tmp_path):
    path = write(tmp_path / "sjis", ALPACA[:1] + [{"instruction": "漢字の読み", "input": "紫陽花", "output": "あじさい"}],
                 ".csv", encoding="cp932")
    with pytest.raises(UnicodeDecodeError):
        path.read_bytes().decode("utf-8")
    info = inspect_dataset_file(path, {})
    assert info["encoding"] == "cp932"
    assert info["preview"][1]["messages"][0]["content"] == "漢字の読み\n紫陽花"


def test_utf8_bom(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ALPACA).encode())
    info = inspect_dataset_file(path, {})
    assert info["encoding"] == "utf-8-sig" and info["rows"] == 2
    csv_path = write(tmp_path / "bomcsv", ALPACA[:1], ".csv", encoding="utf-8-sig")
    assert inspect_dataset_file(csv_path, {})["columns"][0] == "instruction"  # no BOM glued to the header


def test_explicit_wrong_encoding_is_reported(tmp_path):
    path = write(tmp_path / "u8", ALPACA, ".jsonl")
    with pytest.raises(LoRAFactoryError) as err:
        inspect_dataset_file(path, {"encoding": "ascii"})
    assert err.value.code == "DATASET_ENCODING"


def test_bad_lines_in_jsonl_are_numbered(tmp_path):
    before = sorted(p.name for p in tmp_path.iterdir())
    path = tmp_path / "bad.jsonl"
    lines = [json.dumps(ALPACA[0], ensure_ascii=False), "", "{not json", json.dumps({"instruction": "q"}),
             json.dumps({"instruction": "  ", "output": "a"}), json.dumps(ALPACA[0], ensure_ascii=False)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    before.append("bad.jsonl")
    with pytest.raises(LoRAFactoryError) as err:
        load_conversations(path)
    exc = err.value
    assert exc.code == "DATASET_INVALID" and exc.http_status == 422
    errors = exc.detail["errors"]
    assert [e["line"] for e in errors] == [3, 4, 5]
    assert "invalid JSON" in errors[0]["reason"]
    assert "output" in errors[1]["reason"] and "missing" in errors[1]["reason"]
    assert "empty" in errors[2]["reason"]
    assert exc.detail["error_count"] == 3 and exc.detail["file"] == "bad.jsonl"
    assert "3 行目" in exc.message_ja
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(before)  # nothing written


def test_json_array_error_line_is_where_the_element_starts(tmp_path):
    path = tmp_path / "arr.json"
    path.write_text(
        '[\n  {"instruction": "a", "output": "b"},\n  {\n    "instruction": "c",\n    "output": ["x"]\n  }\n]\n',
        encoding="utf-8",
    )
    with pytest.raises(LoRAFactoryError) as err:
        inspect_dataset_file(path, {})
    assert err.value.detail["errors"] == [{"line": 3, "reason": "field 'output' (output) must be a string, got list"}]


def test_unknown_role_and_csv_record_line(tmp_path):
    bad = {"messages": [{"role": "wizard", "content": "x"}, {"role": "assistant", "content": "y"}]}
    path = write(tmp_path / "roles", [OPENAI[0], bad], ".jsonl")
    with pytest.raises(LoRAFactoryError) as err:
        inspect_dataset_file(path, {})
    assert err.value.detail["errors"][0]["line"] == 2 and "unknown role 'wizard'" in err.value.detail["errors"][0]["reason"]

    csv_path = tmp_path / "multi.csv"  # quoted fields span lines 2-3 and 4-5; the bad record starts on line 4
    csv_path.write_text('instruction,input,output\n"一行目\n二行目",,答え\n" \n ",,空の指示\n', encoding="utf-8")
    with pytest.raises(LoRAFactoryError) as err:
        inspect_dataset_file(csv_path, {})
    assert err.value.detail["errors"] == [{"line": 4, "reason": "field 'instruction' (instruction) is empty"}]


def test_mapping_override(tmp_path):
    rows = [{"質問": "猫の鳴き声は?", "回答": "ニャーです。", "補足": ""}]
    path = write(tmp_path / "ja_cols", rows, ".csv")
    with pytest.raises(LoRAFactoryError) as err:
        inspect_dataset_file(path, {})
    assert err.value.code == "DATASET_INVALID" and err.value.detail["columns"] == ["質問", "回答", "補足"]
    info = inspect_dataset_file(path, {"format": "alpaca", "mapping": {"instruction": "質問", "output": "回答",
                                                                        "input": "補足"}})
    assert info["preview"][0]["messages"] == [{"role": "user", "content": "猫の鳴き声は?"},
                                              {"role": "assistant", "content": "ニャーです。"}]
    sg = [{"chat": [{"speaker": "ユーザー", "said": "やあ"}, {"speaker": "AI", "said": "どうも"}]}]
    sg_path = write(tmp_path / "sg", sg, ".json")
    mapping = {"messages": "chat", "role_tag": "speaker", "content_tag": "said", "user_tag": "ユーザー",
               "assistant_tag": "AI"}
    assert load_conversations(sg_path, {"format": "sharegpt", "mapping": mapping})[0]["messages"][1] == {
        "role": "assistant", "content": "どうも"}


def test_unsupported_extension_and_empty(tmp_path):
    path = tmp_path / "data.xlsx"
    path.write_bytes(b"x")
    with pytest.raises(LoRAFactoryError) as err:
        inspect_dataset_file(path, {})
    assert err.value.code == "DATASET_UNSUPPORTED_FORMAT"
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(LoRAFactoryError) as err:
        inspect_dataset_file(empty, {})
    assert err.value.code == "DATASET_EMPTY"


def test_sample_dataset_is_valid():
    path = Path(__file__).resolve().parents[2] / "lora_factory/plugins/text/sample_data/ja_sample.jsonl"
    info = inspect_dataset_file(path, {})
    assert info["format"] == "alpaca" and 30 <= info["rows"] <= 40 and info["stats"]["empty_answers"] == 0


def test_dataset_info_import(tmp_path):
    src = tmp_path / "lf_data"
    src.mkdir()
    write(src / "my_alpaca", [{"q": "質問", "a": "回答", "sys": "システム"}], ".json")
    write(src / "my_sharegpt", [{"conv": [{"role": "user", "content": "やあ"}, {"role": "assistant", "content": "どうも"}]}],
          ".jsonl")
    (src / "corpus.txt").write_text("本文です。\n", encoding="utf-8")
    info = {
        "ja_alpaca": {"file_name": "my_alpaca.json", "columns": {"prompt": "q", "response": "a", "system": "sys"}},
        "ja_chat": {"file_name": "my_sharegpt.jsonl", "formatting": "sharegpt", "columns": {"messages": "conv"},
                    "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                             "assistant_tag": "assistant"}},
        "hub_only": {"hf_hub_url": "someone/dataset"},
        "missing": {"file_name": "nope.json"},
        "dpo": {"file_name": "my_alpaca.json", "ranking": True},
    }
    (src / "dataset_info.json").write_text(json.dumps(info, ensure_ascii=False), encoding="utf-8")
    dest = tmp_path / "datasets" / "text"
    report = import_dataset_info_report(src / "dataset_info.json", dest)
    imported = {r["name"]: r for r in report["imported"]}
    assert set(imported) == {"ja_alpaca", "ja_chat"}
    assert {s["name"] for s in report["skipped"]} == {"hub_only", "missing", "dpo"}
    reasons = {s["name"]: s["reason"] for s in report["skipped"]}
    assert "chosen" in reasons["dpo"] and "line 2" in reasons["dpo"]  # says why: no chosen / rejected
    a = imported["ja_alpaca"]
    assert a["format"] == "alpaca" and a["file"] == dest / "ja_alpaca.json" and a["file"].exists()
    assert a["mapping"] == {"instruction": "q", "output": "a", "system": "sys"}
    rows = load_conversations(a["file"], {"format": a["format"], "mapping": a["mapping"]})
    assert rows[0]["messages"][0] == {"role": "system", "content": "システム"}
    c = imported["ja_chat"]
    assert c["format"] == "openai"
    assert load_conversations(c["file"], {"format": c["format"], "mapping": c["mapping"]})[0]["messages"][1][
        "content"] == "どうも"
    # a second import collides: refused, and the existing copies are untouched
    before = a["file"].read_bytes()
    with pytest.raises(LoRAFactoryError) as err:
        import_dataset_info(src / "dataset_info.json", dest)
    assert err.value.code == "OUTPUT_EXISTS"
    assert a["file"].read_bytes() == before
    assert sorted(p.name for p in dest.iterdir()) == ["ja_alpaca.json", "ja_chat.jsonl"]
