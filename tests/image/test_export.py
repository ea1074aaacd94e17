"""Image exports checked by what loads them: the merged A1111 checkpoint (SD1.5 and SDXL) goes back through
diffusers' ``from_single_file`` and draws the picture the base draws with the LoRA at that weight; LoRA
merges and rank resizes are new adapters whose update matrices are read back and compared with the
sources' (the exact sum, the best approximation of that rank) and whose kept energy is reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lora_factory.core.errors import LoRAFactoryError
from tests.image.conftest import make_ctx


def make_random_adapter(base: Path, out: Path, arch: str, rank: int = 4, alpha: float = 2.0, seed: int = 1,
                        text_encoder: bool = True, std: float = 0.3) -> Path:
    """An adapter folder as training writes one (diffusers file, kohya file, training_config.json), its B
    matrices random so that it visibly changes the picture."""
    import torch
    from diffusers import DiffusionPipeline
    from peft import LoraConfig, inject_adapter_in_model
    from peft.utils import get_peft_model_state_dict

    from lora_factory.plugins.image.export import canonical_text_encoder_keys, kohya_state_dict, save_kohya_file

    pipe = DiffusionPipeline.from_pretrained(str(base), torch_dtype=torch.float32)
    torch.manual_seed(seed)
    modules = {"unet": (pipe.unet, ["to_q", "to_k", "to_v", "to_out.0"])}
    if text_encoder:
        modules["text_encoder"] = (pipe.text_encoder, ["q_proj", "v_proj"])
        if arch == "sdxl":
            modules["text_encoder_2"] = (pipe.text_encoder_2, ["q_proj", "v_proj"])
    states, metadata = {}, {}
    for name, (module, targets) in modules.items():
        config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets, init_lora_weights="gaussian")
        if name == "unet":
            module.add_adapter(config)
        else:
            inject_adapter_in_model(config, module, adapter_name="default")
        for pname, param in module.named_parameters():
            if "lora_B" in pname:
                torch.nn.init.normal_(param, std=std)
        states[name] = get_peft_model_state_dict(module)
        metadata[f"{name}_lora_adapter_metadata"] = config.to_dict()
    out.mkdir(parents=True, exist_ok=True)
    layers = {f"{n}_lora_layers": canonical_text_encoder_keys(s) if n.startswith("text_encoder") else s
              for n, s in states.items()}
    type(pipe).save_lora_weights(str(out), safe_serialization=True, **layers, **metadata)
    save_kohya_file(out / f"{out.name}.safetensors", kohya_state_dict(states, alpha, arch),
                    {"ss_network_dim": str(rank), "ss_network_alpha": str(alpha), "ss_output_name": out.name,
                     "ss_base_model_version": {"sd15": "sd_v1", "sdxl": "sdxl_base_v1-0"}[arch]}, "fp32")
    (out / "training_config.json").write_text(json.dumps({
        "modality": "image", "architecture": arch, "base_model": f"models/image/{base.name}",
        "kohya_file": f"{out.name}.safetensors", "params": {"rank": rank, "alpha": alpha}}), encoding="utf-8")
    return out


class _Workspace:
    """What ``resolve`` needs of the workspace: adapters by name inside ``lora_adapters/image``."""

    def __init__(self, home: Path) -> None:
        self.home = home

    def resolve_ref(self, ref: str, *parts: str) -> Path:
        return self.home.joinpath(*parts, ref)

    def relative(self, path: Path) -> str:
        return Path(path).relative_to(self.home).as_posix()


def _export(home: Path, base: Path, adapter: Path, target: str, params: dict, name: str, job: str) -> tuple[dict, Path]:
    from lora_factory.plugins.image.export_targets import resolve, run

    spec = resolve({"adapter": str(adapter), "base_model": str(base), "target": target, "params": params,
                    "output_name": name, "adapter_ref": f"lora_adapters/image/{adapter.name}",
                    "base_model_ref": f"models/image/{base.name}"}, _Workspace(home))
    ctx = make_ctx(home, job, kind="export")
    return run(spec, ctx), Path(ctx.output_dir)


def _picture(pipe, arch: str):
    import torch

    extra = {"guidance_scale": 1.0}
    return pipe("a red circle", num_inference_steps=2, height=64, width=64, output_type="np",
                generator=torch.Generator().manual_seed(0), **extra).images[0]


@pytest.fixture(scope="module")
def tiny_sdxl(tmp_path_factory) -> Path:
    from lora_factory.plugins.image.tiny_model import build_tiny_image_model

    out = tmp_path_factory.mktemp("tiny") / "tiny-sdxl"
    build_tiny_image_model(out, "sdxl", seed=0)
    return out


@pytest.mark.parametrize(("arch", "precision", "tolerance"), [("sd15", "fp32", 1e-3), ("sdxl", "fp16", 5e-3)])
def test_a1111_checkpoint_loads_back_and_draws_base_plus_lora(arch, precision, tolerance, tiny_sd15, tmp_path, request):
    import diffusers
    import numpy as np
    from safetensors import safe_open

    base = tiny_sd15 if arch == "sd15" else request.getfixturevalue("tiny_sdxl")
    home = tmp_path / "ws"
    adapter = make_random_adapter(base, home / "lora_adapters" / "image" / "char", arch)
    result, out = _export(home, base, adapter, "a1111", {"weight": 0.7, "precision": precision}, "char-a1111", "x1")
    checkpoint = out / result["primary"]
    assert result["primary"] == "char-a1111.safetensors" and (out / "README.md").is_file()
    assert result["checks"]["dtype"] == precision and result["checks"]["weight"] == 0.7
    with safe_open(str(checkpoint), framework="pt") as fh:
        keys = set(fh.keys())
        dtype = fh.get_tensor("model.diffusion_model.out.2.weight").dtype
    assert str(dtype) == {"fp16": "torch.float16", "fp32": "torch.float32"}[precision]
    assert "first_stage_model.decoder.conv_out.weight" in keys
    if arch == "sdxl":
        assert {"model.diffusion_model.label_emb.0.0.weight", "conditioner.embedders.1.model.text_projection",
                "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight",
                "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight"} <= keys
    else:
        assert "cond_stage_model.transformer.text_model.final_layer_norm.weight" in keys
    cls = diffusers.StableDiffusionXLPipeline if arch == "sdxl" else diffusers.StableDiffusionPipeline
    extra = {} if arch == "sdxl" else {"safety_checker": None, "requires_safety_checker": False}
    loaded = cls.from_single_file(str(checkpoint), config=str(base), local_files_only=True, **extra)
    loaded.set_progress_bar_config(disable=True)
    merged_picture = _picture(loaded, arch)

    reference = diffusers.DiffusionPipeline.from_pretrained(str(base))
    reference.set_progress_bar_config(disable=True)
    plain = _picture(reference, arch)
    reference.load_lora_weights(str(adapter), weight_name="pytorch_lora_weights.safetensors", adapter_name="a")
    reference.set_adapters(["a"], adapter_weights=[0.7])
    with_lora = _picture(reference, arch)
    change, error = np.abs(with_lora - plain).max(), np.abs(merged_picture - with_lora).max()
    print(f"{arch} {precision}: the LoRA changes pixels by up to {change:.4f}, the checkpoint differs by {error:.5f}")
    assert change > 0.02  # the LoRA visibly changes the picture
    assert error < tolerance and error < change / 10


def test_a1111_refuses_what_has_no_ldm_layout(tiny_sd15, tmp_path):
    home = tmp_path / "ws"
    adapter = make_random_adapter(tiny_sd15, home / "lora_adapters" / "image" / "char", "sd15", text_encoder=False)
    with pytest.raises(LoRAFactoryError) as err:
        _export(home, tiny_sd15, adapter, "a1111", {"precision": "int4"}, "x", "x2")
    assert err.value.code == "INVALID_EXPORT_PARAMS"
    config = json.loads((adapter / "training_config.json").read_text())
    (adapter / "training_config.json").write_text(json.dumps(config | {"architecture": "sdxl"}))
    with pytest.raises(LoRAFactoryError) as err:
        _export(home, tiny_sd15, adapter, "a1111", {}, "x", "x3")
    assert err.value.code == "EXPORT_UNSUPPORTED" and "sdxl" in err.value.message_en


def _deltas(path: Path) -> dict:
    from safetensors.torch import load_file

    from lora_factory.plugins.image import lora_ops

    return {name: lora_ops.delta(mod) for name, mod in lora_ops.modules(load_file(str(path))).items()}


def test_merge_and_resize_make_new_adapters_whose_updates_read_back(tiny_sd15, tmp_path):
    import torch

    home = tmp_path / "ws"
    adapters = home / "lora_adapters" / "image"
    one = make_random_adapter(tiny_sd15, adapters / "one", "sd15", rank=4, alpha=2.0, seed=1)
    two = make_random_adapter(tiny_sd15, adapters / "two", "sd15", rank=2, alpha=2.0, seed=2, text_encoder=False)
    d1, d2 = _deltas(one / "one.safetensors"), _deltas(two / "two.safetensors")

    result, out = _export(home, tiny_sd15, one, "lora_merge",
                          {"weight": 0.6, "adapters": [{"name": "two", "weight": -0.5}], "precision": "fp32"},
                          "merged", "m1")
    assert result["publish_as"] == "adapter" and result["parents"] == ["lora_adapters/image/one",
                                                                        "lora_adapters/image/two"]
    merged = _deltas(out / "merged.safetensors")
    assert set(merged) == set(d1) | set(d2)
    for name, delta in merged.items():
        expected = 0.6 * d1.get(name, 0) + -0.5 * d2.get(name, 0)
        torch.testing.assert_close(delta, expected, atol=1e-5, rtol=1e-4)
    config = json.loads((out / "training_config.json").read_text())
    assert config["architecture"] == "sd15" and config["kohya_file"] == "merged.safetensors"
    assert [s["adapter"] for s in config["derived_from"]["sources"]] == ["lora_adapters/image/one", "lora_adapters/image/two"]
    from lora_factory.plugins.image.export import read_kohya_metadata

    meta = read_kohya_metadata(out / "merged.safetensors")
    assert meta["ss_network_dim"] == "6" and meta["ss_merged_from"] == "lora_adapters/image/one,lora_adapters/image/two"
    assert meta["ss_base_model_version"] == "sd_v1" and meta["sshs_model_hash"]

    result, out = _export(home, tiny_sd15, one, "lora_resize", {"rank": 2, "precision": "fp32"}, "small", "r1")
    resized = _deltas(out / "small.safetensors")
    kept = []
    for name, delta in resized.items():
        full = d1[name].reshape(delta.shape[0], -1)
        u, s, vh = torch.linalg.svd(full, full_matrices=False)
        best = (u[:, :2] * s[:2]) @ vh[:2]  # Eckart-Young: the best rank-2 approximation
        torch.testing.assert_close(delta.reshape(best.shape), best, atol=1e-5, rtol=1e-4)
        kept.append(float((s[:2] ** 2).sum() / (s ** 2).sum()) ** 0.5)
    assert result["checks"]["rank"] == 2 and 0 < result["checks"]["kept_energy_min"] < 1
    assert result["checks"]["kept_energy_min"] == pytest.approx(min(kept), rel=1e-4)
    assert result["checks"]["relative_error_max"] == pytest.approx((1 - min(kept) ** 2) ** 0.5, rel=1e-3)

    # diffusers (what the generation view uses) reads the new adapter's diffusers file: fused, it adds the update
    import diffusers

    pipe = diffusers.DiffusionPipeline.from_pretrained(str(tiny_sd15))
    before = {k: v.clone() for k, v in pipe.unet.state_dict().items()} | {
        f"te.{k}": v.clone() for k, v in pipe.text_encoder.state_dict().items()}
    pipe.load_lora_weights(str(out), weight_name="pytorch_lora_weights.safetensors", adapter_name="small")
    pipe.fuse_lora(lora_scale=1.0)
    pipe.unload_lora_weights()
    unet_key = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight"
    kohya = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    torch.testing.assert_close(pipe.unet.state_dict()[unet_key] - before[unet_key], resized[kohya], atol=1e-5, rtol=1e-4)
    te_key = "text_model.encoder.layers.0.self_attn.q_proj.weight"
    te_now = {k if k.startswith("text_model.") else f"text_model.{k}": v for k, v in pipe.text_encoder.state_dict().items()}
    te_before = {k if k.startswith("te.text_model.") else "te.text_model." + k[3:]: v for k, v in before.items()
                 if k.startswith("te.")}
    torch.testing.assert_close(te_now[te_key] - te_before[f"te.{te_key}"],
                               resized["lora_te_text_model_encoder_layers_0_self_attn_q_proj"], atol=1e-5, rtol=1e-4)


def test_merge_refuses_unknown_adapters_and_other_architectures(tiny_sd15, tmp_path):
    home = tmp_path / "ws"
    adapters = home / "lora_adapters" / "image"
    one = make_random_adapter(tiny_sd15, adapters / "one", "sd15", text_encoder=False)
    with pytest.raises(LoRAFactoryError) as err:
        _export(home, tiny_sd15, one, "lora_merge", {"adapters": [{"name": "nope"}]}, "m", "m2")
    assert err.value.code == "ADAPTER_NOT_FOUND"
    other = adapters / "xl"
    other.mkdir(parents=True)
    (other / "training_config.json").write_text(json.dumps({"architecture": "sdxl"}))
    (other / "xl.safetensors").write_bytes(b"")
    with pytest.raises(LoRAFactoryError) as err:
        _export(home, tiny_sd15, one, "lora_merge", {"adapters": [{"name": "xl"}]}, "m", "m3")
    assert err.value.code == "EXPORT_UNSUPPORTED"
    with pytest.raises(LoRAFactoryError) as err:
        _export(home, tiny_sd15, one, "lora_resize", {}, "m", "m4")
    assert err.value.code == "INVALID_EXPORT_PARAMS"
    # weights that are no number a LoRA can hold (a merged LoRA of NaN was written), too many LoRAs at once
    for params, field in [({"adapters": ["one"], "weight": float("nan")}, "weight"),
                          ({"adapters": [{"name": "one", "weight": float("inf")}]}, "weight"),
                          ({"adapters": [{"name": "one", "weight": 1e308}]}, "weight"),
                          ({"adapters": ["one"] * 9}, "adapters")]:
        with pytest.raises(LoRAFactoryError) as err:
            _export(home, tiny_sd15, one, "lora_merge", params, "m", "m5")
        assert err.value.code == "INVALID_EXPORT_PARAMS" and err.value.detail["field"] == field, params


def test_cli_resize_publishes_a_new_adapter_listed_under_its_source_with_lineage(tmp_path, tiny_workspaces,
                                                                               server_factory):
    """Through the product: ``lora-factory export one --to lora_resize`` (a job), then the API lists the new
    adapter with its parents and under the source's exports. About 50 s on a quiet 2-core machine when run
    alone (the CLI process and its job worker import diffusers, then a server starts; the tiny workspace
    is built once per session and shared with the image end-to-end test): the one test of the publish path
    (finalize -> lora_adapters/, lineage, listing) for a derived adapter."""
    import os
    import subprocess
    import sys

    from tests.image.conftest import SINGLE_THREAD_ENV

    home = tmp_path / "ws"
    tiny_workspaces.copy(home, ("image", "--out", "models/image/tiny"))
    make_random_adapter(home / "models" / "image" / "tiny", home / "lora_adapters" / "image" / "one", "sd15",
                        text_encoder=False)
    out = subprocess.run([sys.executable, "-m", "lora_factory.cli", "export", "one", "--to", "lora_resize",
                          "--modality", "image", "--param", "rank=2", "--name", "one-r2", "--wait",
                          "--home", str(home)], capture_output=True, text=True, timeout=300,
                         env={**os.environ, **SINGLE_THREAD_ENV})
    assert out.returncode == 0, out.stderr[-2000:]
    printed = json.loads(out.stdout[out.stdout.rindex("{\n  \"adapter\""):])
    assert printed["adapter"] == "one-r2" and printed["checks"]["rank"] == 2
    server = server_factory(home)
    with server.client() as c:
        made = c.get("/api/adapters/image/one-r2").json()
        assert made["architecture"] == "sd15" and made["base_model"] == "models/image/tiny"
        roles = {(p["role"], p["artifact"]["name"]) for p in made["lineage"]["parents"]}
        assert roles == {("adapter", "one"), ("base_model", "tiny")}
        source = c.get("/api/adapters/image/one").json()
        assert [(e["name"], e["target"], e["adapter"]) for e in source["exports"]] == [("one-r2", "lora_resize", True)]
        taken = c.post("/api/exports", json={"modality": "image", "adapter": "one", "target": "lora_resize",
                                             "output_name": "one-r2", "params": {"rank": 1}})
        assert taken.status_code == 409 and taken.json()["error"]["code"] == "OUTPUT_EXISTS"
