"""Text data at scale and in full: packing, .txt splitting, long documents, tool calls, preference
data, the token cache. Fixtures are our own, in the shapes of LLaMA-Factory's demo files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from lora_factory.core.errors import LoRAFactoryError
from lora_factory.plugins.text.batching import PackedDataset
from lora_factory.plugins.text.formats import inspect_dataset_file, load_conversations
from lora_factory.plugins.text.packing import best_fit_decreasing, first_fit_reference
from lora_factory.plugins.text.presets import resolve_train_params
from lora_factory.plugins.text.train_data import (
    IGNORE_INDEX,
    EncodeConfig,
    EncodedSet,
    encode_in_process,
    encode_row,
)

TOOLS = [{"name": "get_weather", "description": "Weather of a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
# glaive_toolcall_en_demo.json's shape: ShareGPT, function_call / observation turns, tools as JSON text
SHAREGPT_TOOL_ROW = {"conversations": [
    {"from": "human", "value": "東京の天気は?"},
    {"from": "function_call", "value": json.dumps({"name": "get_weather", "arguments": {"city": "東京"}},
                                                  ensure_ascii=False)},
    {"from": "observation", "value": json.dumps({"weather": "晴れ"}, ensure_ascii=False)},
    {"from": "gpt", "value": "東京は晴れです。"}],
    "tools": json.dumps(TOOLS, ensure_ascii=False)}
# OpenAI's shape: assistant tool_calls (arguments as JSON text), a tool message, a tools list
OPENAI_TOOL_ROW = {"messages": [
    {"role": "user", "content": "大阪の天気は?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "大阪"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": '{"weather": "雨"}'},
    {"role": "assistant", "content": "大阪は雨です。"}],
    "tools": [{"type": "function", "function": TOOLS[0]}]}


def _tok(tiny_model: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def _encoded(lengths: list[int]) -> EncodedSet:
    """Synthetic samples whose token values tell where they came from: sample i is i, i, i, ..."""
    ids = [np.full(n, i, dtype=np.int32) for i, n in enumerate(lengths)]
    trained = [np.ones(n, np.uint8) for n in lengths]
    return EncodedSet.from_parts(ids, trained, list(range(len(lengths))), {})


# -- packing ------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_packing_properties(seed):
    """No block over max_length, every token kept exactly once, positions restart at every sample."""
    rng = np.random.default_rng(seed)
    max_length = 64
    lengths = rng.integers(1, max_length + 1, 400).tolist()
    data = _encoded(lengths)
    plan = best_fit_decreasing(data.lengths, max_length)
    packed = PackedDataset(data, plan.order, plan.offsets)
    seen: list[int] = []
    for b in range(len(packed)):
        block = packed[b]
        assert len(block["input_ids"]) <= max_length
        starts = np.flatnonzero(block["position_ids"] == 0)
        members = packed.samples(b).tolist()
        assert len(starts) == len(members)  # one restart per sample
        for start, end, sample in zip(starts, list(starts[1:]) + [len(block["input_ids"])], members, strict=True):
            assert end - start == lengths[sample]
            assert (block["input_ids"][start:end] == sample).all()  # the sample's own tokens, in one piece
            assert (block["position_ids"][start:end] == np.arange(end - start)).all()
        seen += members
    assert sorted(seen) == list(range(len(lengths)))
    assert sum(len(packed[b]["input_ids"]) for b in range(len(packed))) == sum(lengths)
    # as good as the old first-fit decreasing (the same bound), far fewer blocks than samples
    assert plan.blocks <= len(first_fit_reference(lengths, max_length)) + 1
    assert plan.fill_rate > 0.9


def test_packing_at_a_size_the_old_code_took_seconds():
    """100k samples of 20-300 tokens into 2048: 35 s with the old first-fit loop; here a fraction of that."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(20, 301, 100_000)
    plan = best_fit_decreasing(lengths, 2048)
    assert sorted(plan.order.tolist()) == list(range(len(lengths)))
    per_block = np.add.reduceat(lengths[plan.order], plan.offsets[:-1])
    assert per_block.max() <= 2048 and per_block.sum() == lengths.sum()
    assert plan.fill_rate > 0.99 and plan.summary()["blocks"] == plan.blocks


def test_packed_block_keeps_labels_per_sample(tiny_model):
    tok = _tok(tiny_model)
    rows = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
            for q, a in [("日本の首都は?", "東京です。"), ("好きな動物は?", "猫が好きです。")]]
    data = encode_in_process(rows, tok, EncodeConfig(128))
    plan = best_fit_decreasing(data.lengths, 128)
    block = PackedDataset(data, plan.order, plan.offsets)[0]
    trained = [i for i, label in zip(block["input_ids"], block["labels"], strict=True) if label != IGNORE_INDEX]
    assert sorted(tok.decode(trained).split("<|im_end|>")[:2]) == ["東京です。", "猫が好きです。"]


