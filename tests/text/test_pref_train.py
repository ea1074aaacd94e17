"""Preference training (DPO, KTO, ORPO, SimPO) and GRPO on the tiny model, with planted preferences.

Planted preference: every chosen answer ends with "です。", every rejected one with "だ。". After a
few steps the adapter must prefer "です。" on held-out prompts more than the base does, and the
adapter must load in plain peft.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lora_factory.core.errors import LoRAFactoryError
from lora_factory.plugins.text.presets import resolve_train_spec
from lora_factory.plugins.text.train import train_text_adapter

TRAIN = [("日本の首都は?", "東京"), ("好きな動物は?", "猫"), ("一番高い山は?", "富士山"), ("今日の天気は?", "晴れ"),
         ("好きな色は?", "青"), ("朝ごはんは?", "パン"), ("好きな季節は?", "春"), ("趣味は?", "読書")]
HELD_OUT = [("好きな果物は?", "りんご"), ("好きな花は?", "桜"), ("得意な科目は?", "数学"), ("行きたい国は?", "フランス")]


def pair(question: str, word: str) -> dict:
    return {"prompt": [{"role": "user", "content": question}],
            "chosen": [{"role": "assistant", "content": f"{word}です。"}],
            "rejected": [{"role": "assistant", "content": f"{word}だ。"}]}


@pytest.fixture(scope="module")
def pref_dataset(tmp_path_factory) -> Path:
    """LLaMA-Factory style pairs (instruction / chosen / rejected strings)."""
    path = tmp_path_factory.mktemp("pref") / "pairs.jsonl"
    rows = [{"instruction": q, "chosen": f"{w}です。", "rejected": f"{w}だ。"} for q, w in TRAIN]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return path


def _spec(tiny_model: Path, dataset: Path, fmt: str = "preference", **params) -> dict:
    params = {"max_steps": 8, "batch_size": 4, "learning_rate": 5e-3, "save_steps": 1000, **params}
    return resolve_train_spec({"base_model": str(tiny_model), "dataset": str(dataset),
                               "dataset_options": {"format": fmt}, "preset": "quick", "params": params,
                               "output_name": "p"})


def _held_out_gain(tiny_model: Path, adapter: Path) -> dict:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lora_factory.plugins.text.pref_eval import adapter_vs_base

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), adapter)  # plain peft
    tokenizer = AutoTokenizer.from_pretrained(adapter)
    return adapter_vs_base(model, tokenizer, [pair(q, w) for q, w in HELD_OUT])


def _check_the_eval_preference_figures(tiny_model: Path, adapter: Path, gain: dict, tmp_path: Path) -> None:
    from lora_factory.plugins.text.evaluate import evaluate_text

    held_out = tmp_path / "held_out.jsonl"
    rows = [{"instruction": q, "chosen": f"{w}です。", "rejected": f"{w}だ。"} for q, w in HELD_OUT]
    held_out.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    spec = {"base_model": str(tiny_model), "adapter": str(adapter), "dataset": str(held_out), "params": {}}
    figures = evaluate_text(spec, None)  # format detected: preference pairs are measured by preference, not loss
    assert figures["rows"] == len(HELD_OUT)
    assert figures["preference_margin"] == pytest.approx(gain["adapter"]["mean_margin"], abs=1e-3)
    assert figures["base_preference_margin"] == pytest.approx(gain["base"]["mean_margin"], abs=1e-3)
    assert figures["preference_accuracy"] == gain["adapter"]["accuracy"]
    assert figures["margin_gain"] > 0.5
    base_only = evaluate_text(dict(spec, adapter=None), None)
    assert base_only["preference_margin"] == pytest.approx(gain["base"]["mean_margin"], abs=1e-3)


@pytest.mark.parametrize("method", ["dpo", "kto", "orpo", "simpo"])
def test_preference_method_learns_planted_preference(method, tiny_model, pref_dataset, tmp_path, ctx_factory):
    ctx = ctx_factory(tmp_path / "ws", f"pref_{method}")
    result = train_text_adapter(_spec(tiny_model, pref_dataset, method=method), ctx)
    assert result["method"] == method and result["steps"] == 8 and result["stopped"] is False
    # the live view gets the method's own figures with every step
    assert all("reward_chosen" in r and "reward_rejected" in r for r in ctx.records), ctx.records[-1]
    if method != "kto":
        assert "reward_margin" in ctx.records[-1] and "reward_accuracy" in ctx.records[-1]
    if method in ("dpo", "kto"):  # TRL's ORPO / CPO trainers do not count tokens
        assert ctx.records[-1]["tokens_per_s"] > 0 and result["tokens_per_s"] > 0
    gain = _held_out_gain(tiny_model, Path(ctx.output_dir))
    assert gain["margin_gain"] > 0.5, gain
    assert gain["adapter"]["accuracy"] >= gain["base"]["accuracy"]
    if method == "dpo":  # the regression suite's preference check (an eval job on held-out pairs) says the same
        _check_the_eval_preference_figures(tiny_model, Path(ctx.output_dir), gain, tmp_path)
    config = json.loads((Path(ctx.output_dir) / "training_config.json").read_text(encoding="utf-8"))
    assert config["params"]["method"] == method


def test_wrong_data_for_method_is_422(tiny_model, memo_dataset, pref_dataset, tmp_path):
    with pytest.raises(LoRAFactoryError) as err:
        _spec(tiny_model, memo_dataset, fmt="openai", method="dpo")
    assert err.value.code == "DATASET_WRONG_KIND_FOR_METHOD" and err.value.http_status == 422
    assert err.value.detail["needs"] == ["pairs"] and "preference pairs" in err.value.message_en
    with pytest.raises(LoRAFactoryError) as err:
        _spec(tiny_model, pref_dataset, method="sft")
    assert err.value.code == "DATASET_PREFERENCE_NOT_TRAINABLE"
    kto_only = tmp_path / "kto.jsonl"
    kto_only.write_text(json.dumps({"messages": [{"role": "user", "content": "a"}, {"role": "assistant",
                                                 "content": "b"}], "label": True}) + "\n", encoding="utf-8")
    with pytest.raises(LoRAFactoryError) as err:
        _spec(tiny_model, kto_only, method="orpo")
    assert err.value.detail["found"] == ["labels"]
    assert _spec(tiny_model, kto_only, method="kto")["params"]["method"] == "kto"


def test_preference_files_become_trainer_rows(tmp_path):
    """OpenAI preference JSONL, LLaMA-Factory ranking pairs (ShareGPT turns), KTO tags, implicit prompts."""
    from lora_factory.plugins.text.formats import inspect_dataset_file
    from lora_factory.plugins.text.pref_data import load_method_rows, trl_rows

    openai = tmp_path / "openai_pref.jsonl"
    openai.write_text(json.dumps({
        "input": {"messages": [{"role": "user", "content": "挨拶して"}]},
        "preferred_output": [{"role": "assistant", "content": "こんにちはです。"}],
        "non_preferred_output": [{"role": "assistant", "content": "こんにちはだ。"}]}, ensure_ascii=False) + "\n",
        encoding="utf-8")
    info = inspect_dataset_file(openai, {})
    assert info["format"] == "preference" and "dpo" in info["methods"]
    rows = load_method_rows(openai, {"format": "preference"}, "dpo")
    assert rows == [pair("挨拶して", "こんにちは")]
    kto = load_method_rows(openai, {"format": "preference"}, "kto")
    assert [r["label"] for r in kto] == [True, False] and kto[1]["completion"][0]["content"] == "こんにちはだ。"

    sharegpt = tmp_path / "lf_dpo.json"  # LLaMA-Factory dataset_info: ranking: true, sharegpt turns
    sharegpt.write_text(json.dumps([{"conversations": [{"from": "human", "value": "質問"}],
                                     "chosen": {"from": "gpt", "value": "良い"}, "rejected": {"from": "gpt", "value": "悪い"}}],
                                   ensure_ascii=False), encoding="utf-8")
    (row,) = load_method_rows(sharegpt, {"format": "preference", "mapping": {"messages": "conversations"}}, "simpo")
    assert row["prompt"] == [{"role": "user", "content": "質問"}] and row["chosen"][0]["content"] == "良い"

    implicit = [{"preference": "pair", "messages": [],
                 "chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "good"}],
                 "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "bad"}]}]
    (row,) = trl_rows(implicit, "dpo", "x")
    assert row["prompt"] == [{"role": "user", "content": "q"}] and row["rejected"][0]["content"] == "bad"

    chat = [{"messages": [{"role": "user", "content": "1+1は?"}, {"role": "assistant", "content": "2"}]}]
    assert trl_rows(chat, "grpo", "x") == [{"prompt": [{"role": "user", "content": "1+1は?"}], "answer": "2"}]
    with pytest.raises(LoRAFactoryError) as err:
        trl_rows([{"text": "plain"}], "grpo", "x")
    assert err.value.code == "DATASET_WRONG_KIND_FOR_METHOD"


def test_train_start_route_takes_the_method(tmp_path, tiny_model, memo_dataset, pref_dataset):
    import shutil

    from fastapi.testclient import TestClient

    from lora_factory.app import create_app

    home = tmp_path / "ws"
    with TestClient(create_app(home, start_scheduler=False)) as c:
        shutil.copytree(tiny_model, home / "models/text/tiny")
        for path in (memo_dataset, pref_dataset):
            with open(path, "rb") as fh:
                assert c.post("/api/datasets/upload", data={"modality": "text"},
                              files={"file": (path.name, fh)}).status_code == 200
        body = {"modality": "text", "base_model": "models/text/tiny", "preset": "quick", "output_name": "d"}
        r = c.post("/train/start", json={**body, "dataset": "memo.jsonl", "params": {"method": "dpo"}})
        assert r.status_code == 422 and r.json()["error"]["code"] == "DATASET_WRONG_KIND_FOR_METHOD"
        assert "DPO" in r.json()["error"]["message"] and "選好ペア" in r.json()["error"]["message_ja"]
        r = c.post("/train/start", json={**body, "dataset": "pairs.jsonl", "params": {"method": "dpo", "beta": 0.2}})
        assert r.status_code == 200, r.text
        config = json.loads((home / "runs" / r.json()["job_id"] / "config.json").read_text(encoding="utf-8"))
        assert config["spec"]["params"]["method"] == "dpo" and config["spec"]["params"]["beta"] == 0.2
        r = c.post("/train/start", json={**body, "output_name": "g", "dataset": "memo.jsonl",
                                         "params": {"method": "grpo", "rewards": [{"name": "regex", "patern": "x"}]}})
        assert r.status_code == 422 and "rewards" in r.json()["error"]["message"]
        info = c.get("/api/modalities").json()
        text = next(m for m in (info if isinstance(info, list) else info.get("modalities", [])) if m["id"] == "text")
        assert [m["id"] for m in text["training_methods"]] == ["sft", "dpo", "kto", "orpo", "simpo", "grpo"]


USER_REWARD = '''
from lora_factory.kit import hookimpl


@hookimpl
def register_reward_functions(register):
    def even(prompts, completions, answers):  # dense: the share of characters with an even code point
        return [sum(1 for ch in c if ord(ch) % 2 == 0) / max(1, len(c)) for c in completions]

    def broken(prompts, completions, answers):
        raise RuntimeError("planted failure")

    register("even", even)
    register("broken", broken)
'''


def _even(text: str) -> float:
    return sum(1 for ch in text if ord(ch) % 2 == 0) / max(1, len(text))


def _sampled_reward(model, tokenizer, n: int = 128, max_new_tokens: int = 8) -> float:
    """The mean planted reward over ``n`` sampled answers to a held-out prompt (seeded)."""
    import torch

    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "好きな果物は?"}], tokenize=False,
                                           add_generation_prompt=True)
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids
    torch.manual_seed(0)
    out = model.generate(ids.repeat(n, 1), do_sample=True, temperature=1.0, max_new_tokens=max_new_tokens,
                         pad_token_id=tokenizer.pad_token_id)
    return sum(_even(t) for t in tokenizer.batch_decode(out[:, ids.shape[1]:], skip_special_tokens=True)) / n


def test_grpo_raises_the_planted_reward(tiny_model, memo_dataset, tmp_path, ctx_factory):
    """GRPO with a user reward from a drop-in .py's register_reward_functions hook (planted: the share of even
    code points): the adapter's
    mean reward on a held-out prompt beats the base's. Each step reports the mean reward, the reward per
    function and the completion length; a reward that raises is logged by name with its traceback and the
    run goes on; the adapter loads in plain peft."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    home = tmp_path / "ws"
    (home / "plugins").mkdir(parents=True)
    (home / "plugins" / "my_rewards.py").write_text(USER_REWARD, encoding="utf-8")
    ctx = ctx_factory(home, "grpo")
    spec = _spec(tiny_model, memo_dataset, fmt="openai", method="grpo", max_steps=10, batch_size=16,
                 num_generations=8, max_completion_length=8, learning_rate=3e-2, beta=0.0,
                 rewards=[{"name": "even"}, {"name": "broken", "weight": 0.0}])
    result = train_text_adapter(spec, ctx)
    assert result["method"] == "grpo" and result["steps"] == 10
    assert all(0.0 <= r["reward_even"] <= 1.0 and r["reward_broken"] == 0.0 for r in ctx.records)
    assert "reward" in ctx.records[0] and "completion_length" in ctx.records[0]
    log = "\n".join(ctx.lines)
    assert "reward 'broken' raised RuntimeError: planted failure" in log and "Traceback" in log
    assert "sample completion" in log

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), ctx.output_dir)  # plain peft
    tokenizer = AutoTokenizer.from_pretrained(ctx.output_dir)
    adapter = _sampled_reward(model, tokenizer)
    with model.disable_adapter():
        base = _sampled_reward(model, tokenizer)
    assert adapter > base + 0.08, (base, adapter)


