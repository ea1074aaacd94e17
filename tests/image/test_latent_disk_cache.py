"""kohya's ``--cache_latents_to_disk`` (issue 17, item 20): latents written to a cache folder in the workspace
(never into the dataset), keyed by the image's content, the VAE and the bucket / crop / flip; the next run on the
same data encodes nothing and gets the same loss; a changed image or setting is encoded again."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.image.conftest import make_dataset, train_tiny, write_image


def test_keys_change_with_every_input(tmp_path):
    from lora_factory.plugins.image import latent_cache

    vae = tmp_path / "vae"
    vae.mkdir()
    (vae / "config.json").write_text('{"scaling_factor": 0.18215}', encoding="utf-8")
    (vae / "diffusion_pytorch_model.safetensors").write_bytes(b"x" * 10)
    vae_id = latent_cache.vae_identity(vae, "fp32")
    assert latent_cache.vae_identity(vae, "bf16") != vae_id
    base = latent_cache.example_key("sha", vae_id, (64, 96), (0, 0), False)
    assert base == latent_cache.example_key("sha", vae_id, (64, 96), (0, 0), False)
    others = [latent_cache.example_key("sha2", vae_id, (64, 96), (0, 0), False),
              latent_cache.example_key("sha", vae_id, (96, 64), (0, 0), False),
              latent_cache.example_key("sha", vae_id, (64, 96), (8, 0), False),
              latent_cache.example_key("sha", vae_id, (64, 96), (0, 0), True)]
    (vae / "config.json").write_text('{"scaling_factor": 0.13025}', encoding="utf-8")
    others.append(latent_cache.example_key("sha", latent_cache.vae_identity(vae, "fp32"), (64, 96), (0, 0), False))
    assert base not in others and len(set(others)) == len(others)


def test_second_run_reads_the_latents_and_gets_the_same_loss(tmp_path, tiny_sd15, monkeypatch):
    """Three 1-step runs on two images (~30 s on a quiet machine)."""
    from lora_factory.plugins.image import latent_cache, train_parts

    root = make_dataset(tmp_path / "chars", n=2, concept="1_mychar")
    before = sorted(p.name for p in root.rglob("*"))
    home = tmp_path / "ws"
    params = {"cache_latents_to_disk": True, "flip_aug": True, "max_steps": 1, "batch_size": 2, "rank": 4,
              "sample_every_n_steps": 0, "sample_steps": 1, "save_precision": "fp32"}
    first, ctx = train_tiny(home, tiny_sd15, root, params, "d1", "j1")
    folder = latent_cache.cache_folder(home)
    assert len(list(folder.glob("*.safetensors"))) == 4  # two images and their flipped copies
    assert any("latents on disk: 0 read, 4 encoded" in line for line in ctx.lines), ctx.lines
    assert sorted(p.name for p in root.rglob("*")) == before  # nothing written into the dataset

    real = train_parts.encode_latents

    def no_encoding(*args, **kwargs):
        raise AssertionError("the second run encoded an image")

    monkeypatch.setattr(train_parts, "encode_latents", no_encoding)
    second, ctx = train_tiny(home, tiny_sd15, root, params, "d2", "j2")
    assert any("latents on disk: 4 read, 0 encoded" in line for line in ctx.lines), ctx.lines
    assert second["first_loss"] == pytest.approx(first["first_loss"], abs=0)
    assert second["final_loss"] == pytest.approx(first["final_loss"], abs=0)

    monkeypatch.setattr(train_parts, "encode_latents", real)
    image = next(Path(root).rglob("img00.png"))
    write_image(image, (64, 96), (10, 200, 10), mark=7)  # the same file name, another picture
    _, ctx = train_tiny(home, tiny_sd15, root, params, "d3", "j3")
    assert any("latents on disk: 2 read, 2 encoded" in line for line in ctx.lines), ctx.lines
