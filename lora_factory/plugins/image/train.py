"""An image LoRA training run (a ``train`` job, in the worker process).

The loop is diffusers' ``train_text_to_image_lora`` recipe written out (so bucketing, caching,
samples and cancel fit in) on an ``accelerate.Accelerator`` as that script is (mixed precision,
gradient scaling and clipping, device placement: see :mod:`lora_factory.kit.loop`), with kohya's data
behaviour: repeats, aspect-ratio buckets,
caption shuffling with the first N tags kept, caption dropout. Progress, checkpoints and cancel go
through the kit's :class:`StepReporter`; outputs are written by :mod:`train_outputs`.
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path
from typing import Any

from lora_factory.kit import LoRAFactoryError, devices, dist, presets, trainer
from lora_factory.plugins.image.dataset import load_items
from lora_factory.plugins.image.model_info import detect_folder_arch
from lora_factory.plugins.image.presets import ImageTrainParams
from lora_factory.plugins.image.tags import augment_caption


class ImageTrainingRun:
    """One run: models, examples, optimizer, then :meth:`run` (see the module docstring)."""

    def __init__(self, spec: dict[str, Any], ctx: Any) -> None:
        self.spec, self.ctx = spec, ctx
        self.params: ImageTrainParams = presets.validate_params(ImageTrainParams, spec.get("params") or {})
        self.base = Path(str(spec.get("base_model", "")))
        self.dataset = Path(str(spec.get("dataset", "")))
        self.arch = detect_folder_arch(self.base)
        if self.arch not in ("sd15", "sd2", "sdxl", "flux"):
            raise LoRAFactoryError(
                "MODEL_INVALID", f"ベースモデル「{self.base.name}」は学習できる画像モデルではありません(SD1.5 / SDXL / Flux)。",
                f"The base model '{self.base.name}' is not a trainable image pipeline (SD1.5 / SDXL / Flux).", 422,
                detail={"field": "base_model", "architecture": self.arch})
        if self.arch == "flux" and self.params.network_type != "lora":
            raise LoRAFactoryError(
                "INVALID_TRAIN_PARAMS", f"Flux では network_type「{self.params.network_type}」は使えません(lora のみ)。",
                f"network_type '{self.params.network_type}' is not available for Flux (lora only).", 422,
                detail={"field": "network_type"})
        if self.arch == "flux" and self.params.dora:  # the Flux file is diffusers-keyed: no dora_scale to write
            raise LoRAFactoryError(
                "INVALID_TRAIN_PARAMS", "Flux では DoRA (dora) は使えません。",
                "DoRA (dora) is not available for Flux.", 422, detail={"field": "dora"})
        self.device = devices.pick_device()
        self.started_at = time.time()
        self.rng = random.Random(self.params.seed)
        self.sample_paths: list[Path] = []
        self.history: list[dict[str, Any]] = []

    # -- set-up -----------------------------------------------------------------------------------
    def setup(self) -> None:
        import torch

        from lora_factory.plugins.image import train_parts
        from lora_factory.plugins.image.train_data import bucket_set, prepare_examples

        p, log = self.params, self.ctx.log
        torch.manual_seed(p.seed)
        if self.arch == "flux" and not devices.cuda_available() and p.quantize_base == "nf4":
            log("Flux QLoRA (nf4) は CUDA が必要です。CPU では量子化なしで学習します / nf4 needs CUDA: unquantized on CPU")
        self.precision = train_parts.resolve_precision(p.mixed_precision, self.device)
        self.items = load_items(self.dataset)
        log(f"base={self.base.name} arch={self.arch} device={self.device} precision={self.precision} "
            f"images={len(self.items)} preset={self.spec.get('preset')}")
        self.vae_path = None
        if p.vae:  # another VAE for training (sdxl-vae-fp16-fix ...), resolved inside models/image/vae/
            ref = p.vae if "/" in p.vae or "\\" in p.vae else f"models/image/vae/{p.vae}"
            self.vae_path = Path(self.ctx.workspace.resolve_ref(ref, "models", "image"))
            log(f"vae={self.vae_path.name} ({train_parts.vae_dtype_name(self.precision, p.no_half_vae)})")
        self.parts = train_parts.load_parts(self.base, self.arch, self.device, self.precision, p, log,
                                            vae_path=self.vae_path)
        self.resolution = p.resolution or self.parts.native_resolution
        step = p.bucket_reso_steps or self.parts.bucket_step
        if step % self.parts.bucket_step:
            step = max(self.parts.bucket_step, step // self.parts.bucket_step * self.parts.bucket_step)
        self.bucket_step = step
        self.buckets = bucket_set(self.resolution, step, p.enable_bucket, p.min_bucket_reso, p.max_bucket_reso)
        no_upscale = (self.resolution, step) if p.bucket_no_upscale and p.enable_bucket else None
        self.examples = prepare_examples(self.items, self.buckets, p.random_crop, p.seed, no_upscale=no_upscale)
        self.reg_items = []
        if p.reg_dataset:  # kohya's regularisation images: balanced to the training images, own loss weight
            from lora_factory.plugins.image.train_data import balance_reg_repeats

            self.reg_dir = Path(self.ctx.workspace.resolve_ref(p.reg_dataset, "datasets", "image"))
            self.reg_items = load_items(self.reg_dir)
            reg = prepare_examples(self.reg_items, self.buckets, p.random_crop, p.seed, first_index=len(self.examples),
                                   reg=True, no_upscale=no_upscale)
            balance_reg_repeats(sum(ex.item.repeats for ex in self.examples), reg)
            self.examples += reg
            log(f"regularisation images={len(reg)} ({self.reg_dir.name}) shown {sum(ex.extra['repeats'] for ex in reg)} "
                f"times per epoch, prior_loss_weight={p.prior_loss_weight}")
        used = sorted({ex.bucket for ex in self.examples})
        log(f"resolution={self.resolution} buckets={len(self.buckets)} used={', '.join(f'{w}x{h}' for w, h in used)}")
        self._check_caption_length()
        self.trainable = train_parts.add_lora(self.parts, p)
        if p.network_weights:
            from lora_factory.plugins.image.network_weights import load_network_weights, resolve_weights_file

            load_network_weights(self.trainable, resolve_weights_file(self.ctx.workspace, p.network_weights), log)
        self._cache_latents()
        self._cache_text()
        self._make_optimizer()
        self._prepare()

    def _check_caption_length(self) -> None:
        """Say how many captions the CLIP limit cuts (75 tokens, or ``max_token_length``): kohya cuts silently."""
        from lora_factory.plugins.image.text_encoding import token_count

        if self.arch == "flux":
            return
        limit = self.params.max_token_length or 75
        tokenizer = self.parts.tokenizers[0]
        lengths = {c: token_count(tokenizer, c) for c in {ex.item.caption for ex in self.examples} if c}
        over = [n for n in lengths.values() if n > limit]
        if over:
            hint = " max_token_length 150 / 225 で長く使えます / max_token_length 150 / 225 keeps more" if limit < 225 else ""
            self.ctx.log(f"{len(over)} 件のキャプションが {limit} トークンを超え、切り詰められます (最長 {max(over)}) / "
                         f"{len(over)} captions are longer than {limit} tokens and are cut (longest {max(over)}).{hint}")

    def _cache_latents(self) -> None:
        """Each rank encodes every N-th image (kohya's split), then the ranks pool their shares. Each image
        draws from its own generator, so the cache holds the same latents whatever the number of ranks. With
        ``cache_latents_to_disk`` each rank reads its share from the disk cache first (and writes what it
        encodes there)."""
        import torch

        if not (self.params.cache_latents or self.params.cache_latents_to_disk):
            return
        if self.params.color_aug:  # each step sees other colours: nothing to cache (sd-scripts refuses the pair)
            self.ctx.log("color_aug のため潜在表現をキャッシュしません / latents not cached: color_aug changes the pixels")
            return
        disk = self._latent_disk_cache()
        rank, world = dist.rank(), dist.world_size()
        mine: dict[int, tuple[Any, Any]] = {}
        for ex in self.examples[rank::world]:
            generator = torch.Generator().manual_seed(self.params.seed * 1_000_003 + ex.index)
            latents = self._latents_of(ex, False, disk, generator)
            flipped = self._latents_of(ex, True, disk, generator) if self.params.flip_aug else None
            mine[ex.index] = (latents, flipped)
        pooled: dict[int, tuple[Any, Any]] = {}
        for share in dist.gather_objects(mine):
            pooled.update(share)
        for ex in self.examples:
            ex.latents, ex.latents_flipped = pooled[ex.index]
            ex.pixels = None
        self.ctx.log(f"cached latents of {len(self.examples)} images"
                     + (f" ({len(mine)} encoded by rank {rank} of {world})" if world > 1 else ""))
        if disk:
            self.ctx.log(f"latents on disk: {disk.hits} read, {disk.encoded} encoded ({disk.folder})")

    def _latents_of(self, ex: Any, flipped: bool, disk: Any, *generator: Any) -> Any:
        """One example's latents (its flipped copy): read from the disk cache when it has them, else encoded
        (with the draw's own ``generator`` when one is given)."""
        from lora_factory.plugins.image import train_parts

        def encode() -> Any:
            pixels = ex.pixels.flip(-1) if flipped else ex.pixels
            return train_parts.encode_latents(self.parts, pixels[None], *generator)[0].cpu()

        return disk.get(ex, flipped, encode) if disk else encode()

    def _latent_disk_cache(self) -> Any:
        """kohya's ``cache_latents_to_disk``, in the workspace keyed by image, VAE and bucket (see latent_cache)."""
        if not self.params.cache_latents_to_disk:
            return None
        from lora_factory.plugins.image.latent_cache import LatentDiskCache
        from lora_factory.plugins.image.train_parts import vae_dtype_name

        source = self.vae_path or self.base / "vae"
        return LatentDiskCache(Path(self.ctx.workspace.home), source, vae_dtype_name(self.precision, self.params.no_half_vae))

    def captions_vary(self) -> bool:
        p = self.params
        return (p.shuffle_caption or p.caption_tag_dropout_rate > 0 or p.train_text_encoder
                or bool(p.keep_tokens_separator))

    def _cache_text(self) -> None:
        """Text-encoder outputs per distinct caption (and the sample prompts), when captions are fixed."""
        import torch

        from lora_factory.plugins.image.train_parts import encode_text

        self.text_cache: dict[str, dict[str, Any]] = {}
        p = self.params
        prompts = self.sample_prompts()
        if not p.cache_text_encoder_outputs or self.captions_vary():
            if p.cache_text_encoder_outputs:
                self.ctx.log("テキスト出力のキャッシュは使いません(タグのシャッフルまたはテキストエンコーダー学習のため) / "
                             "text-encoder outputs not cached: captions change between steps or the encoder trains")
            return
        from lora_factory.plugins.image.sampling import parse_prompt_line

        texts = {t for line in prompts for t in (parse_prompt_line(line)["prompt"],
                                                 parse_prompt_line(line).get("negative_prompt", ""))}
        wanted = sorted({ex.item.caption for ex in self.examples} | texts | {""})
        rank, world = dist.rank(), dist.world_size()
        mine: dict[str, dict[str, Any]] = {}
        with torch.no_grad():  # several ranks: each encodes every N-th caption, then they pool them
            for caption in wanted[rank::world]:
                cond = encode_text(self.parts, [caption], self.device)
                mine[caption] = {k: v.detach().cpu() for k, v in cond.items() if v is not None}
        for share in dist.gather_objects(mine):
            for caption, cond in share.items():
                self.text_cache[caption] = {k: v.to(self.device) for k, v in cond.items()}
        self.ctx.log(f"cached text-encoder outputs of {len(wanted)} captions")
        if self.device == "cuda":  # the encoders are not needed on the GPU any more
            for encoder in self.parts.text_encoders:
                encoder.to("cpu")
            devices.empty_cache()

    @property
    def train_examples(self) -> list[Any]:
        """The training images' examples (not the regularisation images')."""
        return [ex for ex in self.examples if not ex.extra.get("reg")]

    def sample_prompts(self) -> list[str]:
        if self.params.sample_prompts:
            return list(self.params.sample_prompts)
        seen: list[str] = []
        for ex in self.train_examples:
            if ex.item.caption and ex.item.caption not in seen:
                seen.append(ex.item.caption)
        return seen[:2] or ["a picture"]

    def _make_optimizer(self) -> None:
        from lora_factory.plugins.image import optimizers
        from lora_factory.plugins.image.train_data import plan_epoch

        p = self.params
        groups = []
        for name, module in self.trainable.items():
            lora = [q for q in module.parameters() if q.requires_grad]
            lr = p.learning_rate if not name.startswith("text_encoder") else (p.text_encoder_lr or p.learning_rate / 2)
            groups.append({"params": lora, "lr": lr})
        self.lora_params = [q for g in groups for q in g["params"]]
        self.optimizer_name = optimizers.resolve_name(p.optimizer, self.device, self.ctx.log)
        self.optimizer, used = optimizers.build_optimizer(self.optimizer_name, groups, p.learning_rate,
                                                          p.optimizer_args, self.ctx.log)
        self.optimizer_kwargs = used["kwargs"]
        # several ranks: batches are planned for all of them (per device x devices) and each trains its
        # share, so the plan, the steps and the buckets are those of one process with the N-fold batch
        self.global_batch = p.batch_size * dist.world_size()
        self.batches_per_epoch = len(plan_epoch(self.examples, self.global_batch, p.seed, 0))
        steps_per_epoch = max(1, math.ceil(self.batches_per_epoch / p.grad_accum))
        self.max_steps = p.max_steps if p.max_steps > 0 else p.num_epochs * steps_per_epoch
        self.steps_per_epoch = steps_per_epoch
        self.num_epochs = math.ceil(self.max_steps / steps_per_epoch)
        self.lr_scheduler, self.scheduler_name = optimizers.build_scheduler(
            p.lr_scheduler, self.optimizer, warmup=p.lr_warmup_steps, total=self.max_steps,
            num_cycles=p.lr_scheduler_num_cycles, power=p.lr_scheduler_power, adafactor_lr=used["adafactor_lr"])
        self.ctx.log(f"optimizer={self.optimizer_name} {optimizers.kohya_optimizer_field(self.optimizer, self.optimizer_kwargs)} "
                     f"scheduler={self.scheduler_name} steps={self.max_steps} ({steps_per_epoch} per epoch, "
                     f"batch {p.batch_size} x {dist.world_size()} devices x accum {p.grad_accum}) "
                     f"trainable={sum(q.numel() for q in self.lora_params)}")

    def _prepare(self) -> None:
        """The trainable modules, optimizer, batch loader and scheduler onto an ``accelerate.Accelerator``
        (mixed precision and, under fp16, its gradient scaler come from it). The modules are already on
        their device: the loaders put them there, a 4-bit base must not be moved."""
        from lora_factory.kit import loop
        from lora_factory.plugins.image.train_data import plan_epoch

        p = self.params
        self.accelerator = loop.make_accelerator(self.device, self.precision)
        self.batches = loop.PlannedBatches(
            lambda epoch: plan_epoch(self.examples, self.global_batch, p.seed, epoch), self.global_batch)
        names = list(self.trainable)
        # the loader yields global batches of indices on every rank (not sharded by accelerate): each rank
        # takes its rows in the loop, where the noise of the whole batch is drawn
        self.loader = loop.data_loader(range(len(self.examples)), self.batches)
        *modules, self.optimizer, self.lr_scheduler = self.accelerator.prepare(
            *self.trainable.values(), self.optimizer, self.lr_scheduler,
            device_placement=[False] * len(names) + [True, True])
        modules = [loop.without_ddp(self.accelerator, module) for module in modules]  # synced in the loop
        self.trainable = dict(zip(names, modules, strict=True))
        self.parts.trainable = self.trainable
        self.parts.denoiser = self.trainable[self.parts.denoiser_name]
        for i, name in enumerate(("text_encoder", "text_encoder_2")):
            if name in self.trainable:
                self.parts.text_encoders[i] = self.trainable[name]
        self.scaler = self.accelerator.scaler  # saved in checkpoints (None unless fp16)

    # -- data -------------------------------------------------------------------------------------
    def micro_batches(self, start_step: int) -> Any:
        """(epoch, batch indices) forever, skipping what ``start_step`` optimizer steps consumed."""
        from lora_factory.kit import loop

        return loop.micro_batches(self.loader, self.batches, skip=start_step * self.params.grad_accum)

    def batch_inputs(self, batch: list[int], epoch: int = 0, rows: slice | None = None) -> tuple[Any, dict[str, Any], Any]:
        """Latents, conditioning, SDXL time ids (and ``batch_weights``) of one micro-batch.

        ``rows``: this rank's share of it. Every random choice of the whole batch (flips, caption changes,
        colour shifts, the VAE draw of uncached latents) is drawn on every rank in the same order, so N ranks
        see the numbers of one process training the whole batch."""
        import torch

        from lora_factory.plugins.image.text_encoding import sdxl_time_ids
        from lora_factory.plugins.image.train_data import color_aug, draw_hue_shift
        from lora_factory.plugins.image.train_parts import encode_latents, encode_text

        p = self.params
        latents, captions, time_ids, kept = [], [], [], []
        keep = set(range(len(batch))[rows] if rows is not None else range(len(batch)))
        no_caption = bool(p.caption_dropout_every_n_epochs) and (epoch + 1) % p.caption_dropout_every_n_epochs == 0
        for position, index in enumerate(batch):
            ex = self.examples[index]
            flip = p.flip_aug and self.rng.random() < 0.5
            hue = draw_hue_shift(self.rng) if ex.latents is None and p.color_aug else None
            # several ranks: each uncached image's VAE draw from its own seed, drawn for the whole batch
            # (one process keeps the global RNG, as diffusers' script does)
            vae_seed = self.rng.getrandbits(63) if ex.latents is None and dist.is_distributed() else None
            caption = "" if no_caption else augment_caption(
                ex.item.caption, self.rng, shuffle=p.shuffle_caption, keep_tokens=p.keep_tokens,
                dropout=p.caption_dropout_rate, tag_dropout=p.caption_tag_dropout_rate,
                separator=p.keep_tokens_separator)
            if position not in keep:
                continue
            kept.append(index)
            if ex.latents is not None:
                latents.append(ex.latents_flipped if flip else ex.latents)
            else:
                pixels = ex.pixels.flip(-1) if flip else ex.pixels
                if hue is not None:
                    pixels = color_aug(pixels, shift=hue)
                generator = torch.Generator().manual_seed(vae_seed) if vae_seed is not None else None
                latents.append(encode_latents(self.parts, pixels[None], generator)[0].cpu())
            captions.append(caption)
            height, width = ex.bucket[1], ex.bucket[0]
            time_ids.append(sdxl_time_ids(ex.original_size, ex.crop_top_left, (height, width)))
        latent_batch = torch.stack(latents).to(self.device)
        if self.text_cache and all(c in self.text_cache for c in captions):
            cond = {k: torch.cat([self.text_cache[c][k] for c in captions]) for k in self.text_cache[captions[0]]}
            if "text_ids" in cond:
                cond["text_ids"] = self.text_cache[captions[0]]["text_ids"]
        else:
            with torch.set_grad_enabled(p.train_text_encoder):
                cond = encode_text(self.parts, captions, self.device)
        ids = torch.tensor(time_ids, dtype=latent_batch.dtype, device=self.device)
        self.batch_weights = None
        if self.reg_items:  # kohya: the regularisation images' loss times prior_loss_weight
            self.batch_weights = torch.tensor([p.prior_loss_weight if self.examples[i].extra.get("reg") else 1.0
                                               for i in kept], device=self.device)
        return latent_batch, cond, ids

    # -- loop -------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        import torch

        from lora_factory.kit import loop
        from lora_factory.plugins.image import train_outputs
        from lora_factory.plugins.image.train_parts import batch_loss

        p, ctx, accelerator = self.params, self.ctx, self.accelerator
        main = accelerator.is_main_process
        reporter = trainer.StepReporter(ctx, self.max_steps, save_every=p.save_every_n_steps,
                                        save_fn=lambda folder: train_outputs.save_checkpoint(self, folder))
        start = reporter.resume_step()
        if start:
            train_outputs.load_checkpoint(self, Path(ctx.resume_checkpoint))
            ctx.log(f"resume from step {start}")
        generator = torch.Generator().manual_seed(p.seed + start)
        batches = self.micro_batches(start)
        t0, step, epoch, stopped = time.perf_counter(), start, 0, False
        first_loss = last_loss = None
        while step < self.max_steps:
            total = 0.0
            for _ in range(p.grad_accum):
                epoch, batch = next(batches)
                _, rows, empty = dist.batch_share(batch)  # one process: the whole batch, weight 1
                latents, cond, time_ids = self.batch_inputs(batch, epoch, rows)
                weight = 0.0 if empty else dist.share_weight(rows.stop - rows.start, len(batch))
                loss = batch_loss(self.parts, latents, cond, time_ids, p, generator,
                                  sample_weights=self.batch_weights, share=(rows, len(batch)))
                loss = loss / p.grad_accum if weight == 1.0 else loss * (weight / p.grad_accum)
                accelerator.backward(loss)
                total += float(loss.detach())
            total = loop.mean_everywhere(accelerator, total)  # the global batch's loss, on every rank
            loop.sync_gradients(accelerator, self.lora_params)
            if p.max_grad_norm > 0:
                accelerator.clip_grad_norm_(self.lora_params, p.max_grad_norm)
            self.optimizer.step()
            self.lr_scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            step += 1
            first_loss = total if first_loss is None else first_loss
            last_loss = total
            rate = (step - start) / max(time.perf_counter() - t0, 1e-9)
            self.history.append({"step": step, "loss": total})
            cancel = main and reporter.step(step, total, lr=self.lr_scheduler.get_last_lr()[0], epoch=epoch + 1,
                                            steps_per_s=round(rate, 4))
            if loop.stop_everywhere(accelerator, cancel):
                stopped = True
                break
            if main and p.sample_every_n_steps and step % p.sample_every_n_steps == 0 and step < self.max_steps:
                self.sample(step)
            finished_epoch = step // self.steps_per_epoch if step % self.steps_per_epoch == 0 else 0
            if (main and p.sample_every_n_epochs and finished_epoch and finished_epoch % p.sample_every_n_epochs == 0
                    and step < self.max_steps and not (p.sample_every_n_steps and step % p.sample_every_n_steps == 0)):
                self.sample(step)
            if (main and p.save_every_n_epochs and finished_epoch and finished_epoch % p.save_every_n_epochs == 0
                    and step < self.max_steps):  # the last epoch is <name>.safetensors itself, as in sd-scripts
                path = train_outputs.save_epoch_file(self, finished_epoch, step)
                ctx.log(f"epoch {finished_epoch}: {path.name}")
        elapsed = max(time.perf_counter() - t0, 1e-9)
        if main and not stopped:
            self.sample(step)
        result = {
            "final_loss": last_loss, "first_loss": first_loss, "steps": step, "max_steps": self.max_steps,
            "stopped": stopped, "epochs": epoch + 1, "images": len(self.items),
            "images_with_repeats": sum(ex.item.repeats for ex in self.train_examples),
            "reg_images": len(self.reg_items),
            "resolution": self.resolution, "buckets": sorted({f"{ex.bucket[0]}x{ex.bucket[1]}" for ex in self.examples}),
            "steps_per_s": round((step - start) / elapsed, 4), "train_runtime": round(elapsed, 3),
            "architecture": self.arch, "optimizer": self.optimizer_name, "precision": self.precision,
            "peak_vram_mb": devices.peak_memory_mb(),
        }
        if main:
            result.update(train_outputs.save_adapter(self, result))
        accelerator.wait_for_everyone()
        return result

    def sample(self, step: int) -> None:
        """Render the fixed prompts with the LoRA as it is now; each image appears live in the job view."""
        import torch

        from lora_factory.plugins.image.sampling import parse_prompt_line, render_samples, sampling_pipeline

        prompts = self.sample_prompts()
        parts = self.parts
        for module in self.trainable.values():
            module.eval()
        if self.device == "cuda":
            for encoder in parts.text_encoders:
                encoder.to(self.device)
        try:
            pipe = sampling_pipeline(self.arch, {
                "unet": parts.denoiser, "transformer": parts.denoiser, "vae": parts.vae,
                "text_encoder": parts.text_encoders[0],
                "text_encoder_2": parts.text_encoders[1] if len(parts.text_encoders) > 1 else None,
                "tokenizer": parts.tokenizers[0], "tokenizer_2": parts.tokenizers[1] if len(parts.tokenizers) > 1 else None,
            }, parts.scheduler_config)
            pipe.set_progress_bar_config(disable=True)
            sample_dir = Path(self.ctx.sample_dir)
            paths = render_samples(pipe, prompts, step=step, out_dir=sample_dir, seed=self.params.sample_seed,
                                   steps=self.params.sample_steps, guidance=self.params.sample_guidance_scale,
                                   size=(self.resolution, self.resolution), device=self.device,
                                   base_name=self.base.name, adapter_name=str(self.spec.get("output_name") or "lora"),
                                   arch=self.arch, clip_skip=self.params.clip_skip,
                                   sampler=self.params.sample_sampler)
        finally:
            for module in self.trainable.values():
                module.train()
            if self.device == "cuda" and self.text_cache:
                for encoder in parts.text_encoders:
                    encoder.to("cpu")
            torch.manual_seed(self.params.seed + step)  # sampling must not change the training noise
        for i, path in enumerate(paths):
            self.sample_paths.append(path)
            self.ctx.report_sample(path, step, kind="image", caption=parse_prompt_line(prompts[i])["prompt"])
        self.ctx.log(f"samples at step {step}: {', '.join(p.name for p in paths)}")


def train_image_adapter(spec: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """The ``train`` hook for images: see :class:`ImageTrainingRun`."""
    run = ImageTrainingRun(spec, ctx)
    run.setup()
    return run.run()