def test_cli_train_method(tmp_path, tiny_model, memo_dataset, pref_dataset, capsys):
    import shutil

    from lora_factory.cli import main
    from lora_factory.core.services import Services

    home = tmp_path / "ws"
    Services(home).workspace  # noqa: B018 - creates the folders
    shutil.copytree(tiny_model, home / "models/text/tiny")
    for path, fmt in ((memo_dataset, "openai"), (pref_dataset, "preference")):
        shutil.copy(path, home / "datasets/text" / path.name)
        meta = home / "datasets/text/.meta" / f"{path.name}.json"
        meta.parent.mkdir(parents=True, exist_ok=True)
        meta.write_text(json.dumps({"format": fmt}), encoding="utf-8")
    base = ["--home", str(home), "train", "--base-model", "models/text/tiny", "--output-name", "c"]
    assert main([*base, "--dataset", "memo.jsonl", "--method", "kto"]) != 0
    assert "KTO" in capsys.readouterr().err
    assert main([*base, "--dataset", "pairs.jsonl", "--method", "kto"]) == 0
    runs = list((home / "runs").iterdir())
    config = json.loads((runs[0] / "config.json").read_text(encoding="utf-8"))
    assert config["spec"]["params"]["method"] == "kto"


def test_dpo_cancel_then_resume(tiny_model, pref_dataset, tmp_path, ctx_factory):
    """A cancelled DPO run leaves a checkpoint; the resumed job continues from its step to the end."""
    from lora_factory.kit.trainer import latest_checkpoint

    spec = _spec(tiny_model, pref_dataset, method="dpo", max_steps=4)
    ctx = ctx_factory(tmp_path / "ws", "dpo_cancel", stop_after=2)
    result = train_text_adapter(spec, ctx)
    assert result["stopped"] is True and result["steps"] == 2
    checkpoint = latest_checkpoint(Path(ctx.checkpoint_dir))
    assert checkpoint is not None and checkpoint.name == "checkpoint-2"
    resumed = ctx_factory(tmp_path / "ws", "dpo_cancel", resume_checkpoint=checkpoint)
    result = train_text_adapter(spec, resumed)
    assert result["steps"] == 4 and result["stopped"] is False
    assert [r["step"] for r in resumed.records] == [3, 4] and "reward_margin" in resumed.records[-1]


