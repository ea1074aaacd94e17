"""Generation through the ``infer`` hook on tiny pipelines: LoRA weights and grid, img2img, inpaint,
ControlNet (canny), IP-Adapter, VAE swap, SDXL refiner; every PNG carries its settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lora_factory.kit import LoRAFactoryError
from lora_factory.kit.testing import FakeInferenceSession, temp_workspace
from lora_factory.plugins import image as plugin
from lora_factory.plugins.image.png_info import read_png_text, read_settings
from tests.image.conftest import BLUE, RED, write_image


def run(request: dict, session) -> tuple[list[dict], dict]:
    events = list(plugin.infer(modality="image", request={"task": "image", **request}, session=session))
    assert events[-1]["type"] == "done"
    return [e for e in events if e["type"] == "image"], events[-1]


def resolve(request: dict, workspace) -> dict:
    return plugin.resolve_infer_request(modality="image", request={"task": "image", **request}, workspace=workspace)


def pixels(event: dict) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(event["path"]).convert("RGB"), dtype=np.float32)


@pytest.fixture
def session(tmp_path):
    return FakeInferenceSession(tmp_path / "outputs")


def test_hook_infer_lora_changes_the_image_and_png_reads_back(session, tiny_sd15, trained):
    adapter = {"path": str(trained["out"]), "name": "mychar_v1", "weight": 1.0}
    params = {"seed": 11, "steps": 3, "width": 64, "height": 64, "scheduler": "euler_a", "negative_prompt": "lowres"}
    base_images, done = run({"base_model": str(tiny_sd15), "input": {"prompt": "mychar, red background"},
                             "params": params}, session)
    lora_images, _ = run({"base_model": str(tiny_sd15), "adapters": [adapter],
                          "input": {"prompt": "mychar, red background"}, "params": params}, session)
    assert done["images"] == 1 and done["seed"] == 11
    assert np.abs(pixels(base_images[0]) - pixels(lora_images[0])).max() > 2
    parameters = read_png_text(Path(lora_images[0]["path"]))["parameters"]
    assert parameters.startswith("mychar, red background <lora:mychar_v1:1>\nNegative prompt: lowres\n")
    assert "Steps: 3, Sampler: Euler a" in parameters and "Seed: 11, Size: 64x64, Model hash: " in parameters \
        and ", Model: tiny-sd15" in parameters
    settings = read_settings(Path(lora_images[0]["path"]))["settings"]
    assert settings["adapters"] == [{"name": "mychar_v1", "weight": 1.0}] and settings["seed"] == 11
    assert lora_images[0]["meta"]["prompt"] == "mychar, red background"
    # the same seed without the adapter again: the LoRA was switched off, not left on
    again, _ = run({"base_model": str(tiny_sd15), "input": {"prompt": "mychar, red background"}, "params": params}, session)
    assert np.abs(pixels(again[0]) - pixels(base_images[0])).max() <= 1
    # a weight grid: weight 0 draws the base picture
    grid, _ = run({"base_model": str(tiny_sd15), "adapters": [adapter], "input": {"prompt": "mychar, red background"},
                   "params": params | {"lora_weight_grid": [0.0, 1.0]}}, session)
    assert [e["meta"]["lora_weight"] for e in grid] == [0.0, 1.0]
    assert np.abs(pixels(grid[0]) - pixels(base_images[0])).max() <= 1
    assert np.abs(pixels(grid[1]) - pixels(lora_images[0])).max() <= 1


def test_img2img_inpaint_controlnet_and_vae(session, tiny_sd15, tmp_path):
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel

    init = write_image(tmp_path / "init.png", (64, 64), RED, mark=3)
    mask = tmp_path / "mask.png"
    from PIL import Image

    m = Image.new("L", (64, 64), 0)
    m.paste(255, (16, 16, 48, 48))
    m.save(mask)
    common = {"base_model": str(tiny_sd15), "input": {"prompt": "a cat"}}
    images, done = run(common | {"input": {"prompt": "a cat", "image": str(init)},
                                 "params": {"seed": 1, "steps": 4, "strength": 0.5, "num_images": 2}}, session)
    assert done["mode"] == "img2img" and [e["meta"]["seed"] for e in images] == [1, 2]
    images, done = run(common | {"input": {"prompt": "a cat", "image": str(init), "mask": str(mask)},
                                 "params": {"seed": 1, "steps": 4}}, session)
    assert done["mode"] == "inpaint"
    # outside the mask the latents stay the original's: the picture there is the VAE's copy of the original
    roundtrip = _vae_roundtrip(tiny_sd15, init)
    out = pixels(images[0])
    outside = np.abs(out[:8, :8] - roundtrip[:8, :8]).mean()
    inside = np.abs(out[24:40, 24:40] - roundtrip[24:40, 24:40]).mean()
    assert outside < 25 and inside > outside * 3, (outside, inside)
    # ControlNet (canny) from an uploaded picture, and another VAE
    controlnet_dir = tmp_path / "models" / "controlnet" / "tiny-canny"
    ControlNetModel.from_unet(UNet2DConditionModel.from_pretrained(tiny_sd15, subfolder="unet"),
                              conditioning_embedding_out_channels=(8, 16, 16)).save_pretrained(controlnet_dir)
    vae_dir = tmp_path / "models" / "vae" / "tiny-vae"
    AutoencoderKL.from_pretrained(tiny_sd15, subfolder="vae").save_pretrained(vae_dir)
    edges = write_image(tmp_path / "edges.png", (64, 64), BLUE, mark=5)
    images, done = run(common | {"input": {"prompt": "a cat", "control_image": str(edges)},
                                 "params": {"seed": 2, "steps": 3, "vae": str(vae_dir),
                                            "controlnet": {"model": str(controlnet_dir), "preprocessor": "canny",
                                                           "conditioning_scale": 0.8}}}, session)
    meta = images[0]["meta"]
    assert meta["controlnet"]["preprocessor"] == "canny" and meta["vae_name"] == "tiny-vae"
    # a request's errors come from its one resolve, in the server, before any model loads
    ws = temp_workspace(tmp_path / "ws")
    with pytest.raises(LoRAFactoryError) as err:
        resolve(common | {"params": {"controlnet": {"model": "tiny-canny"}}}, ws)
    assert err.value.code == "INVALID_REQUEST" and err.value.detail["field"] == "input.control_image"
    with pytest.raises(LoRAFactoryError) as err:
        resolve(common | {"params": {"sampler_typo": 1}}, ws)
    assert err.value.code == "INVALID_INFER_PARAMS" and err.value.detail["field"] == "sampler_typo"


def _vae_roundtrip(base: Path, image_path: Path) -> np.ndarray:
    import torch
    from diffusers import AutoencoderKL
    from PIL import Image

    vae = AutoencoderKL.from_pretrained(base, subfolder="vae")
    x = torch.from_numpy(np.asarray(Image.open(image_path).convert("RGB"), dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)
    with torch.no_grad():
        y = vae.decode(vae.encode(x[None]).latent_dist.mode()).sample[0]
    return ((y.clamp(-1, 1) + 1) * 127.5).round().permute(1, 2, 0).numpy()


def _tiny_ip_adapter(folder: Path, unet) -> Path:
    """An IP-Adapter in h94's layout (weights + image_encoder/) for the tiny UNet, random weights."""
    import torch
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    cross = unet.config.cross_attention_dim
    tensors = {"image_proj.proj.weight": torch.randn(cross * 4, 32) * 0.02, "image_proj.proj.bias": torch.zeros(cross * 4),
               "image_proj.norm.weight": torch.ones(cross), "image_proj.norm.bias": torch.zeros(cross)}
    key_id = 1
    for name in unet.attn_processors:
        if name.endswith("attn2.processor"):
            block = name.split(".")
            channels = (unet.config.block_out_channels[-1] if block[0] == "mid_block" else
                        list(reversed(unet.config.block_out_channels))[int(block[1])] if block[0] == "up_blocks"
                        else unet.config.block_out_channels[int(block[1])])
            tensors[f"ip_adapter.{key_id}.to_k_ip.weight"] = torch.randn(channels, cross) * 0.05
            tensors[f"ip_adapter.{key_id}.to_v_ip.weight"] = torch.randn(channels, cross) * 0.05
            key_id += 2
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "ip-adapter_tiny.safetensors"))
    CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                                   num_attention_heads=2, image_size=32, patch_size=8,
                                                   projection_dim=32)).save_pretrained(folder / "image_encoder")
    return folder


