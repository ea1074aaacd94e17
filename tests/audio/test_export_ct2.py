"""A Whisper LoRA exported for faster-whisper: merged, converted with ctranslate2's own converter, then
run by the runtimes themselves: ctranslate2's Whisper decodes the same tokens as our peft model (base
+ LoRA) for the same clip and prompt, and faster-whisper loads the folder and transcribes the clip.

Why tokens through ctranslate2 and not faster-whisper's text: faster-whisper calls any Whisper whose
tokenizer is smaller than the multilingual one (51,865 tokens) English-only and then prompts it
without language and task tokens, so on the tiny model its prompt differs from ours by design; with
the same prompt the decoder is exactly ctranslate2's.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from lora_factory.core.errors import LoRAFactoryError
from lora_factory.core.jobs.context import JobContext
from lora_factory.core.storage.workspace import Workspace


@pytest.fixture(scope="module")
def whisper_and_lora(tiny_asr, tmp_path_factory) -> tuple[Path, Path]:
    """The tiny Whisper and a LoRA whose B matrices are not zero (it changes the transcript)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import WhisperForConditionalGeneration

    root = tmp_path_factory.mktemp("ct2")
    base = root / "tiny-whisper"
    shutil.copytree(tiny_asr, base)
    model = WhisperForConditionalGeneration.from_pretrained(str(base))
    torch.manual_seed(3)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                  init_lora_weights=False))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.5)
    adapter = root / "whisper-lora"
    peft_model.save_pretrained(str(adapter))
    return base, adapter


def _clip() -> np.ndarray:
    t = np.arange(16000 * 2) / 16000
    return (0.3 * np.sin(2 * np.pi * 440 * t) * np.sin(2 * np.pi * 3 * t)).astype(np.float32)


def _hf_tokens(base: Path, adapter: Path | None, features, prompt: list[int], n: int) -> list[int]:
    import torch
    from transformers import WhisperForConditionalGeneration

    model = WhisperForConditionalGeneration.from_pretrained(str(base), dtype=torch.float32)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter))
    with torch.no_grad():
        out = model.generate(input_features=torch.as_tensor(features), language="ja", task="transcribe",
                             max_new_tokens=n)[0].tolist()
    return out[len(prompt):] if out[:len(prompt)] == prompt else out  # transformers 5 returns the new tokens only


def test_whisper_lora_exported_for_faster_whisper_decodes_like_our_model(whisper_and_lora, tmp_path):
    try:
        import ctranslate2
        from faster_whisper import WhisperModel as FasterWhisper
    except ImportError:
        pytest.fail("faster-whisper / ctranslate2 are not installed (pip install faster-whisper ctranslate2): the "
                    "CTranslate2 export is checked by them")
    from transformers import WhisperProcessor

    from lora_factory.plugins.audio.export_ct2 import resolve, run

    base, adapter = whisper_and_lora
    spec = resolve({"adapter": str(adapter), "base_model": str(base), "target": "ct2",
                    "params": {"quantization": "float32"}, "output_name": "w-ct2",
                    "adapter_ref": "lora_adapters/audio/whisper-lora", "base_model_ref": "models/audio/tiny-whisper"})
    ws = Workspace(tmp_path / "ws")
    ctx = JobContext("e1", ws, ws.run_dir("e1"), ws.log_path("export", "e1"), kind="export", modality="audio")
    result = run(spec, ctx)
    model_dir = Path(ctx.output_dir) / "model"
    assert {"model/model.bin", "model/tokenizer.json", "model/preprocessor_config.json", "README.md"} <= set(result["files"])
    processor = WhisperProcessor.from_pretrained(str(base))
    features = processor(_clip(), sampling_rate=16000, return_tensors="np").input_features.astype(np.float32)
    ids = processor.tokenizer.convert_tokens_to_ids
    prompt = [ids(t) for t in ("<|startoftranscript|>", "<|ja|>", "<|transcribe|>", "<|notimestamps|>")]
    tuned, plain = _hf_tokens(base, adapter, features, prompt, 12), _hf_tokens(base, None, features, prompt, 12)
    assert tuned != plain  # the LoRA changes the transcript
    ct2 = ctranslate2.models.Whisper(str(model_dir), device="cpu", compute_type="float32")
    got = ct2.generate(ctranslate2.StorageView.from_array(features), [prompt], beam_size=1, max_length=len(prompt) + 12,
                       suppress_blank=True, suppress_tokens=[], return_scores=False)[0].sequences_ids[0]
    eot = ids("<|endoftext|>")
    expected = tuned[: tuned.index(eot)] if eot in tuned else tuned
    n = min(len(got), len(expected))
    assert n >= 8 and got[:n] == expected[:n], (got, tuned, plain)
    segments, info = FasterWhisper(str(model_dir), device="cpu", compute_type="float32").transcribe(
        _clip(), beam_size=1, temperature=0.0, without_timestamps=True, max_new_tokens=12, vad_filter=False)
    assert isinstance(list(segments), list) and info.duration == pytest.approx(2.0)


def test_only_whisper_adapters_export_for_faster_whisper(tiny_tts, whisper_and_lora):
    from lora_factory.plugins.audio.export_ct2 import resolve

    base, adapter = whisper_and_lora
    with pytest.raises(LoRAFactoryError) as err:
        resolve({"adapter": str(adapter), "base_model": str(tiny_tts), "target": "ct2", "params": {}})
    assert err.value.code == "EXPORT_UNSUPPORTED"
    with pytest.raises(LoRAFactoryError) as err:
        resolve({"adapter": str(adapter), "base_model": str(base), "target": "ct2", "params": {"quantization": "q4"}})
    assert err.value.code == "INVALID_EXPORT_PARAMS"
    assert resolve({"adapter": str(adapter), "base_model": str(base), "target": "ct2",
                    "params": {}})["params"] == {"quantization": "int8_float32"}
    assert json.loads((base / "config.json").read_text())["model_type"] == "whisper"
