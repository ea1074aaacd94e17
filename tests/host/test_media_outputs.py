"""Media from plugins: generated images and audio served by URL, speech streamed chunk by chunk,
compare with one seed, input uploads, training samples, regression checks of a plugin's own kind,
auxiliary model kinds and single-file checkpoints."""

from __future__ import annotations

import base64
import json
import time

import httpx

from tests.conftest import wait_for
from tests.host.test_folder_datasets import GOOD, PNG, make_zip, toy_home  # noqa: F401 - fixture


def tiny_base(c: httpx.Client) -> None:
    job = c.post("/api/models/tiny", json={"modality": "toymedia", "name": "base"}).json()["job_id"]
    assert wait_for(c, job, ("completed", "failed"))["status"] == "completed"


def test_generated_media_is_served_by_url_and_speech_streams_in_chunks(toy_home, server_factory):  # noqa: F811
    server = server_factory(toy_home)
    with server.client() as c:
        tiny_base(c)
        up = c.post("/api/infer/uploads", files={"file": ("ref image.png", PNG)}).json()
        assert up["value"].startswith("upload:") and up["size_bytes"] == len(PNG)
        body = {"modality": "toymedia", "base_model": "base", "task": "image",
                "input": {"prompt": "a cat", "image": up["value"]}, "params": {"seed": 7}}
        done = c.post("/api/infer/generate", json=body).json()
        image = done["media"][0]
        assert image["kind"] == "image" and "path" not in image and image["meta"]["input_bytes"] == len(PNG)
        assert image["url"].startswith("/api/outputs/toymedia/") and c.get(image["url"]).content == PNG
        assert (toy_home / "artifacts" / "outputs" / "toymedia" / image["file"]).is_file()
        assert c.get("/api/outputs/toymedia/../../settings.json").status_code in (400, 404)
        bad = dict(body, input={"image": "upload:../../settings.json"})
        assert c.post("/api/infer/generate", json=bad).status_code == 404
        assert c.post("/api/infer/generate", json=dict(body, params={"steps": 0})).json()["error"]["code"] \
            == "INVALID_INFER_PARAMS"
        assert c.post("/api/infer/generate", json=dict(body, task="video")).json()["error"]["code"] == "UNKNOWN_TASK"

        speech = {"modality": "toymedia", "base_model": "base", "task": "speech", "stream": True,
                  "input": {"text": "一文目。二文目。三文目。"}, "params": {"delay": 0.4}}
        started = time.monotonic()
        arrivals: list[tuple[str, float, dict]] = []
        with c.stream("POST", "/api/infer/generate", json=speech) as r:
            event = None
            for line in r.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event:
                    arrivals.append((event, time.monotonic() - started, json.loads(line[6:])))
        chunks = [a for a in arrivals if a[0] == "audio" and "chunk" in a[2]]
        finished = next(a for a in arrivals if a[0] == "audio" and "url" in a[2])
        assert len(chunks) == 3 and [c_[2]["index"] for c_ in chunks] == [0, 1, 2]
        assert len(base64.b64decode(chunks[0][2]["chunk"])) == 1600  # 800 PCM16 samples
        # the first chunk reached the client while the rest was still being made
        assert chunks[0][1] < arrivals[-1][1] - 0.5
        assert arrivals[-1][0] == "done" and c.get(finished[2]["url"]).content[:4] == b"RIFF"


def test_compare_uses_one_seed_and_training_samples_are_live(toy_home, server_factory):  # noqa: F811
    server = server_factory(toy_home)
    with server.client() as c:
        tiny_base(c)
        assert c.post("/api/datasets/upload", data={"modality": "toymedia"},
                      files={"file": ("pets.zip", make_zip(GOOD))}).status_code == 200
        job = c.post("/train/start", json={"modality": "toymedia", "base_model": "base", "dataset": "pets",
                                           "output_name": "toy", "preset": "fast"}).json()["job_id"]
        assert wait_for(c, job, ("completed", "failed"))["status"] == "completed"
        samples = c.get(f"/api/jobs/{job}/samples").json()["samples"]
        assert [s["step"] for s in samples] == [2, 4] and samples[0]["kind"] == "image"
        assert c.get(samples[0]["url"]).content == PNG
        assert c.get(f"/api/jobs/{job}/files/secrets.json").status_code == 404
        assert c.get(f"/api/jobs/{job}/files/../config.json").status_code in (400, 404)
        events = c.get(f"/api/jobs/{job}/events").text
        assert "event: sample" in events and samples[0]["url"] in events
        body = {"modality": "toymedia", "base_model": "base", "adapter": "toy", "task": "image",
                "input": {"prompt": "a cat"}, "compare": True}
        both = c.post("/api/infer/generate", json=body).json()
        assert both["base"]["media"][0]["meta"]["seed"] == both["adapter"]["media"][0]["meta"]["seed"] == both["seed"]
        assert both["base"]["media"][0]["meta"]["adapters"] == [] and both["adapter"]["media"][0]["meta"]["adapters"] == ["toy"]
        several = dict(body, compare=False, adapter=None, adapters=[{"name": "toy", "weight": 0.5}])
        assert c.post("/api/infer/generate", json=several).json()["media"][0]["meta"]["adapters"] == ["toy"]


