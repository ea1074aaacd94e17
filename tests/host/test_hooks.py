"""Each hook driven through the host's real path (REST -> job worker or server) with the dummy plugin."""

from __future__ import annotations

import json

from tests.conftest import wait_for


def test_hook_download_model(dummy_home, server_factory):
    server = server_factory(dummy_home)
    with server.client() as c:
        job = c.post("/api/models/tiny", json={"modality": "dummy", "name": "tiny"}).json()["job_id"]
        job = wait_for(c, job, ("completed", "failed"))
        assert job["kind"] == "download" and job["status"] == "completed"
        assert (dummy_home / "models" / "dummy" / "tiny" / "weights.txt").read_text() == "dummy weights tiny"
        models = {m["name"]: m for m in c.get("/api/models", params={"modality": "dummy"}).json()["models"]}
        assert models["tiny"]["architecture"] == "DummyModel"


def test_hook_merge_adapter(dummy_home, server_factory):
    server = server_factory(dummy_home)
    with server.client() as c:
        job = c.post("/train/start", json={"base_model": "base", "dataset": "data.txt", "output_name": "ad",
                                           "modality": "dummy", "preset": "fast", "params": {"steps": 2}}).json()
        wait_for(c, job["job_id"], ("completed",))
        job = c.post("/api/models/merge", json={"modality": "dummy", "adapter": "ad", "output_name": "merged"}).json()
        assert wait_for(c, job["job_id"], ("completed", "failed"))["status"] == "completed"
        assert (dummy_home / "models" / "dummy" / "merged" / "merged.txt").read_text() == "ad"
        art = c.get("/api/artifacts", params={"kind": "model"}).json()["artifacts"]
        merged = next(a for a in art if a["path"] == "models/dummy/merged")
        lineage = c.get(f"/api/artifacts/{merged['id']}/lineage").json()
        assert {p["role"] for p in lineage["parents"]} == {"adapter", "base_model"}


