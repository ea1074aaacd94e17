"""LyCORIS networks (issue 17, item 10): LoCon, LoHa and LoKr trained with peft, written in the kohya layout
A1111 / ComfyUI load, every key checked against ComfyUI's key mapping, and applied back by our generation.

The round trip is exact: a file written from peft layers, applied to a fresh model by the loaders' formula
(:func:`lycoris.merge_kohya_file`), gives the model's output with the peft layers active.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from tests.image.conftest import make_dataset, train_tiny
from tests.image.test_generate import pixels, run
from tests.image.test_kohya_options import a1111_metadata

# ComfyUI comfy/lora.py LORA_CLIP_MAP: the CLIP layers a kohya text-encoder key may name
LORA_CLIP_MAP = {"mlp.fc1": "mlp_fc1", "mlp.fc2": "mlp_fc2", "self_attn.k_proj": "self_attn_k_proj",
                 "self_attn.q_proj": "self_attn_q_proj", "self_attn.v_proj": "self_attn_v_proj",
                 "self_attn.out_proj": "self_attn_out_proj"}
# the tensor names ComfyUI's weight adapters (comfy/weight_adapter/lora.py, loha.py, lokr.py) read
COMFY_SUFFIXES = {"alpha", "dora_scale", "lora_up.weight", "lora_down.weight", "lora_mid.weight",
                  "hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "hada_t1", "hada_t2",
                  "lokr_w1", "lokr_w2", "lokr_w1_a", "lokr_w1_b", "lokr_w2_a", "lokr_w2_b", "lokr_t2"}


def comfy_key_map(unet, text_encoder) -> set[str]:
    """ComfyUI's ``model_lora_keys_unet`` / ``model_lora_keys_clip`` for an SD1 model: ``lora_unet_`` + every
    UNet weight's diffusers path with ``_``, ``lora_te_text_model_encoder_layers_{i}_{layer}`` for CLIP."""
    keys = {"lora_unet_" + k[: -len(".weight")].replace(".", "_") for k in unet.state_dict() if k.endswith(".weight")}
    layers = text_encoder.config.num_hidden_layers
    keys |= {f"lora_te_text_model_encoder_layers_{b}_{c}" for b in range(layers) for c in LORA_CLIP_MAP.values()}
    return keys


