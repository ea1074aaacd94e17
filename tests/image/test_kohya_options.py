"""What a kohya user expects (issue 17, items 9, 11-14): optimizers with optimizer_args, clip skip and long
captions in training, per-epoch files, restart / polynomial schedules, each saved in the ss_* metadata.

One short run (8 steps on two images) carries all of the options at once; the rest are unit checks of the
pieces it uses, so the file stays a few seconds.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import pytest

from lora_factory.kit import LoRAFactoryError
from tests.image.conftest import make_dataset, resolved, train_tiny


def a1111_metadata(path: Path) -> dict:
    """How A1111 reads a LoRA's metadata (``sd_models.read_metadata_from_safetensors``): the JSON header's
    ``__metadata__``, string values that look like JSON parsed."""
    with open(path, "rb") as fh:
        length = struct.unpack("<Q", fh.read(8))[0]
        header = json.loads(fh.read(length))
    out = {}
    for key, value in header.get("__metadata__", {}).items():
        if isinstance(value, str) and value[:1] == "{":
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass
        out[key] = value
    return out


def _params(n: int = 3):
    import torch

    return [torch.nn.Parameter(torch.randn(4, 4)) for _ in range(n)]


@pytest.mark.parametrize("name, args, path", [
    ("adamw", {"weight_decay": 0.1}, "torch.optim.adamw.AdamW(weight_decay=0.1)"),
    ("prodigy", {"d_coef": 2.0}, "prodigyopt.prodigy.Prodigy(d_coef=2.0)"),
    ("lion", {"betas": [0.95, 0.98]}, "lion_pytorch.lion_pytorch.Lion(betas=(0.95, 0.98))"),
    ("dadaptation", {}, "dadaptation.experimental.dadapt_adam_preprint.DAdaptAdamPreprint"),
    ("dadaptadam", {"decouple": True}, "dadaptation.dadapt_adam.DAdaptAdam(decouple=True)"),
    ("adafactor", {"relative_step": False, "scale_parameter": False},
     "transformers.optimization.Adafactor(relative_step=False,scale_parameter=False)"),
])
def test_optimizer_classes_and_args_are_kohyas(name, args, path):
    """The class sd-scripts picks for each --optimizer_type, given optimizer_args, named as ss_optimizer."""
    from lora_factory.plugins.image import optimizers

    opt, used = optimizers.build_optimizer(name, [{"params": _params(), "lr": 1.0}], 1.0, args, lambda m: None)
    assert optimizers.kohya_optimizer_field(opt, used["kwargs"]) == path
    for key, value in args.items():  # the arguments reached the optimizer
        assert opt.defaults[key] == (tuple(value) if isinstance(value, list) else value)


def test_adafactor_relative_step_uses_its_own_schedule_and_8bit_falls_back_on_cpu():
    from lora_factory.plugins.image import optimizers

    opt, used = optimizers.build_optimizer("adafactor", [{"params": _params(), "lr": 1e-3}], 1e-3, {}, print)
    scheduler, name = optimizers.build_scheduler("cosine", opt, warmup=0, total=10, num_cycles=1, power=1.0,
                                                 adafactor_lr=used["adafactor_lr"])
    assert opt.defaults["relative_step"] and opt.defaults["lr"] is None
    assert name == "adafactor:0.001" and type(scheduler).__name__ == "AdafactorSchedule"
    lines = []
    assert optimizers.resolve_name("lion8bit", "cpu", lines.append) == "lion" and "needs CUDA" in lines[0]
    assert optimizers.resolve_name("auto", "cpu", lines.append) == "adamw"


def test_missing_optimizer_package_is_a_422_naming_it(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "prodigyopt" else real(name, *a))
    with pytest.raises(LoRAFactoryError) as err:
        resolved({"optimizer": "Prodigy"})
    assert err.value.http_status == 422 and err.value.code == "OPTIMIZER_UNAVAILABLE"
    assert "pip install prodigyopt" in err.value.message_en and "prodigyopt" in err.value.message_ja
    assert resolved({"optimizer": "Lion"})["params"]["optimizer"] == "lion"  # kohya's spelling is accepted


def test_optimizer_args_take_kohyas_command_line_form_and_refuse_garbage():
    spec = resolved({"optimizer_args": "weight_decay=0.05 betas=(0.9, 0.99) use_bias_correction=True"})
    assert spec["params"]["optimizer_args"] == {"weight_decay": 0.05, "betas": [0.9, 0.99], "use_bias_correction": True}
    assert resolved({"optimizer_args": ["d_coef=2"]})["params"]["optimizer_args"] == {"d_coef": 2}
    with pytest.raises(LoRAFactoryError) as err:
        resolved({"optimizer_args": "d_coef"})
    assert err.value.http_status == 422 and "optimizer_args" in err.value.message_en
    # a number, and a value that overflows the literal parser, were TypeError / RecursionError: a 500
    for garbage in (-1, 1e308, 2**70, True, "x=" + "(" * 100_000):
        with pytest.raises(LoRAFactoryError) as err:
            resolved({"optimizer_args": garbage})
        assert err.value.http_status == 422 and "optimizer_args" in err.value.message_en, garbage


def _lrs(name: str, total: int, **kw) -> list[float]:
    from lora_factory.plugins.image import optimizers

    opt, _ = optimizers.build_optimizer("adamw", [{"params": _params(1), "lr": 1.0}], 1.0, {}, print)
    scheduler, label = optimizers.build_scheduler(name, opt, warmup=0, total=total, adafactor_lr=None,
                                                  **{"num_cycles": 1, "power": 1.0, **kw})
    assert label == name
    out = []
    for _ in range(total):
        out.append(scheduler.get_last_lr()[0])
        opt.step()
        scheduler.step()
    return out


def test_cosine_with_restarts_and_polynomial_power_shape_the_rates():
    restarts = _lrs("cosine_with_restarts", 8, num_cycles=2)
    assert restarts[0] == restarts[4] == 1.0 and restarts[3] < 0.2  # back at the top after half the steps
    assert _lrs("cosine", 8)[4] < 0.6  # plain cosine does not restart
    linear, squared = _lrs("polynomial", 10, power=1.0), _lrs("polynomial", 10, power=2.0)
    assert math.isclose(linear[5], 0.5, abs_tol=1e-3) and math.isclose(squared[5], 0.25, abs_tol=1e-3)


def test_clip_skip_in_training_encodes_as_generation_does(tiny_sd15):
    """Training and generation give the same embedding for clip skip 2 (and it is not clip skip 1's)."""
    import torch
    from diffusers import StableDiffusionPipeline

    from lora_factory.plugins.image.text_encoding import clip_skip_embeds, encode_prompts

    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd15, safety_checker=None, requires_safety_checker=False)
    with torch.no_grad():
        skip1, _ = encode_prompts(["mychar, red"], [pipe.tokenizer], [pipe.text_encoder], "cpu")
        skip2, _ = encode_prompts(["mychar, red"], [pipe.tokenizer], [pipe.text_encoder], "cpu", clip_skip=2)
    generated = clip_skip_embeds(pipe, "sd15", "mychar, red", "", 2, False)["prompt_embeds"]
    assert torch.allclose(skip2, generated, atol=1e-6)
    assert not torch.allclose(skip1, skip2, atol=1e-3)