def test_hook_refine_dataset_records_lineage(dummy_home, server_factory):
    server = server_factory(dummy_home)
    with server.client() as c:
        r = c.post("/api/datasets/refine", json={"modality": "dummy", "dataset": "data.txt",
                                                  "operations": [{"op": "upper", "params": {}}], "output_name": "v2"})
        job = wait_for(c, r.json()["job_id"], ("completed", "failed"))
        assert job["status"] == "completed", job
        out = dummy_home / "datasets" / "dummy" / "v2.txt"
        assert out.read_text() == "A\nB\nC"
        lineage = c.get("/api/datasets/dummy/v2.txt/lineage").json()
        assert [v["name"] for v in lineage["versions"]] == ["data.txt", "v2.txt"]
        assert lineage["versions"][1]["operations"] == [{"op": "upper", "params": {"resolved": True}}]
        assert lineage["versions"][1]["job_id"] == job["id"]
        r = c.post("/api/datasets/refine", json={"modality": "dummy", "dataset": "data.txt",
                                                  "operations": [{"op": "nope"}], "output_name": "v3"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "REFINE_INVALID_OPERATION"


def test_hook_resolve_refine_spec_rejects_bad_params_before_queueing(dummy_home, server_factory):
    server = server_factory(dummy_home)
    with server.client() as c:
        r = c.post("/api/datasets/refine", json={"modality": "dummy", "dataset": "data.txt",
                                                  "operations": [{"op": "upper", "params": {"bad": 1}}],
                                                  "output_name": "v2"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "REFINE_INVALID_PARAMS"
        assert c.get("/api/jobs").json()["jobs"] == []


def test_hook_resolve_train_spec_rejects_bad_params_before_queueing(dummy_home, server_factory):
    server = server_factory(dummy_home)
    with server.client() as c:
        r = c.post("/train/start", json={"base_model": "base", "dataset": "data.txt", "output_name": "x",
                                         "modality": "dummy", "preset": "fast", "params": {"steps": -1}})
        assert r.status_code == 400
        assert r.json()["error"]["code"] == "INVALID_TRAIN_PARAMS" and r.json()["error"]["message_ja"]
        assert c.get("/api/jobs").json()["jobs"] == []


def test_hook_infer_streams_and_openai_surface(dummy_home, server_factory):
    server = server_factory(dummy_home)
    with server.client() as c:
        body = {"modality": "dummy", "base_model": "base", "messages": [{"role": "user", "content": "abc"}]}
        stream = c.post("/api/infer/chat", json=body | {"stream": True}).text
        assert stream.count("event: token") == 3 and "event: done" in stream
        done = c.post("/api/infer/chat", json=body | {"stream": False}).json()
        assert done["text"] == "cba" and done["calls"] == 2  # the same worker process kept its session
        models = [m["id"] for m in c.get("/v1/models").json()["data"]]
        assert "base" in models
        r = c.post("/v1/chat/completions", json={"model": "base", "messages": [{"role": "user", "content": "xy"}]})
        assert r.json()["choices"][0]["message"]["content"] == "yx"
        r = c.post("/v1/chat/completions", json={"model": "nope", "messages": [{"role": "user", "content": "xy"}]})
        assert r.status_code == 404 and r.json()["error"]["code"] == "MODEL_NOT_FOUND"


def test_abandoned_chat_stream_does_not_block_the_next_request(dummy_home, server_factory):
    """A regression: a client leaving mid-stream kept the inference lock until the generator was collected."""
    import time

    server = server_factory(dummy_home)
    with server.client() as c:
        body = {"modality": "dummy", "base_model": "base", "messages": [{"role": "user", "content": "x" * 30}],
                "params": {"delay": 0.1}, "stream": True}
        with c.stream("POST", "/api/infer/chat", json=body) as r:
            for line in r.iter_lines():
                if line.startswith("event: token"):
                    break  # the user closes the tab after the first token
        started = time.monotonic()
        quick = {"modality": "dummy", "base_model": "base", "messages": [{"role": "user", "content": "ok"}],
                 "stream": False}
        assert c.post("/api/infer/chat", json=quick).json()["text"] == "ko"
        assert time.monotonic() - started < 6  # waited at most for the rest of the first answer (3 s)


def test_hook_evaluate_and_regression_suite(dummy_home, server_factory):
    server = server_factory(dummy_home)
    with server.client() as c:
        for name in ("ad", "ad-v2"):
            job = c.post("/train/start", json={"base_model": "base", "dataset": "data.txt", "output_name": name,
                                               "modality": "dummy", "preset": "fast", "params": {"steps": 2}}).json()
            wait_for(c, job["job_id"], ("completed",))
        suite = [{"prompt": "olleh", "contains": ["hello"]},
                 {"prompt": "x", "checks": [{"type": "regex", "value": "^\\[adapter\\]"}]}]
        r = c.post("/api/eval/start", json={"modality": "dummy", "adapter": "ad-v2", "suite": suite,
                                            "dataset": "data.txt"})
        job = wait_for(c, r.json()["job_id"], ("completed", "failed"))
        assert job["status"] == "completed", job
        summary = job["result"]["summary"]
        assert summary["adapter"]["passed"] == 2 and summary["base"]["passed"] == 1
        assert summary["previous"]["total"] == 2  # compared with ad (the previous version)
        assert summary["adapter"]["eval_loss"] == 0.5 and summary["base"]["eval_loss"] == 0.9
        adapter = c.get("/api/adapters/dummy/ad-v2").json()
        assert adapter["evals"] and adapter["evals"][0]["summary"]["adapter"]["passed"] == 2
        r = c.post("/api/eval/start", json={"modality": "dummy", "adapter": "ad", "suite": [{"prompt": "x"}]})
        assert r.status_code == 422 and r.json()["error"]["code"] == "SUITE_INVALID"


def test_hook_inspect_model_lists_models(dummy_home, server_factory):
    server = server_factory(dummy_home)
    with server.client() as c:
        models = c.get("/api/models", params={"modality": "dummy"}).json()["models"]
        assert models[0]["name"] == "base" and models[0]["parameters"] == 42
        assert models[0]["rel_path"] == "models/dummy/base"


def test_hook_inspect_dataset_validates_uploads_and_writes_nothing_on_error(dummy_home, server_factory):
    server = server_factory(dummy_home)
    with server.client() as c:
        bad = {"file": ("bad.txt", b"ok\nBAD line\nok\nBAD", "text/plain")}
        r = c.post("/api/datasets/upload", data={"modality": "dummy"}, files=bad)
        assert r.status_code == 422
        assert r.json()["error"]["detail"]["errors"] == [{"line": 2, "reason": "contains BAD"},
                                                         {"line": 4, "reason": "contains BAD"}]
        assert sorted(p.name for p in (dummy_home / "datasets" / "dummy").iterdir() if not p.name.startswith(".")) \
            == ["data.txt"]
        assert not [p for p in (dummy_home / "datasets" / "dummy").iterdir() if p.name.startswith(".tmp")]
        good = {"file": ("good.txt", b"x\ny\n", "text/plain")}
        info = c.post("/api/datasets/upload", data={"modality": "dummy"}, files=good).json()
        assert info["rows"] == 2 and info["name"] == "good.txt"
        r = c.post("/api/datasets/upload", data={"modality": "dummy"}, files=good)
        assert r.status_code == 409 and r.json()["error"]["code"] == "OUTPUT_EXISTS"
        r = c.post("/api/datasets/upload", data={"modality": "dummy"}, files={"file": ("x.exe", b"1", "x")})
        assert r.status_code == 415 and r.json()["error"]["code"] == "DATASET_UNSUPPORTED_FORMAT"
        listed = c.get("/api/datasets", params={"modality": "dummy"}).json()["datasets"]
        assert {d["name"] for d in listed} == {"data.txt", "good.txt"}
        r = c.request("DELETE", "/api/datasets/dummy/good.txt", json={})
        assert r.status_code == 400 and r.json()["error"]["code"] == "CONFIRMATION_REQUIRED"
        assert c.request("DELETE", "/api/datasets/dummy/good.txt", json={"confirm": True}).json()["ok"]
        assert not (dummy_home / "datasets" / "dummy" / "good.txt").exists()


def test_hook_import_dataset_index(dummy_home, server_factory):
    (dummy_home / "datasets" / "incoming").mkdir(parents=True)
    (dummy_home / "datasets" / "incoming" / "one.txt").write_text("1\n2\n")
    (dummy_home / "datasets" / "incoming" / "index.json").write_text(json.dumps({"files": ["one.txt"]}))
    server = server_factory(dummy_home)
    with server.client() as c:
        r = c.post("/api/datasets/import_info", json={"modality": "dummy",
                                                      "dataset_info_path": "datasets/incoming/index.json"})
        assert r.status_code == 200, r.text
        assert r.json()["datasets"] == [{"name": "one.txt", "format": "lines", "rows": 2}]


def test_minimal_plugin_with_only_describe_and_train(tmp_path, server_factory):
    """A third party's smallest plugin: no inspect hooks; uploads are kept unvalidated, training runs."""
    home = tmp_path / "ws"
    (home / "plugins").mkdir(parents=True)
    (home / "plugins" / "minimal.py").write_text(
        "from lora_factory import hookimpl\n"
        "@hookimpl\ndef describe_modalities():\n    return [{'id': 'mini', 'label_ja': 'ミニ', 'label_en': 'Mini'}]\n"
        "@hookimpl\ndef train(modality, spec, ctx):\n"
        "    if modality != 'mini':\n        return None\n"
        "    for i in range(1, 4):\n        ctx.progress(i, 3, loss=1.0 / i)\n"
        "    (ctx.output_dir / 'w.txt').write_text('ok')\n    return {'done': True}\n", encoding="utf-8")
    (home / "models" / "mini" / "m").mkdir(parents=True)
    server = server_factory(home)
    with server.client() as c:
        info = c.post("/api/datasets/upload", data={"modality": "mini"}, files={"file": ("d.bin", b"\x00\x01")}).json()
        assert info["validated"] is False and info["name"] == "d.bin"
        job = c.post("/train/start", json={"base_model": "m", "dataset": "d.bin", "output_name": "o",
                                           "preset": "any", "modality": "mini"}).json()["job_id"]
        job = wait_for(c, job, ("completed", "failed"))
        assert job["status"] == "completed" and job["step"] == 3 and job["result"]["done"] is True
        assert (home / "lora_adapters" / "mini" / "o" / "w.txt").read_text() == "ok"


def test_models_and_datasets_in_use_are_not_deleted(dummy_home, server_factory):
    server = server_factory(dummy_home)
    with server.client() as c:
        job = c.post("/train/start", json={"base_model": "base", "dataset": "data.txt", "output_name": "busy",
                                           "modality": "dummy", "preset": "fast",
                                           "params": {"steps": 400, "delay": 0.05}}).json()["job_id"]
        wait_for(c, job, ("running",))
        for url in ("/api/models/dummy/base", "/api/datasets/dummy/data.txt"):
            r = c.request("DELETE", url, json={"confirm": True})
            assert r.status_code == 409 and r.json()["error"]["code"] == "IN_USE"
            assert r.json()["error"]["detail"]["job_id"] == job
        assert (dummy_home / "models" / "dummy" / "base" / "weights.txt").exists()
        c.post(f"/train/cancel/{job}")
        wait_for(c, job, ("canceled",))
        assert c.request("DELETE", "/api/models/dummy/base", json={"confirm": True}).json()["ok"]
        assert not (dummy_home / "models" / "dummy" / "base").exists()
        assert not list((dummy_home / "models" / "dummy").glob(".trash-*"))


def test_a_refine_that_removes_every_row_publishes_nothing(dummy_home, server_factory):
    (dummy_home / "datasets" / "dummy" / "empty.txt").write_text("", encoding="utf-8")
    server = server_factory(dummy_home)
    with server.client() as c:
        job = c.post("/api/datasets/refine", json={"modality": "dummy", "dataset": "empty.txt",
                                                    "operations": [{"op": "upper"}], "output_name": "none"}).json()
        job = wait_for(c, job["job_id"], ("completed", "failed"))
        assert job["status"] == "failed" and job["error"]["code"] == "REFINE_EMPTY_RESULT"
        assert not (dummy_home / "datasets" / "dummy" / "none.txt").exists()
        assert (dummy_home / "runs" / job["id"] / "output" / "none.txt").exists()  # kept for a look


def test_dataset_inspection_is_cached_per_file_version(dummy_home):
    from lora_factory.core.services import Services

    svc = Services(dummy_home)
    calls = []
    real = svc.plugins.call

    def counting_call(hook_name, modality, **kwargs):
        if hook_name == "inspect_dataset":
            calls.append(kwargs["options"].get("preview_rows"))
        return real(hook_name, modality, **kwargs)

    try:
        svc.plugins.call = counting_call
        path = dummy_home / "datasets" / "dummy" / "data.txt"
        first = svc.datasets.inspect_dataset("dummy", path, {"preview_rows": 2})
        again = svc.datasets.inspect_dataset("dummy", path, {"preview_rows": 1})
        assert len(calls) == 1 and first["rows"] == again["rows"] == 3 and len(again["preview"]) == 1
        path.write_text("a\nb\nc\nd\n")  # a new version of the file is read again
        assert svc.datasets.inspect_dataset("dummy", path)["rows"] == 4 and len(calls) == 2
    finally:
        svc.close()


def test_the_chat_model_is_unloaded_before_a_gpu_job(dummy_home, server_factory):
    """Chat and training share the GPU: a train job starts only after the chat's model process is gone."""
    import psutil

    server = server_factory(dummy_home, LORA_FACTORY_RELEASE_INFERENCE="always")
    with server.client() as c:
        chat = {"modality": "dummy", "base_model": "base", "messages": [{"role": "user", "content": "ab"}],
                "stream": False}
        assert c.post("/api/infer/chat", json=chat).json()["text"] == "ba"
        infer_pids = [p.pid for p in psutil.Process(server.proc.pid).children(recursive=True)
                      if "lora_factory.core.inference.worker" in " ".join(p.cmdline())]
        assert len(infer_pids) == 1
        job = c.post("/train/start", json={"base_model": "base", "dataset": "data.txt", "output_name": "g",
                                           "modality": "dummy", "preset": "fast", "params": {"steps": 2}}).json()
        job = wait_for(c, job["job_id"], ("completed", "failed"))
        assert job["status"] == "completed"
        assert not psutil.pid_exists(infer_pids[0]) or psutil.Process(infer_pids[0]).status() == psutil.STATUS_ZOMBIE
        assert "unloaded to free GPU memory" in c.get(f"/api/jobs/{job['id']}/log").text
        assert c.post("/api/infer/chat", json=chat).json()["text"] == "ba"  # loads again on demand