def test_hook_regression_check_of_the_plugins_kind_with_media_kept(toy_home, server_factory):  # noqa: F811
    server = server_factory(toy_home)
    with server.client() as c:
        tiny_base(c)
        assert c.post("/api/datasets/upload", data={"modality": "toymedia"},
                      files={"file": ("pets.zip", make_zip(GOOD))}).status_code == 200
        for name in ("toy", "toy-v2"):
            job = c.post("/train/start", json={"modality": "toymedia", "base_model": "base", "dataset": "pets",
                                               "output_name": name, "preset": "fast"}).json()["job_id"]
            assert wait_for(c, job, ("completed", "failed"))["status"] == "completed"
        r = c.post("/api/eval/start", json={"modality": "toymedia", "adapter": "toy-v2",
                                            "suite": [{"input": {"prompt": "x"}, "checks": [{"type": "sharp"}]}]})
        assert r.status_code == 422 and "sharp" in r.json()["error"]["message"]
        suite = [{"name": "cat", "input": {"prompt": "a cat"}, "checks": [{"type": "bright", "min": 0.1}]}]
        job = c.post("/api/eval/start", json={"modality": "toymedia", "adapter": "toy-v2", "suite": suite}).json()
        job = wait_for(c, job["job_id"], ("completed", "failed"))
        assert job["status"] == "completed", job
        targets = job["result"]["targets"]
        assert set(targets) == {"adapter", "base", "previous"}
        case = targets["adapter"]["cases"][0]
        assert case["passed"] and case["checks"][0]["type"] == "bright" and case["checks"][0]["min"] == 0.1
        assert case["checks"][0]["detail"]["same_as_previous"] is True  # compared with toy (the previous version)
        assert case["media"][0]["url"].startswith(f"/api/jobs/{job['id']}/files/outputs/adapter/")
        assert c.get(case["media"][0]["url"]).content == PNG


def test_hook_resolve_infer_request_aux_model_kinds_and_single_file_checkpoints(toy_home, server_factory, tmp_path):  # noqa: F811
    single = tmp_path / "civitai model.safetensors"
    header = json.dumps({"__metadata__": {"format": "pt"}}).encode()
    single.write_bytes(len(header).to_bytes(8, "little") + header)
    server = server_factory(toy_home)
    with server.client() as c:
        tiny_base(c)
        job = c.post("/api/models/tiny", json={"modality": "toymedia", "name": "flavoured",
                                               "options": {"arch": "big", "source": "hub"}}).json()["job_id"]
        spec = wait_for(c, job, ("completed", "failed"))["spec"]
        assert spec["arch"] == "big" and spec["source"] == "tiny"  # options reach the plugin; reserved keys stay
        job = c.post("/api/models/import", json={"modality": "toymedia", "source_path": str(single)}).json()["job_id"]
        assert wait_for(c, job, ("completed", "failed"))["status"] == "completed"
        assert (toy_home / "models" / "toymedia" / "civitai_model" / "civitai model.safetensors").is_file()
        folder = tmp_path / "myvae"
        folder.mkdir()
        (folder / "config.json").write_text("{}")
        job = c.post("/api/models/import", json={"modality": "toymedia", "source_path": str(folder),
                                                 "kind": "vae"}).json()["job_id"]
        assert wait_for(c, job, ("completed", "failed"))["status"] == "completed"
        assert (toy_home / "models" / "toymedia" / "vae" / "myvae" / "weights.txt").read_text() == "local vae"
        bases = [m["name"] for m in c.get("/api/models?modality=toymedia").json()["models"]]
        assert sorted(bases) == ["base", "civitai_model", "flavoured"]
        vaes = c.get("/api/models?modality=toymedia&kind=vae").json()["models"]
        assert [(m["name"], m["kind"]) for m in vaes] == [("myvae", "vae")]
        assert c.get("/api/models?modality=toymedia&kind=lora").status_code == 400
        r = c.post("/api/infer/generate", json={"modality": "toymedia", "base_model": "base", "task": "image",
                                                "params": {"vae": "myvae"}})
        assert r.json()["media"][0]["meta"]["vae"].endswith("models/toymedia/vae/myvae")
        r = c.post("/api/models/import", json={"modality": "text", "source_path": str(single)})
        assert r.status_code == 400 and r.json()["error"]["code"] == "SINGLE_FILE_UNSUPPORTED"
        assert c.request("DELETE", "/api/models/toymedia/myvae?kind=vae", json={"confirm": True}).status_code == 200
        assert not (toy_home / "models" / "toymedia" / "vae" / "myvae").exists()