# -- .txt splitting, long documents ---------------------------------------------------------------

def test_txt_one_row_per_line(tmp_path):
    """LLaMA-Factory's wiki_demo.txt shape: one article per line, no blank lines -> one row per line."""
    path = tmp_path / "wiki.txt"
    path.write_text("".join(f"記事{i}の本文です。" * 20 + "\n" for i in range(5)), encoding="utf-8")
    info = inspect_dataset_file(path, {})
    assert info["rows"] == 5 and info["txt_split"] == "line"
    assert info["read_options"] == {"txt_split": "line"}
    assert inspect_dataset_file(path, {"txt_split": "whole"})["rows"] == 1
    prose = tmp_path / "novel.txt"
    prose.write_text("一行目\n二行目\n\n三行目\n四行目\n", encoding="utf-8")
    assert inspect_dataset_file(prose, {})["txt_split"] == "paragraph"
    assert [r["text"] for r in load_conversations(prose, {})] == ["一行目\n二行目", "三行目\n四行目"]
    assert len(load_conversations(prose, {"txt_split": "line"})) == 4
    with pytest.raises(LoRAFactoryError) as err:
        inspect_dataset_file(prose, {"txt_split": "sentence"})
    assert err.value.code == "DATASET_OPTION_INVALID" and err.value.detail["field"] == "txt_split"