def test_max_token_length_encodes_kohyas_chunks(tiny_sd15):
    """150 tokens: (1, 1 + 75 * 2 + 1, D), and words past token 75 change the embedding (cut at 75 without it)."""
    import torch
    from transformers import AutoTokenizer, CLIPTextModel

    from lora_factory.plugins.image.text_encoding import encode_prompts, token_count, tokenize_chunks

    tokenizer = AutoTokenizer.from_pretrained(tiny_sd15, subfolder="tokenizer")
    encoder = CLIPTextModel.from_pretrained(tiny_sd15, subfolder="text_encoder")
    head = "a" * 90
    assert token_count(tokenizer, head + "x") > 75
    ids = tokenize_chunks(tokenizer, [head + "x"], 150)
    assert ids.shape == (1, 2, 77) and int(ids[0, 1, 0]) == tokenizer.bos_token_id
    with torch.no_grad():
        a, _ = encode_prompts([head + "x"], [tokenizer], [encoder], "cpu", max_token_length=150)
        b, _ = encode_prompts([head + "y"], [tokenizer], [encoder], "cpu", max_token_length=150)
        cut_a, _ = encode_prompts([head + "x"], [tokenizer], [encoder], "cpu")
        cut_b, _ = encode_prompts([head + "y"], [tokenizer], [encoder], "cpu")
    assert a.shape[1] == 152 and cut_a.shape[1] == 77
    assert not torch.allclose(a, b) and torch.allclose(cut_a, cut_b)