def test_documented_reward_example_loads_and_scores(tmp_path, ctx_factory):
    """docs/plugins.md's reward example is examples/polite_reward.py, found in the workspace plugins folder."""
    import shutil

    from lora_factory.plugins.text.grpo_rewards import trl_reward_functions
    from lora_factory.plugins.text.rewards import check_reward_specs

    repo = Path(__file__).resolve().parents[2]
    example = (repo / "examples" / "polite_reward.py").read_text(encoding="utf-8")
    assert example.split('"""', 2)[2].strip() in (repo / "docs" / "plugins.md").read_text(encoding="utf-8")
    home = tmp_path / "ws"
    (home / "plugins").mkdir(parents=True)
    shutil.copy(repo / "examples" / "polite_reward.py", home / "plugins")
    ctx = ctx_factory(home, "r")
    (fn,) = trl_reward_functions(check_reward_specs([{"name": "polite", "bonus": 2.0}]), ctx)
    completions = [[{"role": "assistant", "content": "猫です。"}], [{"role": "assistant", "content": "猫だ。"}]]
    assert fn(prompts=[[{"role": "user", "content": "q"}]] * 2, completions=completions, answer=["", ""]) == [2.0, 0.0]


def test_builtin_rewards():
    from lora_factory.plugins.text.rewards import build_rewards, check_reward_specs

    specs = check_reward_specs([
        {"name": "exact_answer"}, {"name": "numeric_answer"}, {"name": "regex", "pattern": r"^\d+$", "full": True},
        {"name": "length", "target": 4}, {"name": "japanese_ratio"},
        {"name": "json", "schema": {"type": "object", "required": ["a"], "properties": {"a": {"type": "integer"}}}}])
    fns = {name: fn for name, _, fn in build_rewards(specs, {})}
    completions = ["答えは 42 です。", "42", '{"a": 1}', '```json\n{"a": "x"}\n```']
    answers = ["42"] * 4
    prompts = [""] * 4
    assert fns["exact_answer"](prompts, completions, answers) == [0.0, 1.0, 0.0, 0.0]
    assert fns["numeric_answer"](prompts, completions, answers) == [1.0, 1.0, 0.0, 0.0]
    assert fns["regex"](prompts, completions, answers) == [0.0, 1.0, 0.0, 0.0]
    assert fns["length"](prompts, completions, answers)[1] == 0.5
    assert fns["japanese_ratio"](prompts, completions, answers)[1] == 0.0
    assert fns["japanese_ratio"](prompts, completions, answers)[0] > 0.5
    assert fns["json"](prompts, completions, answers) == [0.0, 0.5, 1.0, 0.5]  # "42" is JSON, not the object asked for
    with pytest.raises(ValueError, match="pattern"):
        check_reward_specs([{"name": "regex", "pattern": "("}])
    with pytest.raises(ValueError, match="target"):
        check_reward_specs([{"name": "length"}])