def test_long_document_becomes_blocks_and_overlong_chat_is_counted(tiny_model):
    tok = _tok(tiny_model)
    document = "吾輩は猫である。名前はまだ無い。" * 40
    n_tokens = len(tok(document + tok.eos_token, add_special_tokens=False)["input_ids"])
    data = encode_in_process([{"text": document}], tok, EncodeConfig(64))
    report = data.report
    assert report["documents_split"] == 1 and report["text_blocks"] == len(data) == -(-n_tokens // 64)
    assert report["rows_truncated"] == 0 and report["tokens_truncated"] == 0
    assert int(data.trained.sum()) == n_tokens == len(data.input_ids)  # every token kept, trained once
    assert max(data.lengths) == 64
    strided = encode_in_process([{"text": document}], tok, EncodeConfig(64, text_stride=16))
    assert int(strided.trained.sum()) == n_tokens  # the overlap is context only, never trained twice
    assert strided.sample(1)[1][:16].sum() == 0 and len(strided) > len(data)

    long_chat = {"messages": [{"role": "user", "content": "質問"}, {"role": "assistant", "content": "長い答え。" * 60}]}
    truncated = encode_in_process([long_chat], tok, EncodeConfig(64)).report
    assert truncated["rows_truncated"] == 1 and truncated["tokens_truncated"] > 0 and truncated["samples"] == 1
    dropped = encode_in_process([long_chat], tok, EncodeConfig(64, overlong="drop")).report
    assert dropped["rows_dropped_too_long"] == 1 and dropped["samples"] == 0 and dropped["rows_dropped"] == 1


def test_train_job_reports_what_was_cut_and_reuses_the_token_cache(tmp_path, tiny_model, ctx_factory, monkeypatch):
    from transformers import PreTrainedModel

    from lora_factory.plugins.text.train import train_text_adapter

    corpus = tmp_path / "book.txt"
    corpus.write_text("吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。" * 30, encoding="utf-8")
    spec = {"base_model": str(tiny_model), "dataset": str(corpus), "dataset_options": {"txt_split": "whole"},
            "preset": "quick", "params": {"max_steps": 3, "max_length": 64, "packing": True, "save_steps": 3},
            "output_name": "book"}
    home = tmp_path / "ws"
    # the Trainer used to count the parameters (a walk over every module) after every step: now once
    walks = []
    original = PreTrainedModel.num_parameters
    monkeypatch.setattr(PreTrainedModel, "num_parameters",
                        lambda self, *a, **k: walks.append(k.get("exclude_embeddings")) or original(self, *a, **k))
    first_ctx = ctx_factory(home, "first")
    first = train_text_adapter(spec, first_ctx)
    assert first["steps"] == 3 and walks.count(True) == 1, walks
    state = json.loads((Path(first_ctx.checkpoint_dir) / "checkpoint-3" / "trainer_state.json").read_text("utf-8"))
    assert state["total_flos"] > 0  # still counted
    monkeypatch.undo()
    assert first["documents_split"] == 1 and first["tokens_truncated"] == 0 and first["rows_dropped"] == 0
    assert first["data_report"]["data"]["text_blocks"] > 5 and 0 < first["pack_fill_rate"] <= 1
    assert first["token_cache"] == "miss"
    log = "\n".join(first_ctx.lines)
    assert "long documents: 1 split" in log and "truncated: 0 rows (0 tokens cut)" in log and "fill rate" in log
    # a re-run (and a resume, an evaluation) of the same data and settings reads the cached tokens
    second_ctx = ctx_factory(home, "second")
    second = train_text_adapter(spec, second_ctx)
    assert second["token_cache"] == "hit"
    assert any(line.startswith("tokenized data: cache hit") for line in second_ctx.lines)
    assert second["data_report"]["data"] == first["data_report"]["data"]
    changed = train_text_adapter({**spec, "params": {**spec["params"], "max_length": 48, "max_steps": 1}},
                                 ctx_factory(home, "third"))
    assert changed["token_cache"] == "miss"  # another max_length is another entry


def test_parallel_encoding_matches_in_process(tiny_model, tmp_path):
    from lora_factory.plugins.text.token_cache import encode_parallel

    tok = _tok(tiny_model)
    rows = [{"messages": [{"role": "user", "content": f"質問{i}"}, {"role": "assistant", "content": "答え" * (i % 7 + 1)}]}
            for i in range(60)] + [{"messages": load_conversations_row(SHAREGPT_TOOL_ROW)["messages"],
                                    "tools": load_conversations_row(SHAREGPT_TOOL_ROW)["tools"]}]
    cfg = EncodeConfig(48)
    alone = encode_in_process(rows, tok, cfg)
    parallel = encode_parallel(rows, tok, cfg, num_proc=2, work_dir=tmp_path / "work")
    assert (parallel.input_ids == alone.input_ids).all() and (parallel.trained == alone.trained).all()
    assert (parallel.offsets == alone.offsets).all() and (parallel.rows == alone.rows).all()
    assert parallel.report == alone.report


# -- tool calling -----------------------------------------------------------------------------------

def load_conversations_row(raw: dict, tmp: Path | None = None) -> dict:
    from lora_factory.plugins.text.formats import _normalize_mapping, convert_row, detect_format
    from lora_factory.plugins.text.readers import RawFile, RawRecord

    fmt = detect_format(RawFile([RawRecord(1, raw)], "utf-8", list(raw)), {})
    return convert_row(raw, fmt, _normalize_mapping({}))


@pytest.mark.parametrize("raw", [SHAREGPT_TOOL_ROW, OPENAI_TOOL_ROW], ids=["sharegpt", "openai"])
def test_tool_calls_render_through_the_template_with_labels_on_assistant_turns(tiny_model, raw):
    tok = _tok(tiny_model)
    row = load_conversations_row(raw)
    roles = [m["role"] for m in row["messages"]]
    assert roles == ["user", "assistant", "tool", "assistant"]
    call = row["messages"][1]["tool_calls"][0]["function"]
    assert call["name"] == "get_weather" and isinstance(call["arguments"], dict)
    assert row["tools"][0]["function"]["name"] == "get_weather"

    item = encode_row(row, tok, 512, assistant_only=True)
    text = tok.decode(item["input_ids"])
    assert "<tools>" in text and '"get_weather"' in text and "<tool_response>" in text  # the model's own format
    trained = tok.decode([i for i, label in zip(item["input_ids"], item["labels"], strict=True) if label != IGNORE_INDEX])
    city = call["arguments"]["city"]
    answer = row["messages"][3]["content"]
    expected_call = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "' + city + '"}}\n</tool_call><|im_end|>'
    assert trained == expected_call + answer + "<|im_end|>"  # the call and the answer, nothing else
    untrained = tok.decode([i for i, label in zip(item["input_ids"], item["labels"], strict=True)
                            if label == IGNORE_INDEX])
    assert "weather" in untrained.split("<tool_response>")[1]  # the tool result carries no loss
    assert "Weather of a city" in untrained and row["messages"][0]["content"] in untrained


def test_template_without_tool_support_is_a_clear_error(tiny_model, tmp_path):
    tok = _tok(tiny_model)
    tok.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    tok.name_or_path = str(tmp_path / "plain-model")
    with pytest.raises(LoRAFactoryError) as err:
        encode_in_process([load_conversations_row(OPENAI_TOOL_ROW)], tok, EncodeConfig(256))
    assert err.value.code == "CHAT_TEMPLATE_NO_TOOLS" and err.value.detail["model"] == "plain-model"
    assert "plain-model" in err.value.message_en and "plain-model" in err.value.message_ja