def test_ip_adapter_reference_image(session, tiny_sd15, tmp_path):
    from diffusers import UNet2DConditionModel

    folder = _tiny_ip_adapter(tmp_path / "ip", UNet2DConditionModel.from_pretrained(tiny_sd15, subfolder="unet"))
    reference = write_image(tmp_path / "ref.png", (48, 48), BLUE, mark=7)
    request = {"base_model": str(tiny_sd15), "input": {"prompt": "a cat", "reference_image": str(reference)},
               "params": {"seed": 5, "steps": 3, "ip_adapter": {"model": str(folder), "scale": 1.0}}}
    with_ip, _ = run(request, session)
    without, _ = run({**request, "params": {"seed": 5, "steps": 3}}, session)
    assert np.abs(pixels(with_ip[0]) - pixels(without[0])).max() > 1
    assert session.cache["image"].bases[str(tiny_sd15)]["ip_adapter"] is None  # unloaded for the plain request


def test_sdxl_with_refiner(session, tmp_path):
    from lora_factory.plugins.image.tiny_model import build_tiny_image_model

    base = tmp_path / "tiny-sdxl"
    build_tiny_image_model(base, "sdxl")
    images, done = run({"base_model": str(base), "input": {"prompt": "a cat"},
                        "params": {"seed": 3, "steps": 4, "refiner": {"model": str(base), "switch_at": 0.5}}}, session)
    assert done["width"] == 64 and images[0]["meta"]["refiner"]["switch_at"] == 0.5
    assert images[0]["meta"]["architecture"] == "sdxl"