@pytest.fixture(scope="module")
def kohya_run(tmp_path_factory, tiny_sd15):
    """Two images with long captions, 4 epochs of 2 steps: Prodigy with optimizer_args, restarts, clip skip 2,
    max_token_length 150, a file every epoch keeping the last 2, kohya sample prompts every 2 epochs."""
    root = make_dataset(tmp_path_factory.mktemp("kohya") / "chars", n=2, concept="1_mychar")
    for i, caption in enumerate(sorted((root / "1_mychar").glob("*.txt"))):
        caption.write_text(f"mychar, {'long tag ' * 22}{i}", encoding="utf-8")  # ~200 tokens: over 150
    params = {"max_steps": -1, "num_epochs": 4, "batch_size": 2, "optimizer": "Prodigy",
              "optimizer_args": {"d_coef": 2.0, "weight_decay": 0.01}, "learning_rate": 1.0,
              "lr_scheduler": "cosine_with_restarts", "lr_scheduler_num_cycles": 2, "clip_skip": 2,
              "max_token_length": 150, "save_every_n_epochs": 1, "save_last_n_epochs": 2,
              "sample_every_n_steps": 0, "sample_steps": 1, "save_precision": "fp32",
              "sample_every_n_epochs": 2, "sample_sampler": "k_euler_a",
              "sample_prompts": "# kohya prompt file\nmychar, red --n blue --w 32 --h 48 --s 2 --l 5 --d 7\nmychar"}
    result, ctx = train_tiny(tmp_path_factory.mktemp("ws"), tiny_sd15, root, params, "kohya_opts", "k1")
    return {"result": result, "ctx": ctx, "out": Path(ctx.output_dir)}


def test_run_writes_epoch_files_keeping_the_last_n(kohya_run):
    out, ctx = kohya_run["out"], kohya_run["ctx"]
    assert kohya_run["result"]["steps"] == 8
    names = sorted(p.name for p in out.glob("kohya_opts*.safetensors"))
    assert names == ["kohya_opts-000002.safetensors", "kohya_opts-000003.safetensors", "kohya_opts.safetensors"]
    assert [e["epoch"] for e in kohya_run["result"]["epoch_files"]] == [2, 3]
    meta2 = a1111_metadata(out / "kohya_opts-000002.safetensors")
    assert (meta2["ss_epoch"], meta2["ss_steps"], meta2["ss_num_epochs"]) == ("2", "4", "4")
    assert a1111_metadata(out / "kohya_opts.safetensors")["ss_epoch"] == "4"
    assert any("kohya_opts-000001.safetensors" in line for line in ctx.lines)  # written, then rotated out


def test_run_records_options_in_kohya_metadata(kohya_run):
    meta = a1111_metadata(kohya_run["out"] / "kohya_opts.safetensors")
    assert meta["ss_optimizer"] == "prodigyopt.prodigy.Prodigy(d_coef=2.0,weight_decay=0.01)"
    assert meta["ss_lr_scheduler"] == "cosine_with_restarts"
    assert meta["ss_clip_skip"] == "2" and meta["ss_max_token_length"] == "150"
    assert meta["ss_dataset_dirs"] == {"1_mychar": {"n_repeats": 1, "img_count": 2}}  # parsed as A1111 does