# -- preference data, dataset_info.json import, upload options ---------------------------------------

def _lf_folder(tmp_path: Path) -> Path:
    """A LLaMA-Factory data/ folder in miniature: alpaca, tool calling, DPO, KTO, wiki text, multimodal, hub."""
    src = tmp_path / "lf"
    src.mkdir(parents=True)
    (src / "glaive.json").write_text(json.dumps([SHAREGPT_TOOL_ROW], ensure_ascii=False), encoding="utf-8")
    (src / "dpo.json").write_text(json.dumps([{
        "conversations": [{"from": "human", "value": "挨拶して"}],
        "chosen": {"from": "gpt", "value": "こんにちは!"}, "rejected": {"from": "gpt", "value": "嫌です。"}}],
        ensure_ascii=False), encoding="utf-8")
    (src / "kto.json").write_text(json.dumps([{
        "messages": [{"role": "user", "content": "1+1は?"}, {"role": "assistant", "content": "2です。"}],
        "label": True}], ensure_ascii=False), encoding="utf-8")
    (src / "wiki.txt").write_text("記事一の本文。\n記事二の本文。\n記事三の本文。\n", encoding="utf-8")
    (src / "mllm.json").write_text("[]", encoding="utf-8")
    info = {
        "glaive": {"file_name": "glaive.json", "formatting": "sharegpt",
                   "columns": {"messages": "conversations", "tools": "tools"}},
        "dpo": {"file_name": "dpo.json", "ranking": True, "formatting": "sharegpt",
                "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"}},
        "kto": {"file_name": "kto.json", "formatting": "sharegpt", "columns": {"messages": "messages", "kto_tag": "label"},
                "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}},
        "wiki": {"file_name": "wiki.txt", "columns": {"prompt": "text"}},
        "mllm": {"file_name": "mllm.json", "formatting": "sharegpt", "columns": {"messages": "messages", "images": "images"}},
        "hub": {"hf_hub_url": "someone/data"},
    }
    (src / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")
    return src


def test_dataset_info_import_keeps_tools_and_preference_data(tmp_path):
    from lora_factory.plugins.text.dataset_info import import_dataset_info_report

    src = _lf_folder(tmp_path)
    dest = tmp_path / "datasets"
    report = import_dataset_info_report(src / "dataset_info.json", dest)
    imported = {r["name"]: r for r in report["imported"]}
    assert set(imported) == {"glaive", "dpo", "kto", "wiki"}
    skipped = {s["name"]: s["reason"] for s in report["skipped"]}
    assert "multimodal" in skipped["mllm"] and "hf_hub_url" in skipped["hub"]
    assert imported["wiki"]["format"] == "text" and imported["wiki"]["rows"] == 3
    assert imported["wiki"]["read_options"] == {"txt_split": "line"}
    glaive = load_conversations(imported["glaive"]["file"], {"format": "sharegpt", "mapping": imported["glaive"]["mapping"]})
    assert glaive[0]["messages"][1]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert glaive[0]["messages"][2]["role"] == "tool" and glaive[0]["tools"]
    for name in ("dpo", "kto"):
        assert imported[name]["format"] == "preference" and "preference" in imported[name]["note"]
    dpo = load_conversations(imported["dpo"]["file"], {"format": "preference", "mapping": imported["dpo"]["mapping"]})
    assert dpo[0]["chosen"] == [{"role": "assistant", "content": "こんにちは!"}]
    assert dpo[0]["messages"] == [{"role": "user", "content": "挨拶して"}]
    kto = load_conversations(imported["kto"]["file"], {"format": "preference", "mapping": imported["kto"]["mapping"]})
    assert kto[0]["preference"] == "kto" and kto[0]["label"] is True


def test_preference_data_is_refused_by_the_sft_trainer(tmp_path):
    from lora_factory.plugins.text import resolve_train_spec
    from lora_factory.plugins.text.train_data import load_rows

    path = _lf_folder(tmp_path) / "dpo.json"
    assert inspect_dataset_file(path, {})["format"] == "preference"  # detected without a mapping too
    with pytest.raises(LoRAFactoryError) as err:
        load_rows(path, {})
    assert err.value.code == "DATASET_PREFERENCE_NOT_TRAINABLE" and "dpo.json" in err.value.message_en
    with pytest.raises(LoRAFactoryError) as err:
        resolve_train_spec(modality="text", spec={"dataset": str(path), "dataset_options": {"format": "preference"}})
    assert err.value.code == "DATASET_PREFERENCE_NOT_TRAINABLE" and err.value.http_status == 422
    assert resolve_train_params("quick", {"overlong_rows": "drop", "text_stride": 8}).overlong_rows == "drop"
    with pytest.raises(LoRAFactoryError):
        resolve_train_params("quick", {"text_stride": 512})  # not below max_length


def test_upload_txt_split_and_import_route(tmp_path, tiny_model):
    from fastapi.testclient import TestClient

    from lora_factory.app import create_app

    home = tmp_path / "ws"
    src = _lf_folder(home / "incoming")
    with TestClient(create_app(home, start_scheduler=False)) as c:
        body = "第一段落の一行目\n第一段落の二行目\n\n第二段落\n".encode()
        r = c.post("/api/datasets/upload", data={"modality": "text", "txt_split": "line"},
                   files={"file": ("novel.txt", body)})
        assert r.status_code == 200, r.text
        assert r.json()["rows"] == 3 and r.json()["txt_split"] == "line"
        meta = json.loads((home / "datasets/text/.meta/novel.txt.json").read_text(encoding="utf-8"))
        assert meta["read_options"] == {"txt_split": "line"}  # recorded: jobs read the file the same way
        shown = c.get("/api/datasets/text/novel.txt").json()
        assert shown["rows"] == 3 and shown["txt_split"] == "line"
        r = c.post("/api/datasets/upload", data={"modality": "text", "txt_split": "sentences"},
                   files={"file": ("bad.txt", body)})
        assert r.status_code == 422 and r.json()["error"]["code"] == "DATASET_OPTION_INVALID"
        assert not (home / "datasets/text/bad.txt").exists()

        r = c.post("/api/datasets/import_info", json={"modality": "text", "txt_split": "whole",
                                                      "dataset_info_path": str(src.relative_to(home) / "dataset_info.json")})
        assert r.status_code == 200, r.text
        names = {d["name"]: d for d in r.json()["datasets"]}
        assert names["wiki.txt"]["rows"] == 1  # the request's txt_split
        assert names["dpo.json"]["format"] == "preference" and names["dpo.json"]["note"]
        assert {s["name"] for s in r.json()["skipped"]} == {"mllm", "hub"}
        shutil.copytree(tiny_model, home / "models/text/tiny")
        r = c.post("/train/start", json={"modality": "text", "base_model": "models/text/tiny", "dataset": "dpo.json",
                                         "output_name": "x", "preset": "quick"})
        assert r.status_code == 422 and r.json()["error"]["code"] == "DATASET_PREFERENCE_NOT_TRAINABLE"



def test_lean_trainer_matches_the_trainer_step_for_step(tmp_path, tiny_model, memo_dataset):
    """Clipping and zeroing over the LoRA parameters only, FLOPs counted once: the same run as the
    Trainer's own (losses, gradient norms, total FLOPs), also across a resume from a checkpoint."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Trainer, set_seed

    from lora_factory.plugins.text.batching import CausalCollator
    from lora_factory.plugins.text.lean_trainer import lean_trainer_class
    from lora_factory.plugins.text.prepare import prepare_training_data
    from lora_factory.plugins.text.train import training_arguments

    tok = _tok(tiny_model)
    params = resolve_train_params("quick", {"max_steps": 4, "save_steps": 2, "batch_size": 2})
    data = prepare_training_data(tok, memo_dataset, {}, params).train

    def run(cls, out: Path, resume: str | None = None, steps: int = 4):
        set_seed(0)
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model),
                               LoraConfig(r=8, target_modules="all-linear", task_type="CAUSAL_LM"))
        args = training_arguments(params.model_copy(update={"max_steps": steps}), out, "cpu", has_eval=False)
        trainer = cls(model=model, args=args, train_dataset=data, data_collator=CausalCollator(tok.pad_token_id))
        trainer.train(resume_from_checkpoint=resume)
        logs = [v for h in trainer.state.log_history if "loss" in h for v in (h["loss"], h["grad_norm"])]
        return logs, trainer.state.total_flos

    plain, plain_flos = run(Trainer, tmp_path / "plain")
    lean, lean_flos = run(lean_trainer_class(), tmp_path / "lean")
    assert lean == pytest.approx(plain, rel=1e-5) and lean_flos == plain_flos
    resumed, _ = run(lean_trainer_class(), tmp_path / "lean", resume=str(tmp_path / "lean" / "checkpoint-2"))
    assert resumed[4:] == pytest.approx(plain[4:], rel=1e-5)  # steps 3 and 4 again, from checkpoint-2
