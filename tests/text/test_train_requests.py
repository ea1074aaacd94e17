"""A train request is resolved completely before it is queued (what config.json records is what runs)."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from lora_factory.app import create_app


def test_empty_preset_is_recorded_as_the_preset_that_runs(tmp_path):
    """A regression: preset "" was accepted as quick by the server, then refused by the worker."""
    home = tmp_path / "ws"
    (home / "models" / "text" / "m").mkdir(parents=True)
    (home / "datasets" / "text").mkdir(parents=True)
    (home / "datasets" / "text" / "d.jsonl").write_text(json.dumps({"instruction": "q", "output": "a"}) + "\n",
                                                        encoding="utf-8")
    with TestClient(create_app(home, start_scheduler=False)) as c:
        c.app.state.services.jobs.tick = lambda: None  # only the queued request is under test
        r = c.post("/train/start", json={"base_model": "m", "dataset": "d.jsonl", "output_name": "o", "preset": "",
                                         "modality": "text", "params": {"learning_rate": 1e-3}})
        assert r.status_code == 200, r.text
        config = json.loads((home / "runs" / r.json()["job_id"] / "config.json").read_text(encoding="utf-8"))
        assert config["spec"]["preset"] == "quick"
        assert config["spec"]["params"]["learning_rate"] == 1e-3 and config["spec"]["params"]["max_steps"] == 60
        r = c.post("/train/start", json={"base_model": "m", "dataset": "d.jsonl", "output_name": "o2",
                                         "preset": "quick", "modality": "text", "params": {"learnig_rate": 1}})
        assert r.status_code == 422 and r.json()["error"]["code"] == "INVALID_TRAIN_PARAMS"


def test_no_model_or_dataset_chosen_is_said_in_words(tmp_path):
    """Issue 21: an empty dataset choice said 「パスが空です。」; the UI marks the field named in detail."""
    home = tmp_path / "ws"
    (home / "models" / "text" / "m").mkdir(parents=True)
    with TestClient(create_app(home, start_scheduler=False)) as c:
        for body, code, field in (({"base_model": "m", "dataset": ""}, "DATASET_NOT_CHOSEN", "dataset"),
                                  ({"base_model": " ", "dataset": "d.jsonl"}, "MODEL_NOT_CHOSEN", "base_model")):
            r = c.post("/train/start", json={**body, "output_name": "o", "modality": "text"})
            err = r.json()["error"]
            assert r.status_code == 400 and err["code"] == code and err["detail"] == {"field": field}, r.text
            assert "パス" not in err["message_ja"]
        r = c.post("/api/datasets/refine", json={"modality": "text", "dataset": "", "operations": [{"op": "dedup"}], "output_name": "x"})
        assert r.json()["error"]["code"] == "DATASET_NOT_CHOSEN", r.text
