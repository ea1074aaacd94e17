"""Several voice LoRAs with weights are mixed (peft's add_weighted_adapter), not silently the first."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lora_factory.plugins.audio.inference import _with_adapter
from lora_factory.plugins.audio.synthesis import SpeechParams, TTSModel


def _random_lora(base: Path, out: Path, seed: int, rank: int) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(base))
    peft = get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["q_proj", "v_proj"],
                                            init_lora_weights=False))
    with torch.no_grad():  # a strong update, so the two voices speak differently on the tiny model
        for name, param in peft.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    peft.save_pretrained(str(out))
    return out


def test_two_voices_with_weights_are_mixed(tiny_tts: Path, tmp_path: Path) -> None:
    a = _random_lora(tiny_tts, tmp_path / "a", seed=1, rank=4)
    b = _random_lora(tiny_tts, tmp_path / "b", seed=2, rank=8)
    cache = {"model": TTSModel.load(tiny_tts), "adapters": {}}
    params = SpeechParams(temperature=0.0, max_seconds_per_sentence=0.4)

    def codes(adapters: list[tuple[Path, float]]) -> np.ndarray:
        with _with_adapter(cache, adapters) as tts:
            return np.asarray(tts.generate_codes("こんにちは", params, seed=0))

    only_a, only_b = codes([(a, 1.0)]), codes([(b, 1.0)])
    assert not np.array_equal(only_a, only_b)
    assert np.array_equal(codes([(a, 1.0), (b, 0.0)]), only_a)  # a weight of 0 takes that voice out
    assert np.array_equal(codes([(b, 1.0), (a, 0.0)]), only_b)
    half = codes([(a, 0.5), (b, 0.5)])
    assert not np.array_equal(half, only_a) and not np.array_equal(half, only_b)
    assert np.array_equal(codes([]), codes([(a, 0.0)]))  # the base alone