def test_run_says_when_captions_are_cut_and_restarts_its_rate(kohya_run):
    ctx = kohya_run["ctx"]
    assert any("longer than 150 tokens and are cut" in line for line in ctx.lines)
    lrs = [r["lr"] for r in ctx.records if "lr" in r]
    assert len(lrs) == 8 and lrs[3] > lrs[2]  # recorded after each step: the second cycle starts at step 4


def test_prompt_lines_take_kohyas_options():
    from lora_factory.plugins.image.sampling import parse_prompt_line

    assert parse_prompt_line("1girl, solo --n lowres, bad --w 512 --h 768 --s 28 --l 7.5 --d 1 --zz 3") == {
        "prompt": "1girl, solo", "negative_prompt": "lowres, bad", "width": 512, "height": 768, "steps": 28,
        "guidance_scale": 7.5, "seed": 1}
    assert parse_prompt_line("plain --w wide") == {"prompt": "plain"}  # malformed options are skipped, as kohya does
    # a seed torch cannot take (it crashed the run at its first sample) and a CFG that is not a number
    assert parse_prompt_line(f"x --d {2**70 + 5} --l nan") == {"prompt": "x", "seed": 5}
    assert parse_prompt_line("x --l inf --w 100000 --s 99999")["width"] == 4096
    assert resolved({"sample_prompts": "a\n# comment\n\nb --d 3"})["params"]["sample_prompts"] == ["a", "b --d 3"]


def test_samples_follow_each_prompt_lines_options_every_n_epochs(kohya_run):
    from PIL import Image

    from lora_factory.plugins.image.png_info import read_settings

    samples = kohya_run["ctx"].samples
    assert sorted({s["step"] for s in samples}) == [4, 8]  # epoch 2 and the end
    assert [s["caption"] for s in samples[:2]] == ["mychar, red", "mychar"]
    sample_dir = Path(kohya_run["ctx"].sample_dir)
    first = sample_dir / Path(samples[0]["file"]).name
    settings = read_settings(first)["settings"]
    assert Image.open(first).size == (32, 48)
    assert (settings["seed"], settings["steps"], settings["guidance_scale"], settings["negative_prompt"]) == (7, 2, 5.0, "blue")
    assert settings["scheduler"] == "euler_a"  # kohya's k_euler_a
    assert read_settings(sample_dir / Path(samples[1]["file"]).name)["settings"]["steps"] == 1  # the run's sample_steps


def test_reg_images_are_balanced_to_the_training_images_as_kohya_does():
    from types import SimpleNamespace

    from lora_factory.plugins.image.train_data import balance_reg_repeats, repeats_of

    reg = [SimpleNamespace(item=SimpleNamespace(repeats=1), extra={"reg": True}) for _ in range(2)]
    balance_reg_repeats(5, reg)
    assert [repeats_of(ex) for ex in reg] == [3, 2]


def test_prior_loss_weight_weights_each_images_loss(tiny_sd15):
    """The batch loss is the mean of each image's loss times its weight: [1, 0] + [0, 1] = [1, 1]."""
    import torch

    from lora_factory.plugins.image.presets import ImageTrainParams
    from lora_factory.plugins.image.train_parts import batch_loss, encode_text, load_parts

    params = ImageTrainParams(min_snr_gamma=None)
    parts = load_parts(tiny_sd15, "sd15", "cpu", "no", params, print)
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        cond = encode_text(parts, ["a", "b"], "cpu")
        losses = {w: float(batch_loss(parts, latents, cond, None, params, torch.Generator().manual_seed(1),
                                      sample_weights=torch.tensor(w)))
                  for w in ((1.0, 1.0), (1.0, 0.0), (0.0, 1.0), (1.0, 0.5))}
        plain = float(batch_loss(parts, latents, cond, None, params, torch.Generator().manual_seed(1)))
    assert math.isclose(losses[(1.0, 1.0)], plain, rel_tol=1e-5)
    assert math.isclose(losses[(1.0, 0.0)] + losses[(0.0, 1.0)], plain, rel_tol=1e-5)
    assert math.isclose(losses[(1.0, 0.5)], losses[(1.0, 0.0)] + 0.5 * losses[(0.0, 1.0)], rel_tol=1e-5)