def test_refine_preference_data_masks_every_field_and_dedups_on_the_prompt(tmp_path):
    """PII masking reaches chosen and rejected; dedup on the prompt (scope user) drops a second pair for the
    same prompt; the output stays preference data that DPO reads."""
    from lora_factory.core.jobs.context import JobContext
    from lora_factory.plugins.text.formats import load_conversations
    from lora_factory.plugins.text.pref_data import trl_rows
    from lora_factory.plugins.text.refine import run_refine

    rows = [{"instruction": "連絡先は?", "chosen": "a@example.jp です。", "rejected": "03-1234-5678 だ。"},
            {"instruction": "連絡先は?", "chosen": "別の答えです。", "rejected": "別の答えだ。"},
            {"instruction": "好きな色は?", "chosen": "青です。", "rejected": "青だ。"}]
    src = tmp_path / "pairs.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    ctx = JobContext(job_id="t", workspace=None, run_dir=tmp_path / "run", log_path=tmp_path / "log.txt")
    report = run_refine({"dataset": str(src), "dataset_options": {"format": "preference"}, "output_name": "clean",
                         "operations": [{"op": "pii_mask", "params": {}},
                                        {"op": "dedup_exact", "params": {"scope": "user"}}]}, ctx)
    assert report["rows_out"] == 2 and report["output"]["format"] == "preference"
    assert report["per_operation"][0]["changed"]["rows_masked"] == 1
    out = load_conversations(ctx.output_dir / report["output_file"], {"format": "preference"})
    assert out[0]["chosen"][0]["content"] == "<EMAIL> です。" and out[0]["rejected"][0]["content"] == "<PHONE> だ。"
    assert [r["prompt"][0]["content"] for r in trl_rows(out, "dpo", "clean.jsonl")] == ["連絡先は?", "好きな色は?"]
    # whole-row dedup keeps both pairs of the same prompt (their answers differ)
    report = run_refine({"dataset": str(src), "dataset_options": {"format": "preference"}, "output_name": "all",
                         "operations": [{"op": "dedup_exact", "params": {"scope": "all"}}]}, ctx)
    assert report["rows_out"] == 3