def test_hook_resolve_infer_request_checks_inputs_and_resolves_aux_models(tmp_path):
    from lora_factory.kit import presets
    from lora_factory.plugins.image.generate_params import GenerateParams

    home = tmp_path / "ws"
    (home / "models" / "image" / "vae" / "kl-f8").mkdir(parents=True)
    ws = temp_workspace(home)
    request = {"task": "image", "base_model": "x", "input": {"text": "a cat"},  # the CLI's generic name for it
               "params": {"vae": "kl-f8", "seed": 1}}
    out = plugin.resolve_infer_request(modality="image", request=request, workspace=ws)
    assert out["input"] == {"prompt": "a cat"}
    assert out["params"]["vae"] == str(home.resolve() / "models" / "image" / "vae" / "kl-f8")
    # complete and decided (the mode from the given images): the worker rebuilds it without validating again
    assert out["params"]["mode"] == "txt2img" and out["params"]["num_images"] == 1 and out["adapters"] == []
    assert presets.trusted(GenerateParams, out["params"]) == GenerateParams.model_validate(out["params"])
    for bad, code, field in [({"input": {"prompt": "x", "audio": "y"}}, "INVALID_INFER_PARAMS", "input.audio"),
                             ({"params": {"vae": "missing"}}, "MODEL_NOT_FOUND", "vae"),
                             ({"params": {"stpes": 3}}, "INVALID_INFER_PARAMS", "stpes"),
                             ({"params": {"mode": "img2img"}}, "INVALID_REQUEST", "input.image"),
                             ({"params": {"ip_adapter": {"model": "x"}}}, "INVALID_REQUEST", "input.reference_image"),
                             ({"params": {"vae": "../../../etc"}}, None, None)]:
        with pytest.raises(LoRAFactoryError) as err:
            plugin.resolve_infer_request(modality="image", request=dict(request, **bad), workspace=ws)
        if code:
            assert err.value.code == code and err.value.detail["field"] == field