def test_reg_dataset_run_shows_reg_images_and_records_them(tmp_path, tiny_sd15):
    home = tmp_path / "ws"
    train_root = make_dataset(tmp_path / "train", n=2, concept="1_mychar")
    make_dataset(home / "datasets" / "image" / "persons", n=2, captions=False, concept="1_person")
    params = {"max_steps": -1, "num_epochs": 1, "batch_size": 1, "reg_dataset": "persons", "prior_loss_weight": 0.5,
              "sample_every_n_steps": 0, "sample_steps": 1}
    result, ctx = train_tiny(home, tiny_sd15, train_root, params, "withreg", "r1")
    assert result["steps"] == 4 and result["reg_images"] == 2  # 2 training + 2 regularisation images per epoch
    meta = a1111_metadata(Path(ctx.output_dir) / "withreg.safetensors")
    assert (meta["ss_num_reg_images"], meta["ss_prior_loss_weight"], meta["ss_num_train_images"]) == ("2", "0.5", "2")
    assert meta["ss_reg_dataset_dirs"] == {"1_person": {"n_repeats": 1, "img_count": 2}}
    assert meta["ss_dataset_dirs"] == {"1_mychar": {"n_repeats": 1, "img_count": 2}}
    assert meta["ss_tag_frequency"].keys() == {"1_mychar"}  # tags of the training images only


def test_noise_and_loss_options_follow_sd_scripts_formulas():
    import torch

    from lora_factory.plugins.image import noise_loss
    from lora_factory.plugins.image.presets import ImageTrainParams

    pred, target = torch.tensor([[3.0, -0.05]]), torch.tensor([[0.0, 0.0]])
    c = torch.tensor([0.1])
    l1 = noise_loss.per_image_loss(pred, target, ImageTrainParams(loss_type="l1"), None)
    smooth = noise_loss.per_image_loss(pred, target, ImageTrainParams(loss_type="smooth_l1"), c)
    huber = noise_loss.per_image_loss(pred, target, ImageTrainParams(loss_type="huber"), c)
    expected = (2 * (math.sqrt(9 + 0.01) - 0.1) + 2 * (math.sqrt(0.0025 + 0.01) - 0.1)) / 2
    assert math.isclose(float(l1), 1.525, rel_tol=1e-6) and math.isclose(float(smooth), expected, rel_tol=1e-5)
    assert math.isclose(float(huber), 0.1 * expected, rel_tol=1e-5)

    class Sched:
        config = type("C", (), {"num_train_timesteps": 1000})()
        alphas_cumprod = torch.linspace(0.9999, 0.01, 1000)

    t = torch.tensor([0, 999])
    const = noise_loss.huber_c(ImageTrainParams(huber_schedule="constant", huber_c=0.2, huber_scale=2.0), t, Sched)
    expo = noise_loss.huber_c(ImageTrainParams(huber_schedule="exponential", huber_c=0.2), t, Sched)
    snr = noise_loss.huber_c(ImageTrainParams(huber_schedule="snr", huber_c=0.2), t, Sched)
    assert torch.allclose(const, torch.tensor([0.4, 0.4])) and math.isclose(float(expo[0]), 1.0) and float(expo[1]) < 0.21
    assert float(snr[0]) > 0.95 and float(snr[1]) < 0.3  # clean step ~1, noisy step toward huber_c
    noise = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    pyramid = noise_loss.pyramid_noise(noise.clone(), 6, 0.3, torch.Generator().manual_seed(1))
    assert math.isclose(float(pyramid.std()), 1.0, rel_tol=1e-4) and not torch.allclose(pyramid, noise)
    assert torch.allclose(pyramid, noise_loss.pyramid_noise(noise.clone(), 6, 0.3, torch.Generator().manual_seed(1)))
    latents = torch.ones(1, 4, 2, 2) * 3
    adaptive = noise_loss.offset_noise(latents, torch.zeros_like(latents),
                                       ImageTrainParams(noise_offset=0.1, adaptive_noise_scale=0.5),
                                       torch.Generator().manual_seed(2))
    plain = noise_loss.offset_noise(latents, torch.zeros_like(latents), ImageTrainParams(noise_offset=0.1),
                                    torch.Generator().manual_seed(2))
    assert torch.allclose(adaptive, plain * (0.1 + 0.5 * 3) / 0.1)  # the offset grows with |mean|


