"""Evol-Instruct against a real local OpenAI-compatible HTTP server (canned, prompt-dependent
answers), elimination, resume, stop; and once end to end with a tiny random local model."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lora_factory.core.errors import LoRAFactoryError
from lora_factory.core.jobs.context import JobContext
from lora_factory.plugins.text import evol
from lora_factory.plugins.text.refine import run_refine

SEEDS = [
    ("日本の首都はどこですか?", "東京です。"),
    ("SAME 富士山について教えて", "日本一高い山です。"),  # the judge says Equal -> no information gain
    ("COPY 俳句を一つ作って", "古池や蛙飛び込む水の音"),  # the evolver leaks "#Rewritten Prompt#"
    ("SORRY 明日の株価は?", "分かりません。"),  # the answer is a short apology
    ("STOP 挨拶して", "こんにちは。"),  # the answer is only stop words / punctuation
    ("おすすめの本は?", "「吾輩は猫である」です。"),
]
GOOD_ANSWER = "はい、順を追って説明します。まず背景を整理し、次に具体例を二つ挙げ、最後に要点をまとめます。"


def _given(prompt: str) -> str:
    match = re.search(r"#(?:The )?Given Prompt#: \r\n (.*) \r\n#(?:Rewritten|Created) Prompt#", prompt, re.S)
    return match.group(1) if match else ""


class FakeLLM(BaseHTTPRequestHandler):
    calls: list[dict] = []

    def log_message(self, *args):  # keep pytest output quiet
        pass

    def do_POST(self):  # noqa: N802 - http.server naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["messages"][0]["content"]
        type(self).calls.append({"path": self.path, "prompt": prompt, "auth": self.headers.get("Authorization")})
        if prompt.startswith("Here are two Instructions"):
            answer = "Equal" if "SAME" in prompt else "Not Equal"
        elif "#Rewritten Prompt#:" in prompt or "#Created Prompt#:" in prompt:
            given = _given(prompt)
            if given.startswith("COPY"):
                answer = f"#Rewritten Prompt#: {given}"
            else:
                answer = f"{given}ただし、理由を三つ挙げ、200字以内で答えてください。"
        elif "SORRY" in prompt:
            answer = "Sorry, I cannot predict that."
        elif "STOP" in prompt:
            answer = "the and is ... 。"
        else:
            answer = GOOD_ANSWER
        payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": answer}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture()
def llm_server():
    FakeLLM.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeLLM)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def make_ctx(tmp_path: Path, stop: bool = False) -> JobContext:
    return JobContext(job_id="t", workspace=None, run_dir=tmp_path / "run", log_path=tmp_path / "log.txt",
                      stop_requested=(lambda: True) if stop else None)


def seed_file(tmp_path: Path) -> Path:
    path = tmp_path / "seed.jsonl"
    rows = [{"instruction": q, "input": "", "output": a} for q, a in SEEDS]
    rows.append({"instruction": "複数ターン", "input": "", "output": "x", "history": [["前の質問", "前の答え"]]})
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def spec(src: Path, base_url: str, **params) -> dict:
    p = {"generator": {"type": "openai", "base_url": base_url, "model": "fake", "api_key": "sk-test"},
         "rounds": 1, "seed": 0, **params}
    return {"dataset": str(src), "operations": [{"op": "evol_instruct", "params": p}], "output_name": "evolved"}


def test_evolution_and_elimination(tmp_path, llm_server):
    ctx = make_ctx(tmp_path)
    report = run_refine(spec(seed_file(tmp_path), llm_server), ctx)
    op = report["per_operation"][0]
    assert op["items"] == 6 and op["skipped"] == 1  # the multi-turn row is not evolved
    assert op["eliminated"] == {"no_information_gain": 1, "copied_prompt_words": 1, "sorry_short_answer": 1,
                                "stopwords_only_answer": 1}
    assert sum(op["evolved"].values()) == 2 and sum(op["methods"].values()) == 6
    assert report["rows_in"] == 7 and report["rows_out"] == 9 and report["stopped"] is False
    out = [json.loads(line) for line in (ctx.output_dir / "evolved.jsonl").read_text(encoding="utf-8").splitlines()]
    new = out[7:]
    assert [m["content"] for m in new[0]["messages"]] == [
        "日本の首都はどこですか?ただし、理由を三つ挙げ、200字以内で答えてください。", GOOD_ANSWER]
    assert new[1]["messages"][0]["content"].startswith("おすすめの本は?")
    assert "evol_copied_prompt_words" in report["examples"]
    assert "api_key" not in op["params"]["generator"]
    paths = {c["path"] for c in FakeLLM.calls}
    assert paths == {"/v1/chat/completions"} and FakeLLM.calls[0]["auth"] == "Bearer sk-test"
    # the prompts are the paper's: in-depth or in-breadth with the given instruction inside
    evolving = [c["prompt"] for c in FakeLLM.calls if "#Rewritten Prompt#:" in c["prompt"] or "#Created" in c["prompt"]]
    assert len(evolving) == 6
    assert all("I want you act as a Prompt" in p for p in evolving)
    state = (ctx.run_dir / "evol_state.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(state) == 6


def test_resume_skips_done_items(tmp_path, llm_server):
    src = seed_file(tmp_path)
    ctx = make_ctx(tmp_path)
    first = run_refine(spec(src, llm_server, rounds=2), ctx)
    first_out = (ctx.output_dir / "evolved.jsonl").read_text(encoding="utf-8")
    state_path = ctx.run_dir / "evol_state.jsonl"
    lines = state_path.read_text(encoding="utf-8").splitlines()
    state_path.write_text("\n".join(lines[:2]) + "\n", encoding="utf-8")  # a job interrupted after 2 items
    (ctx.output_dir / "evolved.jsonl").unlink()
    FakeLLM.calls = []
    second = run_refine(spec(src, llm_server, rounds=2), make_ctx(tmp_path))
    assert second["per_operation"][0]["resumed"] == 2
    given = {_given(c["prompt"]).split("ただし")[0] for c in FakeLLM.calls if _given(c["prompt"])}
    assert not any(g.startswith(("日本の首都", "SAME")) for g in given)  # items 1-2 were not asked again
    assert (ctx.output_dir / "evolved.jsonl").read_text(encoding="utf-8") == first_out
    assert second["rows_out"] == first["rows_out"]
    FakeLLM.calls = []
    run_refine(spec(src, llm_server, rounds=2), make_ctx(tmp_path))
    assert FakeLLM.calls == []  # everything done: no request at all


class StopAfter(JobContext):
    """A cancel that arrives after ``n`` polls (the real context caches polls for 0.5 s)."""

    def __init__(self, n: int, **kwargs):
        super().__init__(**kwargs)
        self.polls, self.n = 0, n

    def should_stop(self) -> bool:
        self.polls += 1
        return self.polls > self.n


def test_stop_writes_what_exists(tmp_path, llm_server):
    src = seed_file(tmp_path)
    ctx = make_ctx(tmp_path, stop=True)  # cancelled before anything ran
    report = run_refine(spec(src, llm_server), ctx)
    assert report["stopped"] is True and report["rows_out"] == 7 and report["per_operation"] == []
    # cancelled during evolution: poll 1 is before the operation, polls 2-3 let two items through
    ctx = StopAfter(3, job_id="s", workspace=None, run_dir=tmp_path / "run2", log_path=tmp_path / "log2.txt")
    report = run_refine(spec(src, llm_server), ctx)
    op = report["per_operation"][0]
    assert report["stopped"] is True and op["stopped"] is True
    assert sum(op["methods"].values()) == 2 and report["rows_out"] == 7 + 1  # item 1 survives, item 2 is Equal
    assert len((ctx.output_dir / "evolved.jsonl").read_text(encoding="utf-8").splitlines()) == 8
    assert len((ctx.run_dir / "evol_state.jsonl").read_text(encoding="utf-8").splitlines()) == 2


def test_unreachable_server_is_a_clear_error(tmp_path):
    gen = evol.OpenAICompatibleGenerator("http://127.0.0.1:9/v1", "m", timeout=2)
    with pytest.raises(LoRAFactoryError) as err:
        gen.complete("hi", 5, 0.0)
    assert err.value.code == "GENERATOR_UNREACHABLE"


def test_elimination_rules():
    assert evol.copies_prompt("Here is the #Rewritten Prompt#: foo")
    assert evol.copies_prompt("与えられたプロンプトを書き換えると")
    assert not evol.copies_prompt("東京の人口を年代別に説明して")
    assert evol.is_apology("申し訳ありませんが、お答えできません。")
    assert not evol.is_apology("sorry " + "word " * 100)  # long answers are kept
    assert evol.only_stop_words("The and, is!") and evol.only_stop_words("。。。")
    assert not evol.only_stop_words("東京は日本の首都です。")
    assert evol.judged_equal("Equal") and not evol.judged_equal("Not Equal")
    assert "Please replace general concepts" in evol.evolving_prompt("concretize", "x")
    assert "#Created Prompt#:" in evol.evolving_prompt("breadth", "x")


def test_local_tiny_model_end_to_end(tmp_path):
    pytest.importorskip("torch")
    from lora_factory.plugins.text.tiny_model import build_tiny_text_model

    model_dir = tmp_path / "tiny"
    build_tiny_text_model(model_dir, seed=0, hidden_size=32, num_layers=1)
    src = tmp_path / "seed.jsonl"
    src.write_text("".join(json.dumps({"instruction": q, "input": "", "output": a}, ensure_ascii=False) + "\n"
                           for q, a in SEEDS[:2]), encoding="utf-8")
    ctx = make_ctx(tmp_path)
    report = run_refine({"dataset": str(src), "operations": [{"op": "evol_instruct", "params": {
        "generator": {"type": "local", "model": "models/text/tiny", "model_path": str(model_dir)},
        "max_new_tokens": 12, "temperature": 0.0, "check_equal": False}}], "output_name": "local"}, ctx)
    op = report["per_operation"][0]
    assert op["items"] == 2 and sum(op["methods"].values()) == 2
    # gibberish from random weights: every attempt either survives or is eliminated for a stated reason
    assert sum(op["evolved"].values()) + sum(op["eliminated"].values()) == 2
    assert report["rows_out"] == 2 + sum(op["evolved"].values())
    out = (ctx.output_dir / "local.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(out) == report["rows_out"]