def test_clip_skip_2_encodes_like_a1111_and_changes_the_image(session, tiny_sd15, tmp_path):
    """Clip skip 2 (the anime SD1.5 norm) crashed with transformers 5; now the penultimate layer + final norm."""
    import torch

    from lora_factory.plugins.image.text_encoding import clip_skip_embeds

    request = {"base_model": str(tiny_sd15), "input": {"prompt": "mychar, red background"},
               "params": {"seed": 4, "steps": 2, "width": 64, "height": 64, "negative_prompt": "lowres"}}
    plain, _ = run(request, session)
    skipped, _ = run({**request, "params": request["params"] | {"clip_skip": 2}}, session)
    assert np.abs(pixels(plain[0]) - pixels(skipped[0])).max() > 1
    assert "Clip skip: 2" in read_png_text(Path(skipped[0]["path"]))["parameters"]
    pipe = session.cache["image"].bases[str(tiny_sd15)]["pipe"]
    ids = pipe.tokenizer(["mychar"], padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    with torch.inference_mode():
        out = pipe.text_encoder(ids, output_hidden_states=True)
        expected = pipe.text_encoder.final_layer_norm(out.hidden_states[-2])
        got = clip_skip_embeds(pipe, "sd15", "mychar", "", 2, True)
        # clip skip 1 is what the pipeline itself encodes: the last layer, normed
        assert torch.allclose(clip_skip_embeds(pipe, "sd15", "mychar", "", 1, False)["prompt_embeds"],
                              out.last_hidden_state, atol=1e-5)
    assert torch.allclose(got["prompt_embeds"], expected, atol=1e-5) and "negative_prompt_embeds" in got


def test_clip_skip_on_sdxl_passes_pooled_embeds(session, tmp_path):
    from lora_factory.plugins.image.tiny_model import build_tiny_image_model

    base = tmp_path / "tiny-sdxl"
    build_tiny_image_model(base, "sdxl")
    request = {"base_model": str(base), "input": {"prompt": "a cat"}, "params": {"seed": 3, "steps": 2}}
    plain, _ = run(request, session)
    skipped, _ = run({**request, "params": request["params"] | {"clip_skip": 2}}, session)
    assert skipped[0]["meta"]["clip_skip"] == 2
    assert np.abs(pixels(plain[0]) - pixels(skipped[0])).max() > 1


# A1111's own infotext field regex (modules/infotext_utils.py, re_param)
A1111_RE_PARAM = r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)'