@pytest.mark.parametrize("method", ["dpo", "orpo"])
def test_qlora_preference(method, tiny_model, pref_dataset, tmp_path, ctx_factory):
    """4-bit base (bitsandbytes nf4) + LoRA: DPO (reference = the quantized base, adapter disabled) and ORPO."""
    try:
        import bitsandbytes  # noqa: F401
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"bitsandbytes 4-bit is unavailable on this platform: {exc}")
    ctx = ctx_factory(tmp_path / "ws", f"q{method}")
    result = train_text_adapter(_spec(tiny_model, pref_dataset, method=method, quantization="4bit", max_steps=2), ctx)
    assert result["steps"] == 2 and result["final_loss"] is not None and "reward_margin" in ctx.records[-1]
    assert any(line.startswith("quantization=4bit") for line in ctx.lines)
    assert (Path(ctx.output_dir) / "adapter_model.safetensors").is_file()


def test_compare_choices_become_a_preference_dataset_that_dpo_accepts(tmp_path, tiny_model):
    """Two choices from the compare view -> one preference dataset, a version per choice with lineage to
    the models that wrote the answers; the dataset passes the DPO check; a chat dataset name is refused."""
    import shutil

    from fastapi.testclient import TestClient

    from lora_factory.app import create_app

    home = tmp_path / "ws"
    with TestClient(create_app(home, start_scheduler=False), base_url="http://127.0.0.1") as c:
        shutil.copytree(tiny_model, home / "models/text/tiny")
        (home / "lora_adapters/text/memo").mkdir(parents=True)
        (home / "lora_adapters/text/memo/adapter_config.json").write_text("{}", encoding="utf-8")
        base = {"base_model": "models/text/tiny", "adapter": None}
        adapter = {"base_model": "models/text/tiny", "adapter": "lora_adapters/text/memo"}
        for q in ("日本の首都は?", "好きな動物は?"):
            r = c.post("/api/datasets/preference_choice", json={
                "dataset": "compare_prefs", "messages": [{"role": "user", "content": q}],
                "chosen": "東京です。", "rejected": "東京だ。", "chosen_model": adapter, "rejected_model": base})
            assert r.status_code == 200, r.text
        assert r.json()["rows"] == 2 and r.json()["name"] == "compare_prefs.jsonl"
        shown = c.get("/api/datasets/text/compare_prefs.jsonl").json()
        assert shown["format"] == "preference" and shown["rows"] == 2
        lineage = c.get(f"/api/artifacts/{r.json()['artifact_id']}/lineage").json()
        assert "previous_version" in json.dumps(lineage) and "chosen_model" in json.dumps(lineage), lineage
        file_lineage = json.loads((home / "datasets/text/.lineage/compare_prefs.jsonl.json").read_text(encoding="utf-8"))
        assert [ch["row"] for ch in file_lineage["choices"]] == [1, 2]
        r = c.post("/train/start", json={"modality": "text", "base_model": "models/text/tiny", "preset": "quick",
                                         "dataset": "compare_prefs.jsonl", "output_name": "from_compare",
                                         "params": {"method": "dpo"}})
        assert r.status_code == 200, r.text
        (home / "datasets/text/chat.jsonl").write_text("{}\n", encoding="utf-8")
        (home / "datasets/text/.meta/chat.jsonl.json").write_text('{"format": "openai"}', encoding="utf-8")
        r = c.post("/api/datasets/preference_choice", json={"dataset": "chat.jsonl", "messages": [
            {"role": "user", "content": "q"}], "chosen": "a", "rejected": "b"})
        assert r.status_code == 409 and r.json()["error"]["code"] == "DATASET_NOT_PREFERENCE"
