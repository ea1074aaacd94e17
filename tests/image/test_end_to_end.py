"""The image modality as a user drives it: CLI tiny-model, then a real ``lora-factory serve``: zip
dataset (a corrupt one refused by name, then a good one), auto-caption refine with a tiny tagger and
captioner, quick training with two buckets and live samples, the outputs opened by plain diffusers and
safetensors, generation through the API and the ``openai`` client, a regression suite."""

from __future__ import annotations

import base64
import io
import json
import re
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest

from lora_factory.plugins.image.png_info import parse_a1111_parameters, read_png_text
from tests.conftest import wait_for
from tests.image.conftest import SINGLE_THREAD_ENV, build_tiny_blip, build_tiny_clip, build_tiny_tagger, make_dataset

KOHYA_KEY = re.compile(r"^lora_(unet|te)_[a-z0-9_]+\.(lora_down\.weight|lora_up\.weight|alpha)$")


def zipped(folder: Path, extra: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder).as_posix())
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return buf.getvalue()


def job_done(c: httpx.Client, response: httpx.Response, timeout: float = 240) -> dict:
    assert response.status_code == 200, response.text
    job = wait_for(c, response.json()["job_id"], ("completed", "failed", "canceled"), timeout=timeout)
    assert job["status"] == "completed", job
    return job


def render(pipe, seed: int = 4) -> np.ndarray:
    import torch

    pipe.set_progress_bar_config(disable=True)
    return pipe("mychar, red", num_inference_steps=3, width=64, height=64, output_type="np",
                generator=torch.Generator().manual_seed(seed)).images[0]


