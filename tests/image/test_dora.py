"""DoRA (issue 17, item 10) with the decomposition the target runtimes use: the magnitude per INPUT column
(LyCORIS ``dora_wd``), written as ``dora_scale`` in the kohya layout, loaded back by our generation.

The loaders' side is a transcription of ComfyUI's code (``comfy/weight_adapter/base.py`` ``weight_decompose``,
``comfy/weight_adapter/lora.py`` / ``loha.py`` ``calculate_weight``; A1111's ``network.py``
``apply_weight_decompose`` is the same formula): for every module of the saved file, the weight ComfyUI builds
from the base weight must equal the weight our trained layer computed with.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.image.conftest import make_dataset, train_tiny
from tests.image.test_generate import pixels, run
from tests.image.test_kohya_options import a1111_metadata
from tests.image.test_lycoris import COMFY_SUFFIXES, comfy_key_map


def comfy_weight_decompose(dora_scale, weight, lora_diff, alpha, strength, intermediate_dtype, function):
    """ComfyUI ``comfy/weight_adapter/base.py`` ``weight_decompose``, as written there (``cast_to_device`` as
    ``.to``)."""
    dora_scale = dora_scale.to(weight.device, intermediate_dtype)
    lora_diff *= alpha
    weight_calc = weight + function(lora_diff).type(weight.dtype)
    weight_norm = (
        weight_calc.transpose(0, 1)
        .reshape(weight_calc.shape[1], -1)
        .norm(dim=1, keepdim=True)
        .reshape(weight_calc.shape[1], *[1] * (weight_calc.dim() - 1))
        .transpose(0, 1)
    )
    weight_calc *= (dora_scale / weight_norm).type(weight.dtype)
    if strength != 1.0:
        weight_calc -= weight
        weight += strength * (weight_calc)
    else:
        weight[:] = weight_calc
    return weight


def comfy_calculate_weight(tensors: dict, weight):
    """ComfyUI's LoRA / LoHa ``calculate_weight`` at strength 1 (alpha / rank, ``lora_diff``, then DoRA)."""
    import torch

    weight = weight.clone().float()
    if "lora_up.weight" in tensors:
        mat1, mat2 = tensors["lora_up.weight"].float(), tensors["lora_down.weight"].float()
        alpha = float(tensors["alpha"]) / mat2.shape[0] if "alpha" in tensors else 1.0
        lora_diff = torch.mm(mat1.flatten(start_dim=1), mat2.flatten(start_dim=1)).reshape(weight.shape)
    else:
        w1a, w1b, w2a, w2b = (tensors[k].float() for k in ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"))
        alpha = float(tensors["alpha"]) / w1b.shape[0] if "alpha" in tensors else 1.0
        lora_diff = (torch.mm(w1a, w1b) * torch.mm(w2a, w2b)).reshape(weight.shape)
    return comfy_weight_decompose(tensors["dora_scale"], weight, lora_diff, alpha, 1.0, torch.float32, lambda a: a)


def _randomise(module, seed: int) -> None:
    """Every adapter parameter random, the magnitudes moved away from the base norms too."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if "dora_scale" in name:
                param.mul_(1 + 0.3 * torch.rand(param.shape, generator=gen))
            elif any(tag in name for tag in ("lora_", "hada_", "lokr_")):
                param.copy_(torch.randn(param.shape, generator=gen) * 0.2)


@pytest.mark.parametrize("network_type, conv_dim", [("locon", 2), ("loha", None)])
def test_saved_dora_scale_gives_in_comfyui_the_weight_training_used(tmp_path, tiny_sd15, network_type, conv_dim):
    import torch
    from diffusers import UNet2DConditionModel
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file
    from transformers import CLIPTextModel

    from lora_factory.plugins.image import dora, lycoris
    from lora_factory.plugins.image.presets import ImageTrainParams
    from lora_factory.plugins.image.train_parts import UNET_TRANSFORMER, _inject, network_config

    params = ImageTrainParams(network_type=network_type, dora=True, rank=4, alpha=3, conv_dim=conv_dim, conv_alpha=1)
    unet = UNet2DConditionModel.from_pretrained(tiny_sd15, subfolder="unet")
    fresh = UNet2DConditionModel.from_pretrained(tiny_sd15, subfolder="unet")
    te = CLIPTextModel.from_pretrained(tiny_sd15, subfolder="text_encoder")
    _inject(unet, network_config(params, UNET_TRANSFORMER, conv=conv_dim is not None))
    _inject(te, network_config(params, ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"], conv=False))
    sample = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    cond = torch.randn(1, 5, unet.config.cross_attention_dim, generator=torch.Generator().manual_seed(2))
    assert dora.add_weight_decompose(unet) > 0 and dora.add_weight_decompose(te) > 0
    with torch.no_grad():  # a fresh network (dW = 0, dora_scale = ||W||) changes nothing
        before = fresh(sample, 10, cond).sample
        assert torch.allclose(unet(sample, 10, cond).sample, before, atol=1e-5)
    _randomise(unet, 3)
    _randomise(te, 4)
    states = {name: get_peft_model_state_dict(m) | dora.scale_state(m) for name, m in (("unet", unet), ("text_encoder", te))}
    tensors = lycoris.state_dict_to_kohya(states, {"unet": lycoris.module_scales(unet),
                                                   "text_encoder": lycoris.module_scales(te)})
    modules: dict = {}
    for key, value in tensors.items():
        name, _, suffix = key.partition(".")
        modules.setdefault(name, {})[suffix] = value
    assert {n for n in modules} <= comfy_key_map(fresh, te)  # every module is one ComfyUI maps
    assert {k.split(".", 1)[1] for k in tensors} <= COMFY_SUFFIXES
    assert all("dora_scale" in t for t in modules.values())
    assert any("_resnets_0_conv1" in n for n in modules) == (conv_dim is not None)

    layers = {}
    for component, module in (("unet", unet), ("text_encoder", te)):
        for path, layer in module.named_modules():
            if hasattr(layer, dora.PARAM):
                layers[lycoris.kohya_module_name(component, path, True)] = layer
    assert set(layers) == set(modules)
    for name, layer in layers.items():
        with torch.no_grad():
            base = layer.get_base_layer().weight
            used = dora.effective_weight(layer)
            comfy = comfy_calculate_weight(modules[name], base)
            assert modules[name]["dora_scale"].shape[1] == base.shape[1]  # per input column
            assert torch.allclose(comfy, used, atol=1e-5), (name, (comfy - used).abs().max())
            # and the layer really computes with that weight
            x = torch.randn(2, base.shape[1], *([6, 6] if base.dim() == 4 else []))
            fn = torch.nn.functional
            got = layer(x)
            want = (fn.conv2d(x, used, layer.get_base_layer().bias, layer.get_base_layer().stride,
                              layer.get_base_layer().padding) if base.dim() == 4
                    else fn.linear(x, used, layer.get_base_layer().bias))
            assert torch.allclose(got, want, atol=1e-4), (name, (got - want).abs().max())

    path = tmp_path / "dora.safetensors"
    save_file({k: v.detach().contiguous() for k, v in tensors.items()}, str(path))
    assert lycoris.network_kind(tensors) == ("dora" if network_type == "locon" else network_type)

    class Pipe:  # what merge_kohya_file reads of a pipeline
        pass

    pipe = Pipe()
    pipe.unet, pipe.text_encoder = fresh, CLIPTextModel.from_pretrained(tiny_sd15, subfolder="text_encoder")
    backup: dict = {}
    lycoris.merge_kohya_file(pipe, path, 1.0, backup)
    with torch.no_grad():
        expected = unet(sample, 10, cond).sample
        merged = fresh(sample, 10, cond).sample
    assert (expected - before).abs().max() > 1e-3
    assert torch.allclose(merged, expected, atol=1e-4), (merged - expected).abs().max()
    lycoris.restore(backup)


@pytest.fixture(scope="module")
def dora_run(tmp_path_factory, tiny_sd15):
    """A 2-step LoCon + DoRA with the text encoder, a checkpoint at step 1."""
    root = make_dataset(tmp_path_factory.mktemp("dora") / "chars", n=2, concept="1_mychar")
    params = {"network_type": "locon", "dora": True, "rank": 4, "alpha": 2, "conv_dim": 2, "conv_alpha": 1,
              "train_text_encoder": True, "max_steps": 2, "batch_size": 2, "learning_rate": 5e-2,
              "sample_every_n_steps": 0, "sample_steps": 1, "save_precision": "fp32", "save_every_n_steps": 1}
    home = tmp_path_factory.mktemp("ws")
    result, ctx = train_tiny(home, tiny_sd15, root, params, "mydora", "d1")
    return {"result": result, "out": Path(ctx.output_dir), "params": params, "home": home, "root": root,
            "tiny": tiny_sd15}


def test_dora_run_writes_dora_scale_and_lycoris_metadata(dora_run):
    import torch
    from safetensors.torch import load_file

    out = dora_run["out"]
    assert dora_run["result"]["diffusers_file"] is None  # diffusers cannot apply input-column DoRA
    tensors = load_file(str(out / "mydora.safetensors"))
    scales = {k: v for k, v in tensors.items() if k.endswith(".dora_scale")}
    downs = {k.split(".")[0] for k in tensors if k.endswith(".lora_down.weight")}
    assert {k.split(".")[0] for k in scales} == downs and scales
    from diffusers import UNet2DConditionModel

    from lora_factory.plugins.image import dora, lycoris

    class Pipe:
        text_encoder = None

    pipe = Pipe()
    pipe.unet = UNet2DConditionModel.from_pretrained(dora_run["tiny"], subfolder="unet")
    layers = lycoris.module_map(pipe)
    unet_scales = {k: v for k, v in scales.items() if k.startswith("lora_unet_")}
    moved = [k for k, v in unet_scales.items()
             if not torch.allclose(v, dora.column_norm(layers[k.split(".")[0]].weight.detach()), atol=1e-6)]
    assert len(moved) == len(unet_scales)  # every magnitude trained away from ||W||
    meta = a1111_metadata(out / "mydora.safetensors")
    assert meta["ss_network_module"] == "lycoris.kohya"
    assert meta["ss_network_args"] == {"algo": "locon", "conv_dim": "2", "conv_alpha": "1", "dora_wd": "True"}


def test_generation_applies_the_dora_file_and_takes_it_off(dora_run, tiny_sd15, tmp_path):
    from lora_factory.kit.testing import FakeInferenceSession

    session = FakeInferenceSession(tmp_path / "outputs")
    params = {"seed": 5, "steps": 2, "width": 64, "height": 64, "scheduler": "euler"}
    adapter = {"path": str(dora_run["out"]), "name": "mydora", "weight": 1.0}
    prompt = {"prompt": "mychar, red background"}
    base, _ = run({"base_model": str(tiny_sd15), "input": prompt, "params": params}, session)
    grid, _ = run({"base_model": str(tiny_sd15), "adapters": [adapter], "input": prompt,
                   "params": params | {"lora_weight_grid": [0.0, 1.0]}}, session)
    assert np.abs(pixels(grid[0]) - pixels(base[0])).max() <= 1  # weight 0: the base picture
    assert np.abs(pixels(grid[1]) - pixels(base[0])).max() > 2  # the DoRA network changes it
    again, _ = run({"base_model": str(tiny_sd15), "input": prompt, "params": params}, session)
    assert np.abs(pixels(again[0]) - pixels(base[0])).max() <= 1  # merged weights restored


def _merged_weights(path: Path, tiny_sd15) -> dict:
    """Module name -> the weight ComfyUI builds from ``path`` (DoRA modules) or ``W + delta`` (plain ones)."""
    import torch
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    from lora_factory.plugins.image import lycoris

    class Pipe:
        pass

    pipe = Pipe()
    pipe.unet = UNet2DConditionModel.from_pretrained(tiny_sd15, subfolder="unet")
    pipe.text_encoder = CLIPTextModel.from_pretrained(tiny_sd15, subfolder="text_encoder")
    layers = lycoris.module_map(pipe)
    out = {}
    with torch.no_grad():
        for name, tensors in lycoris.read_modules(path).items():
            weight = layers[name].weight.detach().float()
            out[name] = (comfy_calculate_weight(tensors, weight) if "dora_scale" in tensors
                         else weight + lycoris.delta_weight(tensors, weight.shape))
    return out


def test_network_weights_continue_a_dora_run_from_a_dora_file_and_from_a_plain_lora(dora_run, trained, tiny_sd15):
    """At a learning rate too small to move anything, the continued DoRA run's file gives in ComfyUI the weights
    of the file it started from: a DoRA file (its magnitudes copied), and a plain LoRA (the magnitudes set to
    ``||W + dW||``). Two 1-step runs on the shared fixtures (~25 s)."""
    import shutil

    import torch

    home = dora_run["home"]
    shutil.copytree(dora_run["out"], home / "lora_adapters" / "image" / "mydora", dirs_exist_ok=True)
    shutil.copytree(trained["out"], home / "lora_adapters" / "image" / "mychar_v1", dirs_exist_ok=True)
    base = {"max_steps": 1, "batch_size": 2, "learning_rate": 1e-12, "sample_every_n_steps": 0, "sample_steps": 1,
            "save_precision": "fp32", "min_snr_gamma": None, "dora": True, "train_text_encoder": True}
    cases = [("mydora", dora_run["out"] / "mydora.safetensors",
              {"network_type": "locon", "rank": 4, "alpha": 2, "conv_dim": 2, "conv_alpha": 1}),
             ("mychar_v1", trained["out"] / "mychar_v1.safetensors", {"rank": 4, "alpha": 1})]
    for i, (ref, source, extra) in enumerate(cases):
        _, ctx = train_tiny(home, tiny_sd15, dora_run["root"], base | extra | {"network_weights": ref},
                            f"cont{i}", f"k{i}")
        want = _merged_weights(source, tiny_sd15)
        got = _merged_weights(Path(ctx.output_dir) / f"cont{i}.safetensors", tiny_sd15)
        assert got.keys() == want.keys()
        bad = [k for k in want if not torch.allclose(got[k], want[k], atol=1e-5)]
        assert not bad, (ref, bad[:3])


def test_merge_resize_and_checkpoint_export_refuse_a_dora_file(dora_run, tiny_sd15, tmp_path):
    """They compute with ``up @ down`` only: the DoRA file would lose its ``dora_scale`` (another picture)."""
    import shutil

    from lora_factory.kit import LoRAFactoryError
    from tests.image.test_export import _export

    home = tmp_path / "ws"
    adapter = home / "lora_adapters" / "image" / "mydora"
    shutil.copytree(dora_run["out"], adapter)
    for target, params in (("lora_resize", {"rank": 2}), ("a1111", {}), ("lora_merge", {"adapters": ["mydora"]})):
        with pytest.raises(LoRAFactoryError) as err:
            _export(home, tiny_sd15, adapter, target, params, "x", "x1")
        assert err.value.code == "EXPORT_UNSUPPORTED" and "dora" in err.value.message_en, target