def test_noise_and_loss_options_change_the_batch_loss_and_the_metadata(tiny_sd15):
    import torch

    from lora_factory.plugins.image.export import kohya_metadata
    from lora_factory.plugins.image.presets import ImageTrainParams
    from lora_factory.plugins.image.train_parts import batch_loss, encode_text, load_parts

    def loss(**kw):
        params = ImageTrainParams(**kw)
        parts = load_parts(tiny_sd15, "sd15", "cpu", "no", params, print)
        latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            cond = encode_text(parts, ["a", "b"], "cpu")
            return float(batch_loss(parts, latents, cond, None, params, torch.Generator().manual_seed(1))), parts

    base, _ = loss()
    for option in ({"ip_noise_gamma": 0.1}, {"multires_noise_iterations": 6}, {"debiased_estimation_loss": True},
                   {"loss_type": "huber"}, {"noise_offset": 0.1, "adaptive_noise_scale": 0.5}):
        assert not math.isclose(loss(**option)[0], base, rel_tol=1e-6), option
    _, parts = loss(zero_terminal_snr=True, prediction_type="v_prediction")
    assert float(parts.noise_scheduler.alphas_cumprod[-1]) < 1e-6  # pure noise at the last step
    params = ImageTrainParams(multires_noise_iterations=6, ip_noise_gamma=0.1, debiased_estimation_loss=True,
                              zero_terminal_snr=True, loss_type="huber", adaptive_noise_scale=0.5).model_dump()
    meta = kohya_metadata(arch="sd15", output_name="x", params=params, resolution=(64, 64), tag_frequency={},
                          dataset_dirs={}, steps=1, epoch=1, num_images=1, bucket_info=None, base_model_name="b",
                          prediction_type="epsilon", started_at=0.0, trigger=None, batches_per_epoch=1)
    assert (meta["ss_multires_noise_iterations"], meta["ss_multires_noise_discount"], meta["ss_ip_noise_gamma"]) == ("6", "0.3", "0.1")
    assert (meta["ss_debiased_estimation"], meta["ss_zero_terminal_snr"], meta["ss_loss_type"]) == ("True", "True", "huber")
    assert (meta["ss_huber_schedule"], meta["ss_huber_c"], meta["ss_adaptive_noise_scale"]) == ("snr", "0.1", "0.5")


def test_caption_and_bucket_extras_as_kohya():
    import random

    from lora_factory.plugins.image.tags import augment_caption
    from lora_factory.plugins.image.train_data import no_upscale_bucket

    rng = random.Random(0)
    seen = {augment_caption("mychar, blue eyes ||| smile, hat, sky ||| masterpiece", rng, shuffle=True, keep_tokens=0,
                            dropout=0.0, separator="|||") for _ in range(20)}
    assert all(s.startswith("mychar, blue eyes, ") and s.endswith(", masterpiece") for s in seen) and len(seen) > 1
    assert no_upscale_bucket(100, 70, 64, 8) is None  # larger than 64 x 64: the usual bucket
    assert no_upscale_bucket(45, 30, 64, 8) == (40, 24)  # smaller: its own size, cut to the step


