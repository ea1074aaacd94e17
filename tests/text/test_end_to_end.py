"""The text modality as a user drives it: CLI tiny-model, then everything through the REST API of a
real ``lora-factory serve``, an OpenAI client, and plain peft outside LoRA Factory."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest

from tests.conftest import wait_for
from tests.text.conftest import MEMO_ROWS


def upload(c, name: str, payload: bytes, **form):
    return c.post("/api/datasets/upload", data={"modality": "text", **form}, files={"file": (name, payload)})


@pytest.mark.slow
def test_text_chain_end_to_end(tmp_path, server_factory, tiny_workspaces):
    home = tmp_path / "ws"
    tiny_workspaces.copy(home, ("text", "--out", "models/text/tiny"))  # lora-factory tiny-model, once per session
    server = server_factory(home)
    with server.client() as c:
        # -- upload in each format ----------------------------------------------------------
        alpaca = "\n".join(json.dumps({"instruction": q, "input": "", "output": a}, ensure_ascii=False)
                           for q, a in MEMO_ROWS).encode()
        planted = alpaca + b"\n" + "\n".join(json.dumps({"instruction": q, "output": a}, ensure_ascii=False)
                                            for q, a in MEMO_ROWS[:3]).encode()  # 3 planted duplicates
        info = upload(c, "memo.jsonl", planted).json()
        assert info["format"] == "alpaca" and info["rows"] == len(MEMO_ROWS) + 3
        sharegpt = json.dumps([{"conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": a}]}
                               for q, a in MEMO_ROWS], ensure_ascii=False).encode()
        assert upload(c, "share.json", sharegpt).json()["format"] == "sharegpt"
        openai_rows = "\n".join(json.dumps({"messages": [{"role": "user", "content": q},
                                                         {"role": "assistant", "content": a}]}, ensure_ascii=False)
                                for q, a in MEMO_ROWS).encode()
        assert upload(c, "oa.jsonl", openai_rows).json()["format"] == "openai"
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["質問", "回答"])
        writer.writerows(MEMO_ROWS)
        cp932 = upload(c, "sjis.csv", buf.getvalue().encode("cp932"),
                       mapping=json.dumps({"instruction": "質問", "output": "回答"})).json()
        assert cp932["encoding"].lower() in ("cp932", "shift_jis") and cp932["rows"] == len(MEMO_ROWS)
        assert "東京" in json.dumps(cp932["preview"], ensure_ascii=False)
        assert upload(c, "plain.txt", "吾輩は猫である。\n\n名前はまだ無い。".encode()).json()["format"] == "text"
        bad = b'{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": \n{"instruction": "", "output": "d"}\n'
        r = upload(c, "bad.jsonl", bad)
        assert r.status_code == 422
        lines = [e["line"] for e in r.json()["error"]["detail"]["errors"]]
        assert lines == [2, 3] and r.json()["error"]["message_ja"]
        assert "bad.jsonl" in r.json()["error"]["message"] and ".tmp" not in r.json()["error"]["message"]
        assert not (home / "datasets" / "text" / "bad.jsonl").exists()

        # -- refine: the planted duplicates go, lineage is recorded ---------------------------
        job = c.post("/api/datasets/refine", json={"modality": "text", "dataset": "memo.jsonl",
                                                    "operations": [{"op": "normalize"}, {"op": "dedup_exact"},
                                                                   {"op": "dedup_near"}],
                                                    "output_name": "memo-clean"}).json()["job_id"]
        job = wait_for(c, job, ("completed", "failed"))
        assert job["status"] == "completed", job
        assert job["result"]["rows_in"] == len(MEMO_ROWS) + 3 and job["result"]["rows_out"] == len(MEMO_ROWS)
        lineage = c.get("/api/datasets/text/memo-clean.jsonl/lineage").json()
        assert [v["name"] for v in lineage["versions"]] == ["memo.jsonl", "memo-clean.jsonl"]

        # -- train with quick through the seed endpoint ----------------------------------------
        job_id = c.post("/train/start", json={"base_model": "models/text/tiny", "dataset": "datasets/text/memo-clean.jsonl",
                                              "output_name": "memo-lora", "preset": "quick", "modality": "text",
                                              "params": {}}).json()["job_id"]
        job = wait_for(c, job_id, ("completed", "failed"), timeout=300)
        assert job["status"] == "completed", job
        losses = [m["loss"] for m in c.get(f"/api/jobs/{job_id}/metrics").json()["metrics"] if m.get("loss")]
        assert losses[-1] < 0.5 * losses[0], losses
        adapter_dir = home / "lora_adapters" / "text" / "memo-lora"
        for name in ("adapter_config.json", "adapter_model.safetensors", "training_config.json", "README.md",
                     "tokenizer_config.json"):
            assert (adapter_dir / name).exists(), name

        # -- chat: streamed, and the adapter answers differently from the base ----------------
        body = {"modality": "text", "base_model": "tiny", "messages": [{"role": "user", "content": "日本の首都は?"}],
                "params": {"max_new_tokens": 12, "temperature": 0}}
        stream = c.post("/api/infer/chat", json=body | {"adapter": "memo-lora", "stream": True}).text
        assert "event: token" in stream and "event: done" in stream
        tuned = c.post("/api/infer/chat", json=body | {"adapter": "memo-lora", "stream": False}).json()["text"]
        base = c.post("/api/infer/chat", json=body | {"stream": False}).json()["text"]
        assert tuned != base
        assert "東京" in tuned
        compare = c.post("/api/infer/compare", json=body | {"adapter": "memo-lora"}).json()
        assert compare["adapter"]["text"] == tuned and compare["base"]["text"] == base

        # -- an OpenAI client ---------------------------------------------------------------
        from openai import OpenAI

        client = OpenAI(base_url=server.url + "/v1", api_key="unused")
        assert "tiny+memo-lora" in [m.id for m in client.models.list().data]
        answer = client.chat.completions.create(model="tiny+memo-lora", temperature=0, max_tokens=12,
                                                messages=[{"role": "user", "content": "日本の首都は?"}])
        assert answer.choices[0].message.content == tuned
        chunks = [ch.choices[0].delta.content or "" for ch in client.chat.completions.create(
            model="tiny+memo-lora", temperature=0, max_tokens=12, stream=True,
            messages=[{"role": "user", "content": "日本の首都は?"}])]
        assert "".join(chunks) == tuned

        # -- regression suite --------------------------------------------------------------
        suite = [{"prompt": q, "contains": [a[:2]]} for q, a in MEMO_ROWS[:4]]
        job = c.post("/api/eval/start", json={"modality": "text", "adapter": "memo-lora", "suite": suite,
                                              "dataset": "memo-clean.jsonl", "params": {"max_new_tokens": 12}}).json()
        job = wait_for(c, job["job_id"], ("completed", "failed"), timeout=300)
        assert job["status"] == "completed", job
        summary = job["result"]["summary"]
        assert summary["adapter"]["total"] == 4 and summary["adapter"]["passed"] > summary["base"]["passed"]
        assert summary["adapter"]["eval_loss"] < summary["base"]["eval_loss"]
        assert c.get("/api/adapters/text/memo-lora").json()["evals"]

    # -- the adapter opens with plain peft, outside LoRA Factory --------------------------------
    code = ("import sys, torch; from transformers import AutoModelForCausalLM, AutoTokenizer; "
            "from peft import PeftModel; base = AutoModelForCausalLM.from_pretrained(sys.argv[1]); "
            "m = PeftModel.from_pretrained(base, sys.argv[2]); tok = AutoTokenizer.from_pretrained(sys.argv[2]); "
            "ids = tok.apply_chat_template([{'role': 'user', 'content': '日本の首都は?'}], add_generation_prompt=True, return_tensors='pt', return_dict=True); "
            "out = m.generate(**ids, max_new_tokens=12, do_sample=False); "
            "print(tok.decode(out[0][ids['input_ids'].shape[1]:], skip_special_tokens=True))")
    out = subprocess.run([sys.executable, "-c", code, str(home / "models" / "text" / "tiny"), str(adapter_dir)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "東京" in out.stdout