@pytest.mark.slow
def test_image_chain_end_to_end(tmp_path, server_factory, tiny_workspaces):
    home = tmp_path / "ws"
    printed = tiny_workspaces.copy(home, ("image", "--out", "models/image/tiny"))  # lora-factory tiny-model, once
    assert printed[0]["architecture"] == "sd15"
    tagger, blip = build_tiny_tagger(tmp_path / "wd-tiny"), build_tiny_blip(tmp_path / "blip-tiny")
    build_tiny_clip(home / "models" / "image" / "clip" / "tiny-clip")
    data = make_dataset(tmp_path / "data", n=6, captions=False)
    server = server_factory(home, **SINGLE_THREAD_ENV)
    with httpx.Client(base_url=server.url, timeout=300) as c:
        # -- dataset: one corrupt image refuses the zip, naming it; the good zip goes in ----------
        r = c.post("/api/datasets/upload", data={"modality": "image", "name": "chars"},
                   files={"file": ("chars.zip", zipped(data, {"4_mychar/broken.png": b"\x89PNG not an image"}))})
        assert r.status_code == 422 and r.json()["error"]["code"] == "DATASET_INVALID"
        assert [e["file"] for e in r.json()["error"]["detail"]["errors"]] == ["4_mychar/broken.png"]
        assert "broken.png" in r.json()["error"]["message"] and not (home / "datasets" / "image" / "chars").exists()
        r = c.post("/api/datasets/upload", data={"modality": "image", "name": "chars"},
                   files={"file": ("chars.zip", zipped(data))})
        assert r.status_code == 200, r.text
        assert r.json()["rows"] == 6 and r.json()["stats"]["images_with_repeats"] == 24
        preview = c.get("/api/datasets/image/chars").json()["preview"][0]
        assert c.get(preview["media"][0]["url"]).content[:8] == b"\x89PNG\r\n\x1a\n"  # thumbnail served
        # -- auxiliary models and the auto-caption refine -------------------------------------
        job_done(c, c.post("/api/models/import", json={"modality": "image", "source_path": str(tagger), "kind": "tagger"}))
        job_done(c, c.post("/api/models/import", json={"modality": "image", "source_path": str(blip),
                                                        "kind": "captioner"}))
        ops = [{"op": "auto_tag", "params": {"model": "wd-tiny", "exclude_tags": ["solo"]}},
               {"op": "auto_caption", "params": {"model": "blip-tiny", "mode": "append", "max_new_tokens": 6}},
               {"op": "edit_tags", "params": {"trigger": "mychar"}}]
        job = job_done(c, c.post("/api/datasets/refine", json={"modality": "image", "dataset": "chars",
                                                               "output_name": "chars-tagged", "operations": ops}))
        assert job["result"]["changed"]["auto_tag"] == 6
        caption = (home / "datasets" / "image" / "chars-tagged" / "4_mychar" / "img00.txt").read_text(encoding="utf-8")
        assert caption.startswith("mychar, red")
        lineage = c.get("/api/datasets/image/chars-tagged/lineage").json()
        assert [v["name"] for v in lineage["versions"]] == ["chars", "chars-tagged"]
        # -- train quick: two buckets, samples every 2 steps ----------------------------------
        params = {"max_steps": 4, "sample_every_n_steps": 2, "sample_steps": 2, "rank": 4, "alpha": 2,
                  "learning_rate": 5e-3}
        job = job_done(c, c.post("/train/start", json={"modality": "image", "base_model": "tiny", "dataset": "chars-tagged",
                                                       "output_name": "mychar", "preset": "quick", "params": params}))
        assert job["result"]["buckets"] == ["48x80", "80x48"]
        samples = c.get(f"/api/jobs/{job['id']}/samples").json()["samples"]
        assert sorted({s["step"] for s in samples}) == [2, 4] and c.get(samples[0]["url"]).status_code == 200
        adapter = home / "lora_adapters" / "image" / "mychar"
        # -- the outputs, opened without LoRA Factory -----------------------------------------
        from diffusers import StableDiffusionPipeline
        from safetensors import safe_open

        pipe = StableDiffusionPipeline.from_pretrained(home / "models" / "image" / "tiny", safety_checker=None,
                                                       requires_safety_checker=False)
        base_image = render(pipe)
        pipe.load_lora_weights(str(adapter))
        assert np.abs(render(pipe) - base_image).max() > 0.01
        pipe.unload_lora_weights()
        with safe_open(str(adapter / "mychar.safetensors"), framework="pt") as fh:
            keys, meta = list(fh.keys()), fh.metadata()
        assert keys and all(KOHYA_KEY.match(k) for k in keys)
        assert meta["ss_network_module"] == "networks.lora" and meta["ss_base_model_version"] == "sd_v1"
        assert meta["ss_network_alpha"] == "2" and "mychar" in json.loads(meta["ss_tag_frequency"])["4_mychar"]
        pipe.load_lora_weights(str(adapter), weight_name="mychar.safetensors")
        assert np.abs(render(pipe) - base_image).max() > 0.01
        # -- generation through the API (an uploaded init image: img2img) and the openai client
        up = c.post("/api/infer/uploads", files={"file": ("init.png", (data / "4_mychar" / "img01.png").read_bytes())})
        body = {"modality": "image", "base_model": "tiny", "adapter": "mychar", "task": "image",
                "input": {"prompt": "mychar, red"}, "params": {"seed": 9, "steps": 3, "width": 64, "height": 64}}
        done = c.post("/api/infer/generate", json=body).json()
        image = done["media"][0]
        assert image["url"].startswith("/api/outputs/image/") and image["meta"]["adapters"][0]["name"] == "mychar"
        png = c.get(image["url"]).content
        assert read_png_text(png)["parameters"].startswith("mychar, red <lora:mychar:1>")
        done = c.post("/api/infer/generate", json=dict(body, input={"prompt": "a cat", "image": up.json()["value"]})).json()
        assert done["mode"] == "img2img"
        bad = c.post("/api/infer/generate", json=dict(body, params={"vae": "missing"}))
        assert bad.status_code == 404 and bad.json()["error"]["detail"]["field"] == "vae"
        from openai import OpenAI

        client = OpenAI(base_url=server.url + "/v1", api_key="local", timeout=300)
        result = client.images.generate(model="tiny+mychar", prompt="mychar, red", size="64x64", n=1,
                                        response_format="b64_json", extra_body={"seed": 5, "steps": 2})
        settings = parse_a1111_parameters(read_png_text(base64.b64decode(result.data[0].b64_json))["parameters"])
        assert settings["seed"] == 5 and settings["adapters"] == [{"name": "mychar", "weight": 1.0}]
        assert (settings["width"], settings["height"]) == (64, 64)
        # -- a second version, then the regression suite against the first ---------------------
        job_done(c, c.post("/train/start", json={"modality": "image", "base_model": "tiny", "dataset": "chars-tagged",
                                                  "output_name": "mychar-v2", "preset": "quick",
                                                  "params": dict(params, sample_every_n_steps=0, seed=7)}))
        suite = [{"name": "red", "input": {"prompt": "mychar, red"}, "params": {"steps": 2},
                  "checks": [{"type": "phash_distance", "max_distance": 64}, {"type": "clip_score", "min_score": -100}]}]
        job = job_done(c, c.post("/api/eval/start", json={"modality": "image", "adapter": "mychar-v2", "suite": suite}))
        targets = job["result"]["targets"]
        assert set(targets) == {"adapter", "base", "previous"}
        checks = {ch["type"]: ch for ch in targets["adapter"]["cases"][0]["checks"]}
        assert checks["phash_distance"]["passed"] and checks["phash_distance"]["score"] is not None
        assert checks["clip_score"]["score"] is not None and checks["clip_score"]["detail"]["model"] == "tiny-clip"
        assert c.get(targets["adapter"]["cases"][0]["media"][0]["url"]).status_code == 200
