"""Refinement: normalise, filter, exact / near dedup (MinHash LSH), PII masking, the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lora_factory.core.errors import LoRAFactoryError
from lora_factory.core.jobs.context import JobContext
from lora_factory.plugins.text import minhash
from lora_factory.plugins.text.pii import mask_pii
from lora_factory.plugins.text.refine import REFINE_OPERATIONS, run_refine

BASE = [
    ("日本の首都はどこですか?", "日本の首都は東京です。政治と経済の中心で、多くの人が暮らしています。"),
    ("富士山の標高を教えてください。", "富士山の標高は3776メートルで、日本で最も高い山として知られています。"),
    ("機械学習とは何ですか?", "機械学習はデータから規則を学び、予測や分類を行う技術の総称です。"),
    ("おすすめの朝食を教えてください。", "ご飯と味噌汁、焼き魚の和朝食は栄養のバランスがよくおすすめです。"),
    ("春の季語を挙げてください。", "桜、うぐいす、菜の花などが春を表す代表的な季語として使われます。"),
]


def alpaca(instruction: str, output: str, inp: str = "") -> dict:
    return {"instruction": instruction, "input": inp, "output": output}


def make_ctx(tmp_path: Path) -> JobContext:
    return JobContext(job_id="t", workspace=None, run_dir=tmp_path / "run", log_path=tmp_path / "log.txt")


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def read_output(ctx: JobContext, report: dict) -> list[dict]:
    path = ctx.output_dir / report["output_file"]
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def users(rows: list[dict]) -> list[str]:
    return [next(m["content"] for m in r["messages"] if m["role"] == "user") for r in rows]


def test_operations_are_described():
    assert set(REFINE_OPERATIONS) == {"normalize", "filter", "dedup_exact", "dedup_near", "pii_mask", "evol_instruct"}
    for name, op in REFINE_OPERATIONS.items():
        assert op["label_ja"] and op["label_en"] and op["description_ja"], name
        assert op["params_schema"]["type"] == "object"
    near = REFINE_OPERATIONS["dedup_near"]["params_schema"]["properties"]
    assert near["num_perm"]["default"] == 128 and near["ngram"]["default"] == 5 and near["threshold"]["default"] == 0.7


def test_exact_and_near_duplicates_removed_distinct_kept(tmp_path):
    rows = [alpaca(q, a) for q, a in BASE]
    rows.append(alpaca(" 日本の首都はどこですか? ", "日本の首都は東京です。政治と経済の中心で、多くの人が暮らしています。"))  # exact
    rows.append(alpaca("日本の首都はどこですか?", "日本の首都は東京です。政治と経済の中心で、多くの人々が暮らしています。"))  # near
    rows.append(alpaca("富士山の標高を教えて下さい。", "富士山の標高は3776メートルで、日本で最も高い山として知られています!"))  # near
    # distinct although it shares a topic with row 0
    rows.append(alpaca("日本の首都の人口は?", "東京都の人口はおよそ1400万人で、日本の都道府県で最も多いです。"))
    src = write_jsonl(tmp_path / "d.jsonl", rows)
    ctx = make_ctx(tmp_path)
    report = run_refine({"dataset": str(src), "operations": [
        {"op": "normalize", "params": {}},
        {"op": "dedup_exact", "params": {}},
        {"op": "dedup_near", "params": {"threshold": 0.7}},
    ], "output_name": "dedup"}, ctx)
    assert report["rows_in"] == 9 and report["rows_out"] == 6
    assert report["removed"] == {"duplicate_exact": 1, "duplicate_near": 2}
    out = read_output(ctx, report)
    assert users(out) == [q for q, _ in BASE] + ["日本の首都の人口は?"]
    ops = report["per_operation"]
    assert [(o["op"], o["rows_in"], o["rows_out"]) for o in ops] == [
        ("normalize", 9, 9), ("dedup_exact", 9, 8), ("dedup_near", 8, 6)]
    assert ops[0]["changed"]["normalized"] >= 1
    assert ops[2]["lsh"]["bands"] * ops[2]["lsh"]["rows"] <= 128
    ex = report["examples"]["duplicate_near"][0]
    assert ex["similarity"] >= 0.7 and "日本の首都" in ex["duplicate_of"]
    assert report["output_file"] == "dedup.jsonl"
    log = (tmp_path / "log.txt").read_text(encoding="utf-8")
    assert "dedup_near: 8 -> 6" in log
    metrics = [json.loads(line) for line in ctx.metrics_path.read_text(encoding="utf-8").splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3] and metrics[-1]["max_steps"] == 3


def test_minhash_estimate_tracks_true_jaccard_and_is_seeded():
    a = "機械学習はデータから規則を学び、予測や分類を行う技術の総称です。" * 2
    b = a.replace("予測", "推定")
    h1, h2 = minhash.MinHasher(num_perm=256, seed=1), minhash.MinHasher(num_perm=256, seed=1)
    est = minhash.jaccard_estimate(h1.signature(a), h1.signature(b))
    assert abs(est - minhash.exact_jaccard(a, b, 5)) < 0.12
    assert (h1.signature(a) == h2.signature(a)).all()
    bands, rows = minhash.optimal_bands(0.7, 128)
    assert bands * rows <= 128 and bands > 1 and rows > 1
    assert minhash.optimal_bands(0.9, 128)[1] > minhash.optimal_bands(0.3, 128)[1]  # stricter -> longer bands


def test_pii_masking(tmp_path):
    rows = [
        alpaca("連絡先を教えて", "taro.yamada@example.co.jp または 03-1234-5678 へどうぞ。"),
        alpaca("携帯は?", "090-1234-5678 か +81 90-1234-5678、URL は https://example.jp/contact です。"),
        alpaca("会議はいつ?", "2024-01-15 の 10:00 から、会議室 1203 で行います。"),
    ]
    src = write_jsonl(tmp_path / "pii.jsonl", rows)
    ctx = make_ctx(tmp_path)
    report = run_refine({"dataset": str(src), "operations": [{"op": "pii_mask", "params": {"url": True}}],
                         "output_name": "masked"}, ctx)
    out = read_output(ctx, report)
    answers = [r["messages"][1]["content"] for r in out]
    assert answers[0] == "<EMAIL> または <PHONE> へどうぞ。"
    assert answers[1] == "<PHONE> か <PHONE>、URL は <URL> です。"
    assert answers[2] == rows[2]["output"]  # dates and room numbers are not phone numbers
    changed = report["per_operation"][0]["changed"]
    assert changed == {"masked_email": 1, "masked_phone": 3, "masked_url": 1, "rows_masked": 2}
    assert report["rows_out"] == 3 and report["examples"]["pii_masked"][0]["after"].startswith("連絡先")
    assert mask_pii("電話 (03) 1234-5678、フリーダイヤル 0120-123-456")[0] == "電話 <PHONE>、フリーダイヤル <PHONE>"
    assert mask_pii("https://x.jp", url=False)[0] == "https://x.jp"


def test_normalize(tmp_path):
    rows = [alpaca("ＡＢＣ　と　ｶﾀｶﾅ\u200b を説明", "  答え\x07です。  \n\n\n\n次の段落 ")]
    src = write_jsonl(tmp_path / "n.jsonl", rows)
    ctx = make_ctx(tmp_path)
    report = run_refine({"dataset": str(src), "operations": [{"op": "normalize", "params": {}}],
                         "output_name": "norm"}, ctx)
    msgs = read_output(ctx, report)[0]["messages"]
    assert msgs[0]["content"] == "ABC と カタカナ を説明"
    assert msgs[1]["content"] == "答えです。\n\n次の段落"
    assert report["per_operation"][0]["changed"] == {"normalized": 1}


def test_filter_by_length_empty_answer_and_japanese_ratio(tmp_path):
    rows = [
        alpaca("短い", "はい"),  # 5 chars in all -> too short
        alpaca("長い質問", "あ" * 300),  # too long
        alpaca("空の回答", ""),  # empty answer
        alpaca("Explain recursion briefly please", "A function that calls itself until a base case."),  # not Japanese
        alpaca("再帰とは何ですか?", "関数が自分自身を呼び出す手法で、終了条件が必要です。"),
    ]
    src = write_jsonl(tmp_path / "f.jsonl", rows)
    ctx = make_ctx(tmp_path)
    report = run_refine({"dataset": str(src), "operations": [{"op": "filter", "params": {
        "min_length": 10, "max_length": 200, "min_japanese_ratio": 0.5}}], "output_name": "filtered"}, ctx)
    assert report["removed"] == {"too_short": 1, "too_long": 1, "empty_answer": 1, "low_japanese_ratio": 1}
    assert users(read_output(ctx, report)) == ["再帰とは何ですか?"]
    assert report["examples"]["too_long"][0]["length"] == len("長い質問\n" + "あ" * 300)
    # token unit with the cheap estimate: ~1 token per Japanese character
    ctx2 = make_ctx(tmp_path / "b")
    report2 = run_refine({"dataset": str(src), "operations": [{"op": "filter", "params": {
        "unit": "tokens", "max_length": 100, "drop_empty_answers": False}}], "output_name": "tok"}, ctx2)
    assert report2["removed"] == {"too_long": 1}


def test_unknown_op_and_bad_params(tmp_path):
    src = write_jsonl(tmp_path / "d.jsonl", [alpaca(q, a) for q, a in BASE])
    ctx = make_ctx(tmp_path)
    with pytest.raises(LoRAFactoryError) as err:
        run_refine({"dataset": str(src), "operations": [{"op": "normalize"}, {"op": "shuffle"}],
                    "output_name": "x"}, ctx)
    assert err.value.code == "REFINE_INVALID_OPERATION" and err.value.http_status == 400
    assert err.value.detail["position"] == 2
    with pytest.raises(LoRAFactoryError) as err:
        run_refine({"dataset": str(src), "operations": [{"op": "dedup_near", "params": {"threshold": 3}}],
                    "output_name": "x"}, ctx)
    assert err.value.code == "REFINE_INVALID_PARAMS" and err.value.detail["errors"][0]["field"] == "threshold"
    with pytest.raises(LoRAFactoryError) as err:
        run_refine({"dataset": str(src), "operations": [{"op": "filter", "params": {"min_len": 3}}],
                    "output_name": "x"}, ctx)
    assert err.value.code == "REFINE_INVALID_PARAMS"
    assert not list(ctx.output_dir.iterdir())  # nothing written for an invalid recipe


def test_text_rows_and_dataset_options(tmp_path):
    src = tmp_path / "c.csv"
    src.write_text("本文\n同じ文章です。\n同じ文章です。\n違う文章です。\n", encoding="utf-8")
    ctx = make_ctx(tmp_path)
    report = run_refine({"dataset": str(src), "dataset_options": {"format": "text", "mapping": {"text": "本文"}},
                         "operations": [{"op": "dedup_exact", "params": {}}], "output_name": "t"}, ctx)
    assert read_output(ctx, report) == [{"text": "同じ文章です。"}, {"text": "違う文章です。"}]


def test_refine_request_is_validated_and_filled_in_before_queueing(tmp_path):
    """Through the host: a bad parameter is a 400 at submit; a good request stores every default."""
    import json as _json

    from fastapi.testclient import TestClient

    from lora_factory.app import create_app

    home = tmp_path / "ws"
    (home / "datasets" / "text").mkdir(parents=True)
    (home / "datasets" / "text" / "d.jsonl").write_text(
        _json.dumps({"instruction": "q", "output": "a"}) + "\n", encoding="utf-8")
    with TestClient(create_app(home, start_scheduler=False)) as c:
        r = c.post("/api/datasets/refine", json={"modality": "text", "dataset": "d.jsonl", "output_name": "x",
                                                  "operations": [{"op": "dedup_near", "params": {"threshold": 7}}]})
        assert r.status_code == 400 and r.json()["error"]["code"] == "REFINE_INVALID_PARAMS"
        r = c.post("/api/datasets/refine", json={"modality": "text", "dataset": "d.jsonl", "output_name": "x",
                                                  "operations": [{"op": "dedup_near"}]})
        job_id = r.json()["job_id"]
        config = _json.loads((home / "runs" / job_id / "config.json").read_text(encoding="utf-8"))
        assert config["spec"]["operations"][0]["params"]["threshold"] == 0.7
        assert config["spec"]["operations"][0]["params"]["num_perm"] == 128


def test_local_generator_paths_come_from_workspace_refs_only(tmp_path):
    """A client-given absolute model_path is replaced by the resolved workspace reference."""
    import json as _json

    from fastapi.testclient import TestClient

    from lora_factory.app import create_app

    home = tmp_path / "ws"
    (home / "datasets" / "text").mkdir(parents=True)
    (home / "models" / "text" / "m").mkdir(parents=True)
    (home / "lora_adapters" / "text" / "a").mkdir(parents=True)
    (home / "datasets" / "text" / "d.jsonl").write_text(
        _json.dumps({"instruction": "q", "output": "a"}) + "\n", encoding="utf-8")
    with TestClient(create_app(home, start_scheduler=False)) as c:
        op = {"op": "evol_instruct", "params": {"generator": {"type": "local", "model": "m", "adapter": "a",
                                                              "model_path": "/etc", "adapter_path": "/tmp"}}}
        r = c.post("/api/datasets/refine", json={"modality": "text", "dataset": "d.jsonl", "output_name": "x",
                                                  "operations": [op]})
        assert r.status_code == 200, r.text
        config = _json.loads((home / "runs" / r.json()["job_id"] / "config.json").read_text(encoding="utf-8"))
        generator = config["spec"]["operations"][0]["params"]["generator"]
        assert generator["model_path"] == str((home / "models" / "text" / "m").resolve())
        assert generator["adapter_path"] == str((home / "lora_adapters" / "text" / "a").resolve())
        flt = {"op": "filter", "params": {"unit": "tokens", "tokenizer": "m", "tokenizer_path": "/etc"}}
        r = c.post("/api/datasets/refine", json={"modality": "text", "dataset": "d.jsonl", "output_name": "z",
                                                  "operations": [flt]})
        config = _json.loads((home / "runs" / r.json()["job_id"] / "config.json").read_text(encoding="utf-8"))
        assert config["spec"]["operations"][0]["params"]["tokenizer_path"] == str((home / "models" / "text" / "m").resolve())
        op["params"]["generator"]["model"] = "../../etc"
        r = c.post("/api/datasets/refine", json={"modality": "text", "dataset": "d.jsonl", "output_name": "y",
                                                  "operations": [op]})
        assert r.status_code == 400 and r.json()["error"]["code"] == "UNSAFE_PATH"


def test_every_form_field_has_a_japanese_title_and_host_set_paths_are_hidden():
    """The UI is Japanese-first: every parameter the forms show needs a title_ja."""
    import json as _json

    from lora_factory.plugins.text.presets import TRAIN_PARAMS_SCHEMA
    from lora_factory.plugins.text.refine import REFINE_OPERATIONS

    def fields(schema):
        yield from (schema.get("properties") or {}).items()
        for definition in (schema.get("$defs") or {}).values():
            yield from fields(definition)

    schemas = [TRAIN_PARAMS_SCHEMA] + [op["params_schema"] for op in REFINE_OPERATIONS.values()]
    missing = sorted({name for schema in schemas for name, prop in fields(schema) if not prop.get("title_ja")})
    assert not missing, f"no title_ja for {missing}"
    dumped = _json.dumps(schemas)
    assert "model_path" not in dumped and "tokenizer_path" not in dumped and "adapter_path" not in dumped