def test_png_carries_model_and_lora_hashes_as_a1111_writes_them(session, tiny_sd15, trained):
    import hashlib
    import json
    import re

    from lora_factory.plugins.image.export import read_kohya_metadata
    from lora_factory.plugins.image.png_info import parse_a1111_parameters

    adapter = {"path": str(trained["out"]), "name": "mychar_v1", "weight": 0.8}
    images, _ = run({"base_model": str(tiny_sd15), "adapters": [adapter], "input": {"prompt": "mychar"},
                     "params": {"seed": 2, "steps": 1, "width": 64, "height": 64}}, session)
    text = read_png_text(Path(images[0]["path"]))["parameters"]
    fields = {k.strip(): (json.loads(v) if v.startswith('"') else v)
              for k, v in re.findall(A1111_RE_PARAM, text.splitlines()[-1])}
    unet = hashlib.sha256((tiny_sd15 / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()).hexdigest()
    assert fields["Model hash"] == unet[:10]
    kohya = read_kohya_metadata(trained["out"] / "mychar_v1.safetensors")["sshs_model_hash"]
    assert fields["Lora hashes"] == f"mychar_v1: {kohya[:12]}"
    back = parse_a1111_parameters(text)
    assert back["model_hash"] == unet[:10] and back["lora_hashes"] == {"mychar_v1": kohya[:12]}


def _as_arch(src: Path, dst: Path, arch: str) -> Path:
    import json
    import shutil

    shutil.copytree(src, dst)
    config = json.loads((dst / "training_config.json").read_text(encoding="utf-8"))
    (dst / "training_config.json").write_text(json.dumps(config | {"architecture": arch}), encoding="utf-8")
    return dst


def test_a_lora_of_another_architecture_is_refused_naming_the_mismatch(session, tiny_sd15, trained, tmp_path):
    sdxl_lora = _as_arch(trained["out"], tmp_path / "xl_char", "sdxl")
    with pytest.raises(LoRAFactoryError) as err:
        run({"base_model": str(tiny_sd15), "adapters": [{"path": str(sdxl_lora), "name": "xl_char"}],
             "input": {"prompt": "x"}, "params": {"steps": 1, "width": 64, "height": 64}}, session)
    assert err.value.code == "ADAPTER_INCOMPATIBLE" and err.value.http_status == 422
    assert err.value.detail["adapter_architecture"] == "sdxl" and err.value.detail["base_architecture"] == "sd15"
    assert "sdxl" in err.value.message_en and "sd15" in err.value.message_en


def test_adapter_listing_for_a_base_offers_only_its_architecture(tmp_path, trained):
    from fastapi.testclient import TestClient

    from lora_factory.app import create_app

    home = tmp_path / "ws"
    adapters = home / "lora_adapters" / "image"
    adapters.mkdir(parents=True)
    _as_arch(trained["out"], adapters / "sd_char", "sd15")
    _as_arch(trained["out"], adapters / "xl_char", "sdxl")
    with TestClient(create_app(home, start_scheduler=False)) as c:
        every = c.get("/api/adapters", params={"modality": "image"}).json()["adapters"]
        assert {a["name"]: a["architecture"] for a in every} == {"sd_char": "sd15", "xl_char": "sdxl"}
        sd = c.get("/api/adapters", params={"modality": "image", "architecture": "sd15"}).json()["adapters"]
        assert [a["name"] for a in sd] == ["sd_char"]


@pytest.mark.parametrize("params,field", [
    ({"lora_weight_grid": [1.0] * 20, "num_images": 2}, "lora_weight_grid"),
    ({"lora_weight_grid": [1.0] * 100_000, "num_images": 16}, "lora_weight_grid"),
    ({"lora_weight_grid": [0.5] * 8, "num_images": 3}, "lora_weight_grid"),
    ({"lora_weight_grid": [float("nan")]}, "lora_weight_grid.0"),
    ({"guidance_scale": float("nan")}, "guidance_scale"), ({"guidance_scale": float("inf")}, "guidance_scale"),
    ({"num_images": 17}, "num_images")])
def test_image_counts_are_bounded_grid_times_images_included(params, field):
    """Issue 16, item 2: 20 weights × 2 images made 40 images; 100,000 × 16 ran until killed."""
    import json

    from lora_factory.plugins.image.generate_params import validate_generate_params

    with pytest.raises(LoRAFactoryError) as err:
        validate_generate_params(params)
    assert err.value.code == "INVALID_INFER_PARAMS" and err.value.http_status == 422
    assert err.value.detail["field"] == field
    json.dumps(err.value.to_dict(), allow_nan=False)
    assert validate_generate_params({"lora_weight_grid": [0.0, 0.5, 1.0, 1.5], "num_images": 4}).num_images == 4


def test_adapter_page_offers_the_kohya_file_and_sample_thumbnails_and_v1_models_lists_them(tmp_path, tiny_sd15, trained):
    import shutil

    from fastapi.testclient import TestClient

    from lora_factory.app import create_app

    home = tmp_path / "ws"
    folder = home / "lora_adapters" / "image" / "mychar_v1"
    shutil.copytree(trained["out"], folder)
    shutil.copytree(tiny_sd15, home / "models" / "image" / "tiny-sd15")
    with TestClient(create_app(home, start_scheduler=False)) as c:
        # the OpenAI client discovers image models and base+adapter ids (client.models.list())
        listed = {m["id"]: m["modality"] for m in c.get("/v1/models").json()["data"]}
        assert listed.get("tiny-sd15") == "image" and listed.get("tiny-sd15+mychar_v1") == "image"
        info = c.get("/api/adapters/image/mychar_v1").json()
        assert info["weights_file"]["name"] == "mychar_v1.safetensors"
        got = c.get(info["weights_file"]["url"])
        assert got.status_code == 200 and got.content == (folder / "mychar_v1.safetensors").read_bytes()
        assert info["samples"] and all(s["name"].endswith(".png") for s in info["samples"])
        thumb = c.get(info["samples"][0]["url"])
        assert thumb.status_code == 200 and thumb.content[:8] == b"\x89PNG\r\n\x1a\n"
