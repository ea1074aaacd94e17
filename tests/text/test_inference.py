"""Streaming chat with the cached base, adapters switched without reloading it."""

from __future__ import annotations

import shutil
import types

import pytest

from lora_factory.kit import LoRAFactoryError
from lora_factory.kit.testing import FakeInferenceSession
from lora_factory.plugins.text.inference import chat_events

QUESTION = [{"role": "user", "content": "日本の首都は?"}]


def _ask(session, base, adapter, messages=QUESTION, **params):
    events = list(chat_events({"base_model": str(base), "adapter": str(adapter) if adapter else None,
                               "messages": messages, "params": {"max_new_tokens": 16, **params},
                               "stream": True}, session))
    return events


def test_stream_and_adapter_changes_answer(tiny_model, trained_adapter, tmp_path):
    session = FakeInferenceSession(tmp_path / "outputs")
    with_adapter = _ask(session, tiny_model, trained_adapter["path"])
    tokens = [e for e in with_adapter if e["type"] == "token"]
    done = with_adapter[-1]
    assert done["type"] == "done" and len(tokens) >= 2
    assert "".join(e["text"] for e in tokens) == done["text"]
    assert done["text"] == "東京です。"  # memorised by the quick preset
    assert done["usage"]["prompt_tokens"] > 0 and 0 < done["usage"]["completion_tokens"] <= 16

    base_only = _ask(session, tiny_model, None)[-1]
    assert base_only["text"] != done["text"]
    entry = next(iter(session.cache["text"].values()))
    base_id = id(entry.base_model)

    # a second adapter (same weights, other folder) attaches to the same cached base
    other = tmp_path / "other_adapter"
    shutil.copytree(trained_adapter["path"], other)
    again = _ask(session, tiny_model, other)[-1]
    assert again["text"] == done["text"]
    assert len(session.cache["text"]) == 1 and id(entry.base_model) == base_id
    assert entry.model.get_base_model() is entry.base_model
    assert len(entry.adapters) == 2
    # the base alone still answers like the base after adapters were attached
    assert _ask(session, tiny_model, None)[-1]["text"] == base_only["text"]
    assert _ask(session, tiny_model, trained_adapter["path"])[-1]["text"] == done["text"]


def test_adapter_replaced_on_disk_is_reloaded(tiny_model, trained_adapter, tmp_path):
    """A regression: an adapter deleted and trained again under the same name was served stale."""
    import os

    session = FakeInferenceSession(tmp_path / "outputs")
    folder = tmp_path / "same_name"
    shutil.copytree(trained_adapter["path"], folder)
    tuned = _ask(session, tiny_model, folder)[-1]["text"]
    base_only = _ask(session, tiny_model, None)[-1]["text"]
    assert tuned != base_only
    # "retrain" into the same folder: a zero LoRA update makes the adapter answer like the base
    from safetensors.torch import load_file, save_file

    weights = load_file(folder / "adapter_model.safetensors")
    save_file({k: (v * 0 if "lora_B" in k else v) for k, v in weights.items()}, folder / "adapter_model.safetensors")
    stamp = folder / "adapter_model.safetensors"
    os.utime(stamp, ns=(stamp.stat().st_atime_ns, stamp.stat().st_mtime_ns + 10**9))
    assert _ask(session, tiny_model, folder)[-1]["text"] == base_only
    entry = next(iter(session.cache["text"].values()))
    assert len(entry.adapters) == 1  # the stale copy was dropped from the model


def test_one_base_model_stays_loaded_at_a_time(tiny_model, tmp_path):
    session = FakeInferenceSession(tmp_path / "outputs")
    other = tmp_path / "other_base"
    shutil.copytree(tiny_model, other)
    _ask(session, tiny_model, None)
    _ask(session, other, None)
    assert [k.rsplit("@", 1)[0] for k in session.cache["text"]] == [str(other.resolve())]


def test_sampling_with_seed_is_reproducible(tiny_model, tmp_path):
    session = FakeInferenceSession(tmp_path / "outputs")
    a = _ask(session, tiny_model, None, temperature=1.0, top_p=0.9, top_k=50, seed=7)[-1]["text"]
    b = _ask(session, tiny_model, None, temperature=1.0, top_p=0.9, top_k=50, seed=7)[-1]["text"]
    assert a == b


