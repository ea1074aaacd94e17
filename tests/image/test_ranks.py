"""One image job across two simulated devices (2 gloo ranks): the same loss curve as one process with the
per-device batch doubled (same seed, data, noise, kohya's regularisation images and caption dropout), latents and text-encoder outputs cached in shares, rank
0 alone writes, and the adapter loads in a plain diffusers pipeline. One 2-rank job (~40 s on a quiet
2-core machine: three Python processes import torch and diffusers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.image.conftest import make_dataset, train_tiny
from tests.ranks_support import JobRunner, copy_into

PARAMS = {"max_steps": 3, "rank": 4, "alpha": 4, "learning_rate": 5e-3, "grad_accum": 2, "cache_latents": True,
          "flip_aug": True, "sample_every_n_steps": 0, "sample_steps": 1, "save_every_n_steps": 2,
          "mixed_precision": "no", "save_precision": "fp32",
          # kohya's options hold under N ranks too: regularisation images and their loss weight, caption dropout,
          # offset and pyramid noise are drawn for the global batch and each rank takes its rows
          "reg_dataset": "persons", "prior_loss_weight": 0.5, "caption_dropout_rate": 0.3, "noise_offset": 0.05,
          "multires_noise_iterations": 2}


def test_two_ranks_match_one_rank_with_the_doubled_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         tiny_sd15: Path, image_dataset: Path, request: pytest.FixtureRequest) -> None:
    import torch
    from diffusers import StableDiffusionPipeline

    home = tmp_path / "ws"
    runner = JobRunner(home, monkeypatch)
    request.addfinalizer(runner.close)
    base = copy_into(home, tiny_sd15, "image", "models")
    dataset = copy_into(home, image_dataset, "image", "datasets")
    for root in (home, tmp_path / "ref"):
        make_dataset(root / "datasets" / "image" / "persons", n=2, captions=False, concept="1_person")
    job = runner.run("image", base, dataset, {**PARAMS, "batch_size": 1}, "two", "cpu:0,cpu:1")
    assert job["status"] == "completed", job["error"]
    two = runner.losses(job["id"])

    _, ctx = train_tiny(tmp_path / "ref", tiny_sd15, image_dataset, {**PARAMS, "batch_size": 2}, "one", "one")
    one = [(r["step"], r["loss"]) for r in ctx.records]
    assert [s for s, _ in two] == [s for s, _ in one] == [1, 2, 3]
    assert [loss for _, loss in two] == pytest.approx([loss for _, loss in one], rel=1e-4)
    assert job["result"]["distributed"]["effective_batch"] == 1 * 2 * 2
    assert job["result"]["reg_images"] == 2
    log = runner.log(job)
    assert "encoded by rank 0 of 2" in log and "encoded by rank 1 of 2" in runner.log(job, 1)

    pipe = StableDiffusionPipeline.from_pretrained(str(tiny_sd15), safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    before = pipe("mychar", num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np").images
    pipe.load_lora_weights(str(home / "lora_adapters" / "image" / "two"))
    after = pipe("mychar", num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np").images
    assert abs(before - after).max() > 0


# kohya's options under N ranks, in one process: each rank's share of a global batch, weighted as the loop
# weighs it (``dist.share_weight``, then DDP's average), must give the whole batch's loss and inputs.
KOHYA_LOSS_OPTIONS = [
    {},
    {"noise_offset": 0.05, "multires_noise_iterations": 2, "multires_noise_discount": 0.3, "ip_noise_gamma": 0.1},
    {"loss_type": "huber", "huber_schedule": "snr", "min_snr_gamma": 5.0, "debiased_estimation_loss": True},
    {"noise_offset": 0.05, "adaptive_noise_scale": 0.01, "loss_type": "smooth_l1"},
]


@pytest.mark.parametrize("options", KOHYA_LOSS_OPTIONS, ids=["plain", "noise", "loss", "adaptive"])
@pytest.mark.parametrize("size", [4, 3])
def test_rank_shares_of_kohya_losses_add_up_to_the_whole_batch(tiny_sd15: Path, options: dict, size: int) -> None:
    """Noise, offsets, pyramid noise, timesteps and reg weights are drawn for the global batch on every rank,
    so the DDP average of the ranks' weighted losses is the loss of one process with the whole batch."""
    import torch

    from lora_factory.kit import dist
    from lora_factory.plugins.image.presets import ImageTrainParams
    from lora_factory.plugins.image.train_parts import batch_loss, encode_text, load_parts

    params = ImageTrainParams(**{"min_snr_gamma": None, **options})
    parts = _parts(tiny_sd15, params, load_parts)
    latents = torch.randn(size, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    weights = torch.tensor([1.0, 0.5, 1.0, 0.5][:size])  # two regularisation images at prior_loss_weight 0.5
    with torch.no_grad():
        cond = encode_text(parts, [f"c{i}" for i in range(size)], "cpu")
        whole = float(batch_loss(parts, latents, cond, None, params, torch.Generator().manual_seed(1),
                                 sample_weights=weights))
        ranks = []
        for rank in range(2):
            _, rows, _ = dist.batch_share(list(range(size)), rank, 2)
            share_cond = {k: v[rows] for k, v in cond.items() if v is not None}
            loss = batch_loss(parts, latents[rows], share_cond, None, params, torch.Generator().manual_seed(1),
                              sample_weights=weights[rows], share=(rows, size))
            ranks.append(float(loss) * dist.share_weight(rows.stop - rows.start, size, 2))
    assert sum(ranks) / 2 == pytest.approx(whole, rel=1e-5)


_PARTS: dict[str, object] = {}


def _parts(base: Path, params: object, load_parts: object) -> object:
    if str(base) not in _PARTS:  # one tiny pipeline for the module's in-process checks
        _PARTS[str(base)] = load_parts(base, "sd15", "cpu", "no", params, print)  # type: ignore[operator]
    return _PARTS[str(base)]


def test_rank_shares_of_a_batchs_inputs_are_the_whole_batchs_rows(tiny_sd15: Path, image_dataset: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Flips, caption dropout (rate and every-n-epochs), colour shifts, the VAE draw of uncached latents and the
    regularisation weights of a whole batch are drawn on every rank in the same order: each rank's inputs are
    exactly its rows of one process's."""
    import random
    from types import SimpleNamespace

    import torch

    from lora_factory.kit import dist
    from lora_factory.plugins.image.dataset import load_items
    from lora_factory.plugins.image.presets import ImageTrainParams
    from lora_factory.plugins.image.train import ImageTrainingRun
    from lora_factory.plugins.image.train_data import bucket_set, prepare_examples
    from lora_factory.plugins.image.train_parts import load_parts

    params = ImageTrainParams(flip_aug=True, color_aug=True, caption_dropout_rate=0.5, caption_tag_dropout_rate=0.3,
                              caption_dropout_every_n_epochs=3, prior_loss_weight=0.25, min_snr_gamma=None)
    parts = _parts(tiny_sd15, params, load_parts)
    monkeypatch.setattr(dist, "is_distributed", lambda: True)  # the draws of a 2-rank job, in this process
    items = load_items(image_dataset)
    buckets = bucket_set(64, 64, False, None, None)
    examples = prepare_examples(items, buckets, False, 0)
    examples += prepare_examples(items, buckets, False, 0, first_index=len(examples), reg=True)
    batch = [0, len(items), 1, len(items) + 1, 2][: min(5, len(examples))]

    def run_of() -> SimpleNamespace:
        run = SimpleNamespace(params=params, examples=examples, rng=random.Random(7), parts=parts, text_cache={},
                              reg_items=items, device="cpu", batch_weights=None)
        return run

    for epoch in (0, 2):  # epoch 3 (index 2) drops every caption
        whole_run = run_of()
        torch.manual_seed(0)
        whole = ImageTrainingRun.batch_inputs(whole_run, batch, epoch)  # type: ignore[arg-type]
        for rank in range(2):
            _, rows, _ = dist.batch_share(batch, rank, 2)
            share_run = run_of()
            torch.manual_seed(123 + rank)  # another global RNG state: nothing may depend on it
            latents, cond, _ = ImageTrainingRun.batch_inputs(share_run, batch, epoch, rows)  # type: ignore[arg-type]
            assert torch.allclose(latents, whole[0][rows], atol=1e-6)
            assert torch.allclose(cond["prompt_embeds"], whole[1]["prompt_embeds"][rows], atol=1e-6)
            assert torch.equal(share_run.batch_weights, whole_run.batch_weights[rows])
            assert share_run.rng.getstate() == whole_run.rng.getstate()
    assert set(whole_run.batch_weights.tolist()) == {1.0, 0.25}
