"""The CPU speed options of synthesis keep its output: the KV cache is really used, a batch of sentences
gives what one-by-one gives (in order), and the int8 LM stays close to the float one (adapter merged).
Speed itself is measured by ``benchmarks/synth_audio.py``, never by a timed test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module")
def tts(tiny_tts: Path):  # noqa: ANN201
    from lora_factory.plugins.audio.synthesis import TTSModel

    return TTSModel.load(tiny_tts)


def greedy(**update):  # noqa: ANN003, ANN201
    from lora_factory.plugins.audio.synthesis import SpeechParams

    return SpeechParams(temperature=0.0, seed=0, max_seconds_per_sentence=0.5, **update)


def test_sentence_batches_put_the_first_alone_then_keep_order() -> None:
    from lora_factory.plugins.audio.synthesis import sentence_batches

    assert sentence_batches(0, 4) == []
    assert sentence_batches(1, 4) == [[0]]
    assert sentence_batches(6, 1) == [[0], [1], [2], [3], [4], [5]]
    assert sentence_batches(6, 4) == [[0], [1, 2, 3, 4], [5]]


def test_generation_uses_the_kv_cache(tts) -> None:  # noqa: ANN001
    """After the prompt, each step feeds one new token: the cache holds the rest (off, every step would
    feed the whole sequence again)."""
    lengths: list[int] = []
    handle = tts.model.get_input_embeddings().register_forward_hook(
        lambda module, args, output: lengths.append(int(args[0].shape[-1])))
    try:
        codes = tts.generate_codes("こんにちは。", greedy())
    finally:
        handle.remove()
    assert len(codes) > 3 and len(lengths) >= len(codes)
    assert lengths[0] > 10 and set(lengths[1:]) == {1}, lengths


def test_a_batch_of_sentences_gives_the_one_by_one_output_in_order(tts) -> None:  # noqa: ANN001
    from lora_factory.plugins.audio.synthesis import synthesize

    text = "こんにちは。今日はいい天気ですね。ありがとう。"
    plain = list(synthesize(tts, text, greedy()))
    grouped = list(synthesize(tts, text, greedy(batch_sentences=2)))  # [0], then [1, 2] as one batch
    assert [c.index for c in grouped] == [0, 1, 2] and [c.text for c in grouped] == [c.text for c in plain]
    assert len({c.wave.size for c in plain}) > 1  # sentences of different lengths: padding is exercised
    for a, b in zip(plain, grouped):
        assert a.wave.shape == b.wave.shape and np.allclose(a.wave, b.wave, atol=1e-4)


def _relative_error(a, b) -> float:  # noqa: ANN001
    return float((a - b).norm() / a.norm())


def test_int8_lm_is_quantised_close_to_float_and_carries_the_adapter(tts, tmp_path: Path) -> None:  # noqa: ANN001
    import torch
    from peft import LoraConfig, get_peft_model

    from lora_factory.plugins.audio.inference import _with_adapter

    prompt = torch.tensor([tts.layout.prompt_ids(tts.tokenizer, "今日はいい天気ですね。")])
    quantised = tts.int8()
    # every linear layer of the copy is a quantised one (torch.ao's dynamic Linear), none is float
    linears = [m for m in quantised.model.modules() if type(m).__name__ == "Linear"]
    assert linears and all("quantized" in type(m).__module__ for m in linears), {type(m).__module__ for m in linears}
    with torch.inference_mode():
        base_logits = tts.model(prompt).logits
        assert _relative_error(base_logits, quantised.model(prompt).logits) < 0.1
    assert tts.model.model.layers[0].self_attn.q_proj.weight.dtype == torch.float32  # the float model is untouched

    # an adapter is merged into the int8 copy: close to the float model with the adapter, far from the base
    torch.manual_seed(1)
    import copy
    from dataclasses import replace

    lora = get_peft_model(copy.deepcopy(tts.model), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    for name, param in lora.named_parameters():
        if "lora_B" in name:
            param.data.normal_(0.0, 0.3)
    lora.save_pretrained(tmp_path / "voice")
    holder = replace(tts, model=copy.deepcopy(tts.model))  # peft injects into the model it is given
    cache = {"model": holder, "adapters": {}}
    with _with_adapter(cache, tmp_path / "voice") as voiced, torch.inference_mode():
        voice_logits = voiced.model(prompt).logits
        voice_int8 = voiced.int8().model(prompt).logits
    # int8 rounding of the merged weights stays well below the adapter's own change of the logits
    assert _relative_error(voice_logits, voice_int8) < 0.15
    assert _relative_error(base_logits, voice_logits) > 3 * _relative_error(voice_logits, voice_int8)
    with _with_adapter(cache, None) as plain, torch.inference_mode():  # adapters off: the base, quantised
        assert _relative_error(base_logits, plain.int8().model(prompt).logits) < 0.1


def test_speech_events_with_int8_and_a_batch(tts, tiny_tts: Path, tmp_path: Path) -> None:  # noqa: ANN001
    from types import SimpleNamespace

    from lora_factory.plugins.audio.inference import CACHE_KEY, speech_events

    session = SimpleNamespace(cache={CACHE_KEY: {"base": (str(tiny_tts), "tts"), "model": tts, "adapters": {}}},
                              outputs_dir=tmp_path)
    request = {"task": "speech", "base_model": str(tiny_tts), "input": {"text": "はい。いいえ。そうです。"},
               "params": {"temperature": 0.0, "seed": 0, "max_seconds_per_sentence": 0.5, "int8": True,
                          "batch_sentences": 2}}
    events = list(speech_events(request, session))
    chunks = [e for e in events if e.get("chunk") is not None or e.get("type") == "audio_chunk"]
    meta = next(e["meta"] for e in events if e.get("path"))
    assert meta["lm"] == "int8" and meta["batch_sentences"] == 2 and meta["chunks"] == 3 and meta["seconds"] > 0.5
    assert len(chunks) == 3
    assert session.cache[CACHE_KEY]["int8"] is not tts  # kept for the next request of this voice