def test_prompt_and_errors(tiny_model, tmp_path):
    session = FakeInferenceSession(tmp_path / "outputs")
    events = list(chat_events({"base_model": str(tiny_model), "prompt": "こんにちは", "params": {"max_new_tokens": 4}},
                              session))
    assert events[-1]["type"] == "done" and events[-1]["usage"]["completion_tokens"] <= 4
    with pytest.raises(LoRAFactoryError) as err:
        list(chat_events({"base_model": str(tmp_path / "none"), "messages": QUESTION}, session))
    assert err.value.code == "MODEL_NOT_FOUND"
    with pytest.raises(LoRAFactoryError) as err:
        list(chat_events({"base_model": str(tiny_model), "adapter": str(tmp_path), "messages": QUESTION}, session))
    assert err.value.code == "ADAPTER_NOT_FOUND"


# -- issue 16, items 3 and 13: a prompt past the context and bad parameters are 4xx at once -------
def test_a_prompt_longer_than_the_context_is_refused_at_once(tiny_model):
    import time

    session = types.SimpleNamespace(cache={})
    start = time.monotonic()
    with pytest.raises(LoRAFactoryError) as err:
        _ask(session, tiny_model, None, messages=[{"role": "user", "content": "東京 " * 50_000}])
    assert err.value.code == "PROMPT_TOO_LONG" and err.value.http_status == 422
    assert err.value.detail["field"] == "messages" and err.value.detail["context_length"] > 0
    assert time.monotonic() - start < 30


@pytest.mark.parametrize("params,field", [
    ({"max_new_tokens": -5}, "max_new_tokens"), ({"max_new_tokens": "x"}, "max_new_tokens"),
    ({"max_new_tokens": 10**9}, "max_new_tokens"), ({"seed": 2**70}, "seed"), ({"temperature": "hot"}, "temperature"),
    ({"temperature": float("nan")}, "temperature"), ({"top_p": float("inf")}, "top_p")])
def test_bad_chat_parameters_are_a_422_naming_the_parameter(tiny_model, params, field):
    session = types.SimpleNamespace(cache={})
    with pytest.raises(LoRAFactoryError) as err:
        _ask(session, tiny_model, None, **params)
    assert err.value.code == "INVALID_INFER_PARAMS" and err.value.http_status == 422
    assert err.value.detail["field"] == field
    import json

    json.dumps(err.value.to_dict(), allow_nan=False)  # renders as strict JSON (NaN echoed as text)
    assert "text" not in session.cache  # refused before the model loaded


def test_a_generation_whose_client_is_gone_stops(tiny_model):
    """``session.should_stop()`` (the worker sets it when the client has gone) ends generate() at
    the next token instead of running to max_new_tokens in a thread nobody reads."""
    gone = {"now": False}
    session = types.SimpleNamespace(cache={}, should_stop=lambda: gone["now"])
    request = {"base_model": str(tiny_model), "adapter": None, "messages": QUESTION,
               "params": {"max_new_tokens": 600}, "stream": True}
    full = list(chat_events(request, session))[-1]["usage"]["completion_tokens"]
    assert full > 50  # the tiny random model talks on without the stop
    events = chat_events(request, session)
    assert next(events)["type"] == "token"
    gone["now"] = True
    done = list(events)[-1]
    assert done["usage"]["completion_tokens"] < min(100, full // 2)


def test_the_inference_worker_exits_on_its_own_when_closed(tiny_model, tmp_path):
    """After a model has loaded, closing stdin ends the worker by itself: it used to sit in the ML libraries'
    native teardown past the 5 s grace and be killed (SIGTERM), which cost every server stop ~5 s."""
    from lora_factory.core.inference.client import InferenceClient

    (tmp_path / "logs").mkdir()
    client = InferenceClient(tmp_path)
    request = {"base_model": str(tiny_model), "adapter": None, "adapters": [], "messages": QUESTION,
               "params": {"max_new_tokens": 4}, "stream": True}
    assert client.complete("text", request)["type"] == "done"
    assert list(client.stream("text", request))[-1]["type"] == "done"
    proc = client._proc
    client.close()
    assert proc.returncode == 0, f"the worker was killed (return code {proc.returncode}), it did not exit"