def test_caption_dropout_every_n_epochs_and_separator_reach_the_encoder(tmp_path, tiny_sd15, monkeypatch):
    from lora_factory.plugins.image import train_parts

    root = make_dataset(tmp_path / "data", n=2, concept="1_mychar")
    for caption in (root / "1_mychar").glob("*.txt"):
        caption.write_text("mychar ||| red, circle", encoding="utf-8")
    seen, real = [], train_parts.encode_text
    monkeypatch.setattr(train_parts, "encode_text", lambda parts, captions, device: seen.append(captions) or
                        real(parts, captions, device))
    params = {"max_steps": -1, "num_epochs": 2, "batch_size": 2, "caption_dropout_every_n_epochs": 2,
              "keep_tokens_separator": "|||", "shuffle_caption": True, "cache_text_encoder_outputs": False,
              "bucket_no_upscale": True, "color_aug": True, "sample_every_n_steps": 0, "sample_steps": 1}
    result, ctx = train_tiny(tmp_path / "ws", tiny_sd15, root, params, "extras", "e1")
    assert any("latents not cached: color_aug" in line for line in ctx.lines)
    assert result["steps"] == 4 and len(seen) == 4  # one image a batch (two buckets), two epochs
    assert [c[0].startswith("mychar, ") for c in seen[:2]] == [True, True] and seen[2:] == [[""], [""]]
    assert not any("|||" in c for batch in seen for c in batch)
    meta = a1111_metadata(Path(ctx.output_dir) / "extras.safetensors")
    assert (meta["ss_caption_dropout_every_n_epochs"], meta["ss_bucket_no_upscale"], meta["ss_color_aug"]) == \
        ("2", "True", "True")


def test_color_aug_shifts_the_hue_only():
    import random

    import numpy as np
    import torch
    from PIL import Image

    from lora_factory.plugins.image.train_data import color_aug

    pixels = torch.tensor([[[0.6]], [[-0.6]], [[-0.8]]]).expand(3, 4, 4).contiguous()  # a red
    shifted = [color_aug(pixels, random.Random(seed)) for seed in range(6)]
    assert any(not torch.allclose(s, pixels, atol=0.02) for s in shifted)

    def hsv(t):
        return np.asarray(Image.fromarray(((t.permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8))
                          .convert("HSV"), dtype=np.float32)[0, 0]

    for s in shifted:  # saturation and value stay (within rounding), the hue moves at most 8/180 of the circle
        a, b = hsv(pixels), hsv(s)
        assert abs(a[1] - b[1]) <= 3 and abs(a[2] - b[2]) <= 3
        assert min(abs(a[0] - b[0]), 256 - abs(a[0] - b[0])) <= 12


def test_training_vae_and_no_half_vae(tmp_path, tiny_sd15, image_dataset):
    """Another VAE (a copy of the base's with other weights) is the one that encodes the latents; its name is
    recorded as sd-scripts does; no_half_vae keeps the VAE in fp32 under bf16 (fp16 always does)."""
    import shutil

    import torch
    from diffusers import AutoencoderKL

    from lora_factory.plugins.image.presets import ImageTrainParams
    from lora_factory.plugins.image.train_parts import load_parts, vae_dtype_name

    assert (vae_dtype_name("bf16", False), vae_dtype_name("bf16", True), vae_dtype_name("fp16", False)) == \
        ("bf16", "fp32", "fp32")
    home = tmp_path / "ws"
    other = home / "models" / "image" / "vae" / "othervae"
    shutil.copytree(tiny_sd15 / "vae", other)
    vae = AutoencoderKL.from_pretrained(other)
    with torch.no_grad():
        vae.encoder.conv_in.weight.mul_(-1.0)
    vae.save_pretrained(other)
    parts = load_parts(tiny_sd15, "sd15", "cpu", "no", ImageTrainParams(), print, vae_path=other)
    assert torch.allclose(parts.vae.encoder.conv_in.weight, vae.encoder.conv_in.weight)
    _, ctx = train_tiny(home, tiny_sd15, image_dataset, {"max_steps": 1, "vae": "othervae", "no_half_vae": True,
                                                          "sample_every_n_steps": 0, "sample_steps": 1}, "withvae", "v1")
    assert any(line.startswith("vae=othervae") for line in ctx.lines)
    assert a1111_metadata(Path(ctx.output_dir) / "withvae.safetensors")["ss_vae_name"] == "othervae"
