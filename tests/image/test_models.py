"""Models: tiny pipelines, a single-file checkpoint converted offline, local folders, auxiliary kinds, listing."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from lora_factory.kit import LoRAFactoryError
from lora_factory.plugins import image as plugin
from lora_factory.plugins.image.ldm_export import save_sd15_single_file
from lora_factory.plugins.image.model_info import inspect_image_model
from tests.image.conftest import build_tiny_tagger, make_ctx


def _render(pipe) -> np.ndarray:
    import torch

    pipe.set_progress_bar_config(disable=True)
    return pipe("a cat", num_inference_steps=2, width=64, height=64, output_type="np",
                generator=torch.Generator().manual_seed(0)).images[0]


def test_hook_download_model_single_file_checkpoint_offline(tmp_path, tiny_sd15):
    """A Civitai-style LDM checkpoint becomes a diffusers folder that draws exactly like the original;
    the configs come from a model of the same architecture already in the workspace, not from the Hub."""
    from diffusers import StableDiffusionPipeline

    home = tmp_path / "ws"
    shutil.copytree(tiny_sd15, home / "models" / "image" / "tiny-sd15")
    checkpoint = save_sd15_single_file(tiny_sd15, tmp_path / "my_model_v2.safetensors")
    info = inspect_image_model(checkpoint)
    assert info["format"] == "single_file" and info["architecture"] == "sd15" and info["parameters"] > 0
    ctx = make_ctx(home, "dl1", kind="download")
    result = plugin.download_model(modality="image", spec={"source": "local", "local_path": str(checkpoint),
                                                           "name": "my_model_v2"}, ctx=ctx)
    assert result["source"] == "single_file" and result["architecture"] == "sd15"
    assert result["config"].endswith("tiny-sd15")
    # the base keeps the file's identity: A1111's "Model hash" and sd-scripts' hashes are the file's
    from lora_factory.plugins.image.hashes import model_hash, source_file_hashes

    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert model_hash(Path(ctx.output_dir)) == digest[:10]
    assert source_file_hashes(Path(ctx.output_dir))["sha256"] == digest
    converted = StableDiffusionPipeline.from_pretrained(ctx.output_dir, safety_checker=None, requires_safety_checker=False)
    original = StableDiffusionPipeline.from_pretrained(tiny_sd15, safety_checker=None, requires_safety_checker=False)
    assert np.abs(_render(converted) - _render(original)).max() < 1e-5
    listed = plugin.inspect_model(modality="image", path=str(ctx.output_dir))
    assert listed["architecture"] == "sd15" and listed["format"] == "diffusers" and listed["size_bytes"] > 0


def test_pickles_unknown_kinds_and_aux_models(tmp_path, tiny_sd15):
    home = tmp_path / "ws"
    (tmp_path / "old.ckpt").write_bytes(b"pickle")
    with pytest.raises(LoRAFactoryError) as err:
        plugin.download_model(modality="image", spec={"source": "single_file", "local_path": str(tmp_path / "old.ckpt")},
                              ctx=make_ctx(home, "dl2", kind="download"))
    assert err.value.code == "UNSAFE_WEIGHTS"
    with pytest.raises(LoRAFactoryError) as err:
        plugin.download_model(modality="image", spec={"source": "tiny", "model_kind": "lora"}, ctx=make_ctx(home, "dl3"))
    assert err.value.code == "INVALID_REQUEST"
    # a VAE folder, and a WD tagger (ONNX + CSV, no safetensors), imported from local folders
    ctx = make_ctx(home, "dl4", kind="download")
    plugin.download_model(modality="image", spec={"source": "local", "local_path": str(tiny_sd15 / "vae"), "model_kind": "vae"},
                          ctx=ctx)
    assert (ctx.output_dir / "config.json").is_file()
    assert plugin.inspect_model(modality="image", path=str(ctx.output_dir))["component"] == "AutoencoderKL"
    tagger = build_tiny_tagger(tmp_path / "wd")
    ctx = make_ctx(home, "dl5", kind="download")
    result = plugin.download_model(modality="image", spec={"source": "local", "local_path": str(tagger), "model_kind": "tagger"},
                                   ctx=ctx)
    assert result["tags"] == 6 and (ctx.output_dir / "model.onnx").is_file()


def test_tiny_sdxl_and_flux_are_detected(tmp_path):
    ctx = make_ctx(tmp_path / "ws", "dl6", kind="download")
    result = plugin.download_model(modality="image", spec={"source": "tiny", "arch": "flux"}, ctx=ctx)
    assert result["architecture"] == "flux" and result["pipeline"] == "FluxPipeline"
    info = inspect_image_model(ctx.output_dir)
    assert info["architecture"] == "flux" and info["native_resolution"] == 1024 and info["license_note"]
