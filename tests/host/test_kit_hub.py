"""The kit's choice of files in a Hub repo: safetensors over duplicates, precision variants, ONNX
models that have no safetensors (a WD tagger), and never a pickle as weights."""

from __future__ import annotations

import pytest

from lora_factory.kit.hub import select_repo_files

DIFFUSERS = ["model_index.json", "unet/diffusion_pytorch_model.safetensors", "unet/diffusion_pytorch_model.fp16.safetensors",
             "unet/diffusion_pytorch_model.bin", "vae/x.safetensors", "vae/x.fp16.safetensors",
             "safety_checker/pytorch_model.bin", "text_encoder/only.fp16.safetensors"]


def test_safetensors_and_the_plain_precision_win_by_default():
    wanted, skipped = select_repo_files(DIFFUSERS)
    assert wanted == ["model_index.json", "text_encoder/only.fp16.safetensors",
                      "unet/diffusion_pytorch_model.safetensors", "vae/x.safetensors"]
    assert "safety_checker/pytorch_model.bin" in skipped and "unet/diffusion_pytorch_model.bin" in skipped


def test_a_requested_variant_replaces_the_plain_file():
    wanted, _ = select_repo_files(DIFFUSERS, variant="fp16")
    assert wanted == ["model_index.json", "text_encoder/only.fp16.safetensors",
                      "unet/diffusion_pytorch_model.fp16.safetensors", "vae/x.fp16.safetensors"]


def test_an_onnx_model_counts_as_weights_only_when_asked():
    tagger = ["model.onnx", "selected_tags.csv", "README.md"]
    assert select_repo_files(tagger) == (sorted(tagger), [])  # no weights at all: the caller refuses
    assert select_repo_files(tagger, weight_suffixes=(".onnx",))[0] == sorted(tagger)
    with_safetensors = ["model.safetensors", "model.onnx", "config.json"]
    assert "model.onnx" not in select_repo_files(with_safetensors)[0]


def test_a_pickle_is_never_weights(tmp_path):
    from lora_factory.kit import hub
    from lora_factory.kit.testing import FakeJobContext

    with pytest.raises(ValueError, match="pickle"):
        hub.download_repo(FakeJobContext(tmp_path, kind="download"), {"repo_id": "a/b"}, tmp_path / "out",
                          weight_suffixes=(".bin",))