def _randomise(module, seed: int) -> None:
    """Every adapter parameter random (peft starts one factor at zero: the delta would be 0)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if any(tag in name for tag in ("lora_", "hada_", "lokr_")):
                param.copy_(torch.randn(param.shape, generator=gen) * 0.2)


@pytest.mark.parametrize("network_type, rank, conv_dim", [("locon", 4, 2), ("loha", 4, 2), ("lokr", 4, None),
                                                          ("lokr", 2, 2)])
def test_kohya_file_applies_back_exactly_and_every_key_maps_in_comfyui(tmp_path, tiny_sd15, network_type, rank,
                                                                      conv_dim):
    import torch
    from diffusers import UNet2DConditionModel
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file
    from transformers import CLIPTextModel

    from lora_factory.plugins.image import lycoris
    from lora_factory.plugins.image.presets import ImageTrainParams
    from lora_factory.plugins.image.train_parts import UNET_TRANSFORMER, _inject, network_config

    params = ImageTrainParams(network_type=network_type, rank=rank, alpha=3, conv_dim=conv_dim, conv_alpha=1)
    unet = UNet2DConditionModel.from_pretrained(tiny_sd15, subfolder="unet")
    fresh = UNet2DConditionModel.from_pretrained(tiny_sd15, subfolder="unet")
    te = CLIPTextModel.from_pretrained(tiny_sd15, subfolder="text_encoder")
    _inject(unet, network_config(params, UNET_TRANSFORMER, conv=network_type == "locon" or conv_dim is not None))
    _inject(te, network_config(params, ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"], conv=False))
    _randomise(unet, 0)
    states = {"unet": get_peft_model_state_dict(unet), "text_encoder": get_peft_model_state_dict(te)}
    tensors = lycoris.state_dict_to_kohya(states, {"unet": lycoris.module_scales(unet),
                                                   "text_encoder": lycoris.module_scales(te)})
    keys = comfy_key_map(fresh, te)
    names = {k.split(".", 1)[0] for k in tensors}
    assert names <= keys, sorted(names - keys)[:3]  # every module is one ComfyUI maps
    assert {k.split(".", 1)[1] for k in tensors} <= COMFY_SUFFIXES
    assert any("_resnets_0_conv1" in n for n in names) == (conv_dim is not None or network_type == "locon")
    assert any(n.startswith("lora_te_text_model_encoder_layers_0_") for n in names)
    path = tmp_path / "net.safetensors"
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    assert lycoris.network_kind(tensors) == ("lora" if network_type == "locon" else network_type)

    sample = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    cond = torch.randn(1, 5, unet.config.cross_attention_dim, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = unet(sample, 10, cond).sample
        before = fresh(sample, 10, cond).sample

    class Pipe:  # what merge_kohya_file reads of a pipeline
        pass

    pipe = Pipe()
    pipe.unet, pipe.text_encoder = fresh, CLIPTextModel.from_pretrained(tiny_sd15, subfolder="text_encoder")
    backup: dict = {}
    assert lycoris.merge_kohya_file(pipe, path, 1.0, backup) == len(names)
    with torch.no_grad():
        merged = fresh(sample, 10, cond).sample
    assert (expected - before).abs().max() > 1e-3  # the network does something
    assert torch.allclose(merged, expected, atol=1e-4), (merged - expected).abs().max()
    lycoris.restore(backup)
    with torch.no_grad():
        assert torch.allclose(fresh(sample, 10, cond).sample, before)


@pytest.fixture(scope="module")
def loha_run(tmp_path_factory, tiny_sd15):
    """A 2-step LoHa with conv layers and the text encoder, saved per epoch."""
    root = make_dataset(tmp_path_factory.mktemp("loha") / "chars", n=2, concept="1_mychar")
    params = {"network_type": "loha", "rank": 4, "alpha": 2, "conv_dim": 2, "conv_alpha": 1, "train_text_encoder": True,
              "max_steps": -1, "num_epochs": 2, "batch_size": 2, "learning_rate": 5e-2, "save_every_n_epochs": 1,
              "sample_every_n_steps": 0, "sample_steps": 1, "save_precision": "fp32"}
    result, ctx = train_tiny(tmp_path_factory.mktemp("ws"), tiny_sd15, root, params, "mystyle", "l1")
    return {"result": result, "out": Path(ctx.output_dir)}


def test_loha_run_writes_lycoris_keys_and_metadata(loha_run, tiny_sd15):
    from diffusers import UNet2DConditionModel
    from safetensors import safe_open
    from transformers import CLIPTextModel

    out = loha_run["out"]
    assert loha_run["result"]["diffusers_file"] is None  # diffusers cannot read LoHa: the kohya file only
    assert sorted(p.name for p in out.glob("*.safetensors")) == ["mystyle-000001.safetensors", "mystyle.safetensors"]
    with safe_open(str(out / "mystyle.safetensors"), framework="pt") as fh:
        keys = list(fh.keys())
    assert all(re.match(r"^lora_(unet|te)_[a-z0-9_]+\.(hada_w[12]_[ab]|alpha)$", k) for k in keys), keys[:3]
    keys_map = comfy_key_map(UNet2DConditionModel.from_pretrained(tiny_sd15, subfolder="unet"),
                             CLIPTextModel.from_pretrained(tiny_sd15, subfolder="text_encoder"))
    assert {k.split(".")[0] for k in keys} <= keys_map
    meta = a1111_metadata(out / "mystyle.safetensors")
    assert meta["ss_network_module"] == "lycoris.kohya"
    assert meta["ss_network_args"] == {"algo": "loha", "conv_dim": "2", "conv_alpha": "1"}  # JSON, as A1111 parses it


def test_generation_applies_a_loha_and_takes_it_off_again(loha_run, tiny_sd15, tmp_path):
    from lora_factory.kit.testing import FakeInferenceSession

    session = FakeInferenceSession(tmp_path / "outputs")
    params = {"seed": 5, "steps": 2, "width": 64, "height": 64, "scheduler": "euler"}
    adapter = {"path": str(loha_run["out"]), "name": "mystyle", "weight": 1.0}
    prompt = {"prompt": "mychar, red background"}
    base, _ = run({"base_model": str(tiny_sd15), "input": prompt, "params": params}, session)
    grid, _ = run({"base_model": str(tiny_sd15), "adapters": [adapter], "input": prompt,
                   "params": params | {"lora_weight_grid": [0.0, 1.0], "epoch_grid": [1, 0]}}, session)
    assert [(e["meta"]["epoch"], e["meta"]["lora_weight"]) for e in grid] == [(1, 0.0), (1, 1.0), (0, 0.0), (0, 1.0)]
    assert np.abs(pixels(grid[0]) - pixels(base[0])).max() <= 1  # weight 0: the base picture
    assert np.abs(pixels(grid[3]) - pixels(base[0])).max() > 2  # the LoHa changes it
    assert np.abs(pixels(grid[1]) - pixels(grid[3])).max() > 0  # epoch 1 is not the final file
    again, _ = run({"base_model": str(tiny_sd15), "input": prompt, "params": params}, session)
    assert np.abs(pixels(again[0]) - pixels(base[0])).max() <= 1  # merged weights restored


def _deltas(path: Path) -> dict:
    from lora_factory.plugins.image import lycoris

    return {name: lycoris.delta_weight(t, t.get("lora_up.weight", t.get("hada_w1_a")).shape[:1] + (-1,))
            for name, t in lycoris.read_modules(path).items()}


def test_network_weights_continue_from_ours_and_from_a_file_trained_elsewhere(tmp_path, tiny_sd15, image_dataset,
                                                                             trained):
    """At a learning rate too small to move anything, the continued run writes the deltas it started from: ours,
    and a file "from elsewhere" with another alpha (4 instead of 2, the up factor halved: the same delta)."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from lora_factory.kit import LoRAFactoryError

    home = tmp_path / "ws"
    shutil.copytree(trained["out"], home / "lora_adapters" / "image" / "mychar_v1")
    elsewhere = {k: (v * 0.5 if k.endswith("lora_up.weight") else torch.tensor(4.0) if k.endswith(".alpha") else v)
                 for k, v in load_file(str(trained["out"] / "mychar_v1.safetensors")).items()}
    (home / "models" / "image" / "lora").mkdir(parents=True)
    save_file(elsewhere, str(home / "models" / "image" / "lora" / "civitai_char.safetensors"))
    original = _deltas(trained["out"] / "mychar_v1.safetensors")
    params = {"max_steps": 1, "rank": 4, "alpha": 1, "train_text_encoder": True, "learning_rate": 1e-12,
              "sample_every_n_steps": 0, "sample_steps": 1, "save_precision": "fp32", "min_snr_gamma": None}
    for i, ref in enumerate(["mychar_v1", "models/image/lora/civitai_char.safetensors"]):
        _, ctx = train_tiny(home, tiny_sd15, image_dataset, params | {"network_weights": ref}, f"more{i}", f"c{i}")
        continued = _deltas(Path(ctx.output_dir) / f"more{i}.safetensors")
        assert continued.keys() == original.keys()
        assert all(torch.allclose(continued[k], original[k], atol=1e-5) for k in original), ref
        assert any("network_weights:" in line and f"{len(original)} / {len(original)} modules" in line
                   for line in ctx.lines)
    with pytest.raises(LoRAFactoryError) as err:  # another rank cannot take these weights
        train_tiny(home, tiny_sd15, image_dataset, params | {"network_weights": "mychar_v1", "rank": 8}, "bad", "c9")
    assert err.value.code == "ADAPTER_INCOMPATIBLE" and "rank" in err.value.message_en
