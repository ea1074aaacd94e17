"""Image LoRA training on tiny pipelines: buckets, samples, checkpoints, cancel / resume, and both output files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from lora_factory.kit import LoRAFactoryError
from tests.image.conftest import make_dataset, resolved, train_tiny

KOHYA_KEY = re.compile(r"^lora_(unet|te|te1|te2)_[a-z0-9_]+\.(lora_down\.weight|lora_up\.weight|alpha)$")
MINIMUM_SS_KEYS = ("ss_base_model_version", "ss_network_module", "ss_network_dim", "ss_network_alpha", "ss_v2")


def _render(pipe, seed: int = 3) -> np.ndarray:
    import torch

    pipe.set_progress_bar_config(disable=True)
    return pipe("mychar, red background", num_inference_steps=3, width=64, height=64, output_type="np",
                generator=torch.Generator().manual_seed(seed)).images[0]


def test_hook_train_buckets_samples_and_metrics(trained):
    result, ctx = trained["result"], trained["ctx"]
    assert result["steps"] == 6 and not result["stopped"] and result["resolution"] == 64
    assert result["buckets"] == ["48x80", "80x48"]  # two aspect ratios, one bucket each
    assert result["images_with_repeats"] == 24 and result["trigger_phrase"] == "mychar"
    assert [r["step"] for r in ctx.records] == [1, 2, 3, 4, 5, 6] and all(r["loss"] > 0 for r in ctx.records)
    assert sorted({s["step"] for s in ctx.samples}) == [3, 6] and len(ctx.samples) == 4  # 2 prompts x 2 times
    assert (ctx.checkpoint_dir / "checkpoint-3" / "COMPLETE").is_file()
    out = trained["out"]
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["step000006-0.png", "step000006-1.png"]
    from lora_factory.plugins.image.png_info import read_settings

    settings = read_settings(out / "samples" / "step000006-0.png")["settings"]
    assert settings["training_step"] == 6 and settings["adapters"] == [{"name": "mychar_v1", "weight": 1.0}]
    config = json.loads((out / "training_config.json").read_text(encoding="utf-8"))
    assert config["modality"] == "image" and config["kohya_file"] == "mychar_v1.safetensors"
    assert "<lora:mychar_v1:1>" in (out / "README.md").read_text(encoding="utf-8")


def test_diffusers_file_loads_in_a_plain_pipeline_and_changes_the_image(trained, tiny_sd15):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd15, safety_checker=None, requires_safety_checker=False)
    base = _render(pipe)
    pipe.load_lora_weights(str(trained["out"]))  # pytorch_lora_weights.safetensors
    with_lora = _render(pipe)
    assert np.abs(with_lora - base).max() > 0.01
    # every trained layer arrived, the text encoder's too
    assert any("lora_A" in k for k in pipe.text_encoder.state_dict())
    pipe.unload_lora_weights()
    assert np.abs(_render(pipe) - base).max() < 1e-5


def test_kohya_file_keys_metadata_and_round_trip(trained, tiny_sd15):
    from diffusers import StableDiffusionPipeline
    from safetensors import safe_open

    path = trained["out"] / "mychar_v1.safetensors"
    with safe_open(str(path), framework="pt") as fh:
        keys, meta = list(fh.keys()), fh.metadata()
        alphas = {float(fh.get_tensor(k)) for k in keys if k.endswith(".alpha")}
        down = fh.get_tensor(next(k for k in keys if k.endswith("lora_down.weight")))
    assert all(KOHYA_KEY.match(k) for k in keys), [k for k in keys if not KOHYA_KEY.match(k)][:3]
    assert any(k.startswith("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.") for k in keys)
    assert any(k.startswith("lora_te_text_model_encoder_layers_0_self_attn_q_proj.") for k in keys)  # SD1: lora_te_
    assert not any(k.startswith("lora_te1_") for k in keys)
    assert alphas == {2.0} and down.shape[0] == 4  # alpha is the real lora_alpha, not the rank
    assert all(k in meta for k in MINIMUM_SS_KEYS)
    assert meta["ss_network_module"] == "networks.lora" and meta["ss_base_model_version"] == "sd_v1"
    assert (meta["ss_network_dim"], meta["ss_network_alpha"]) == ("4", "2")
    assert meta["ss_resolution"] == "(64, 64)" and meta["ss_steps"] == "6" and meta["ss_output_name"] == "mychar_v1"
    assert json.loads(meta["ss_tag_frequency"])["4_mychar"]["mychar"] == 6
    assert json.loads(meta["ss_dataset_dirs"]) == {"4_mychar": {"n_repeats": 4, "img_count": 6}}
    assert float(meta["ss_learning_rate"]) == 5e-3 and meta["ss_network_train_unet_only"] == "False"
    assert meta["modelspec.architecture"] == "stable-diffusion-v1/lora" and meta["modelspec.trigger_phrase"] == "mychar"
    assert len(meta["sshs_model_hash"]) == 64
    # diffusers reads the kohya file back, and it draws exactly what the diffusers file draws
    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd15, safety_checker=None, requires_safety_checker=False)
    pipe.load_lora_weights(str(trained["out"]))
    expected = _render(pipe)
    pipe.unload_lora_weights()
    pipe.load_lora_weights(str(trained["out"]), weight_name="mychar_v1.safetensors")
    assert np.abs(_render(pipe) - expected).max() < 1e-3


def test_cancel_saves_then_resume_finishes(tmp_path, tiny_sd15, image_dataset):
    home = tmp_path / "ws"
    params = {"max_steps": 5, "sample_every_n_steps": 0, "sample_steps": 1}
    result, ctx = train_tiny(home, tiny_sd15, image_dataset, params, "cut", "cut1", stop_after=2)
    assert result["stopped"] and result["steps"] == 2
    assert (Path(ctx.output_dir) / "pytorch_lora_weights.safetensors").is_file()  # the adapter so far
    checkpoint = ctx.checkpoint_dir / "checkpoint-2"
    assert (checkpoint / "COMPLETE").is_file() and (checkpoint / "training_state.pt").is_file()
    resumed, ctx2 = train_tiny(home, tiny_sd15, image_dataset, params, "cut", "cut2", resume_checkpoint=checkpoint)
    assert not resumed["stopped"] and resumed["steps"] == 5
    assert [r["step"] for r in ctx2.records] == [3, 4, 5]


def test_hook_resolve_train_spec_layers_vram_profile_and_refuses_typos():
    spec = resolved({"vram_profile": "8gb", "batch_size": 3}, preset="standard")
    assert spec["params"]["gradient_checkpointing"] and spec["params"]["optimizer"] == "adamw8bit"
    assert spec["params"]["batch_size"] == 3  # the user's value wins over the profile
    assert resolved({}, preset="vram_24gb")["params"]["batch_size"] == 4
    with pytest.raises(LoRAFactoryError) as err:
        resolved({"learnig_rate": 1e-4})
    assert err.value.code == "INVALID_TRAIN_PARAMS" and err.value.detail["field"] == "learnig_rate"
    with pytest.raises(LoRAFactoryError) as err:
        resolved({}, preset="turbo")
    assert err.value.code == "UNKNOWN_PRESET"


@pytest.mark.parametrize("arch", ["sdxl", "flux"])
def test_sdxl_and_flux_code_paths(tmp_path, arch):
    """SDXL (two encoders, time ids) and Flux (flow matching, packed latents). Flux runs unquantized on
    this CPU: NF4 needs CUDA, so here only the LoRA code path is checked, not 4-bit."""
    from diffusers import DiffusionPipeline
    from safetensors import safe_open

    from lora_factory.plugins.image.tiny_model import build_tiny_image_model

    base = tmp_path / f"tiny-{arch}"
    build_tiny_image_model(base, arch)
    dataset = make_dataset(tmp_path / "data", n=2)
    params = {"max_steps": 2, "sample_every_n_steps": 0, "sample_steps": 1, "train_text_encoder": arch == "sdxl",
              "quantize_base": "nf4" if arch == "flux" else "none"}
    result, ctx = train_tiny(tmp_path / "ws", base, dataset, params, f"{arch}_lora", "job")
    assert result["steps"] == 2 and result["architecture"] == arch
    out = Path(ctx.output_dir)
    with safe_open(str(out / f"{arch}_lora.safetensors"), framework="pt") as fh:
        keys, meta = list(fh.keys()), fh.metadata()
    if arch == "sdxl":
        assert meta["ss_base_model_version"] == "sdxl_base_v1-0"
        assert any(k.startswith("lora_te1_") for k in keys) and any(k.startswith("lora_te2_") for k in keys)
        assert all(KOHYA_KEY.match(k) for k in keys)
    else:
        assert meta["ss_base_model_version"] == "flux1" and all(k.startswith("transformer.") for k in keys)
        assert any("nf4 needs CUDA" in line for line in ctx.lines)
    pipe = DiffusionPipeline.from_pretrained(base)
    pipe.load_lora_weights(str(out))
    assert any("lora_A" in k for k in (pipe.unet if arch == "sdxl" else pipe.transformer).state_dict())


def test_kohya_metadata_fills_what_sd_scripts_writes(trained):
    """sd-scripts' values: the optimizer's class path, "no" for a full-precision run, the bucket range in
    use, the noise offset and dropout even when 0, clip skip as str(None) when unset."""
    from lora_factory.plugins.image.export import read_kohya_metadata

    meta = read_kohya_metadata(trained["out"] / "mychar_v1.safetensors")
    assert meta["ss_optimizer"] == "torch.optim.adamw.AdamW"
    assert meta["ss_mixed_precision"] == "no"
    assert (meta["ss_min_bucket_reso"], meta["ss_max_bucket_reso"]) == ("32", "128")
    assert meta["ss_noise_offset"] == "0.0" and meta["ss_network_dropout"] == "0.0" and meta["ss_clip_skip"] == "None"
    assert "ss_sd_model_hash" not in meta  # a diffusers folder, not imported from one file


def test_kohya_metadata_names_a_single_file_base_by_its_hashes(tmp_path, tiny_sd15, image_dataset):
    """A base converted from one .safetensors keeps that file's hashes (recorded at import); the LoRA's
    ss_sd_model_hash / ss_new_sd_model_hash are sd-scripts' legacy and full SHA-256 of that file."""
    import shutil

    from lora_factory.plugins.image.export import read_kohya_metadata
    from lora_factory.plugins.image.hashes import file_sha256, legacy_model_hash, record_source_file
    from lora_factory.plugins.image.ldm_export import save_sd15_single_file

    base = tmp_path / "imported"
    shutil.copytree(tiny_sd15, base)
    checkpoint = save_sd15_single_file(tiny_sd15, tmp_path / "civitai_model.safetensors")
    record_source_file(base, checkpoint)  # what the single-file import does (see test_models)
    _, ctx = train_tiny(tmp_path / "ws", base, image_dataset, {"max_steps": 1, "sample_every_n_steps": 0},
                        "from_single", "t-single")
    meta = read_kohya_metadata(Path(ctx.output_dir) / "from_single.safetensors")
    assert meta["ss_new_sd_model_hash"] == file_sha256(checkpoint)
    assert meta["ss_sd_model_hash"] == legacy_model_hash(checkpoint) and len(meta["ss_sd_model_hash"]) == 8
