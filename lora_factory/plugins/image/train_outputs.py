"""What an image training run writes: checkpoints to resume from, and the finished adapter folder.

Adapter folder (``lora_adapters/image/<name>/``):

- ``pytorch_lora_weights.safetensors``: diffusers' format, with the LoRA config (alpha) in its
  metadata, so ``pipe.load_lora_weights(folder)`` restores exactly the trained scale;
- ``<name>.safetensors``: the kohya file for A1111 / Forge / ComfyUI (see :mod:`export`);
- ``samples/``: the last sample images; ``training_config.json`` and ``README.md`` (model card).

A checkpoint holds the LoRA weights in peft's own keys (``adapter_<component>.safetensors``) and the
optimizer / scheduler / RNG state (``training_state.pt``, tensors and numbers only, read back with
``weights_only=True``: nothing executable).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from lora_factory.kit import files, model_card
from lora_factory.plugins.image.dataset import tag_frequency
from lora_factory.plugins.image.export import (
    DIFFUSERS_WEIGHT_NAME,
    canonical_text_encoder_keys,
    kohya_metadata,
    kohya_state_dict,
    save_kohya_file,
)
from lora_factory.plugins.image.hashes import source_file_hashes
from lora_factory.plugins.image.train_data import bucket_info

USAGE = """import torch
from diffusers import {pipeline}

pipe = {pipeline}.from_pretrained("{base}", torch_dtype=torch.float16).to("cuda")
pipe.load_lora_weights("{adapter}")  # this folder ({weight})
image = pipe("{prompt}", num_inference_steps=30).images[0]
"""


def peft_state_dicts(run: Any) -> dict[str, dict[str, Any]]:
    from peft.utils import get_peft_model_state_dict

    return {name: get_peft_model_state_dict(module) for name, module in run.trainable.items()}


def save_checkpoint(run: Any, folder: Path) -> None:
    import torch
    from safetensors.torch import save_file

    folder = Path(folder)
    for name, state in peft_state_dicts(run).items():
        save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(folder / f"adapter_{name}.safetensors"))
    torch.save({
        "optimizer": run.optimizer.state_dict(),
        "lr_scheduler": run.lr_scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "python_rng": list(run.rng.getstate()[1]),
        "python_rng_version": run.rng.getstate()[0],
        "python_rng_gauss": run.rng.getstate()[2],
        "scaler": run.scaler.state_dict() if run.scaler else None,
    }, folder / "training_state.pt")
    (folder / "state.json").write_text(json.dumps({"arch": run.arch, "params": run.params.model_dump()}), encoding="utf-8")


def load_checkpoint(run: Any, folder: Path) -> None:
    import torch
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file

    folder = Path(folder)
    for name, module in run.trainable.items():
        path = folder / f"adapter_{name}.safetensors"
        if path.is_file():
            set_peft_model_state_dict(module, load_file(str(path)))
    state = torch.load(folder / "training_state.pt", map_location="cpu", weights_only=True)
    run.optimizer.load_state_dict(state["optimizer"])
    run.lr_scheduler.load_state_dict(state["lr_scheduler"])
    torch.set_rng_state(state["torch_rng"])
    run.rng.setstate((state["python_rng_version"], tuple(state["python_rng"]), state["python_rng_gauss"]))
    if run.scaler and state.get("scaler"):
        run.scaler.load_state_dict(state["scaler"])


def save_diffusers(run: Any, out_dir: Path, states: dict[str, dict[str, Any]]) -> Path:
    """``pytorch_lora_weights.safetensors`` through the pipeline class's own ``save_lora_weights``.

    The weights keep peft's ``lora_A`` / ``lora_B`` names. diffusers' ``convert_state_dict_to_diffusers``
    renames only the attention layers (``to_q.lora.down``); with ``proj_in`` / feed-forward targets the
    file then mixes two formats and ``load_lora_weights`` silently drops the attention LoRA.
    """
    metadata = {f"{name}_lora_adapter_metadata": module.peft_config["default"].to_dict()
                for name, module in run.trainable.items()}
    layers = {f"{name}_lora_layers": canonical_text_encoder_keys(state) if name.startswith("text_encoder") else state
              for name, state in states.items()}
    if run.arch == "flux":
        from diffusers import FluxPipeline as Pipeline
    elif run.arch == "sdxl":
        from diffusers import StableDiffusionXLPipeline as Pipeline
    else:
        from diffusers import StableDiffusionPipeline as Pipeline
    Pipeline.save_lora_weights(str(out_dir), safe_serialization=True, **layers, **metadata)
    return out_dir / DIFFUSERS_WEIGHT_NAME


def trigger_phrase(captions: list[str]) -> str | None:
    """The first tag shared by (nearly) every caption: the trigger word a user types to call the LoRA."""
    from lora_factory.plugins.image.dataset import split_tags

    firsts = [split_tags(c)[0] for c in captions if split_tags(c)]
    if not firsts:
        return None
    top = max(set(firsts), key=firsts.count)
    return top if firsts.count(top) >= 0.9 * len(captions) else None


def kohya_run_facts(run: Any) -> dict[str, Any]:
    """What the run actually used, for the ``ss_*`` fields sd-scripts fills from its own state: the optimizer's
    class path, the precision, the bucket range, and the base's file hashes when it came from one file."""
    from lora_factory.plugins.image.optimizers import kohya_optimizer_field

    facts: dict[str, Any] = {"_optimizer_class": kohya_optimizer_field(run.optimizer, run.optimizer_kwargs),
                             "_lr_scheduler": run.scheduler_name, "_precision": run.precision}
    p = run.params
    if p.enable_bucket:
        step = getattr(run, "bucket_step", 64)
        facts["_min_bucket_reso"] = p.min_bucket_reso or max(step, run.resolution // 2)
        facts["_max_bucket_reso"] = p.max_bucket_reso or run.resolution * 2
    source = source_file_hashes(run.base)
    if source:
        facts["_sd_model_hash"], facts["_new_sd_model_hash"] = source.get("legacy_hash"), source.get("sha256")
    return facts


EPOCH_FILE_NAME = "{}-{:06d}.safetensors"  # sd-scripts' train_util.EPOCH_FILE_NAME + ext


def _kohya_file(run: Any, path: Path, output_name: str, steps: int, epoch: int, diffusers_file: Path | None) -> Path:
    """The kohya file of the LoRA as it is now (tensors and ``ss_*`` metadata), written to ``path``."""
    states = peft_state_dicts(run)
    params = run.params.model_dump()
    params["_optimizer_name"] = run.optimizer_name
    params.update(kohya_run_facts(run))
    captions = [ex.item.caption for ex in run.train_examples]
    dataset_dirs: dict[str, dict[str, int]] = {}
    reg_dirs: dict[str, dict[str, int]] = {}
    for ex in run.examples:
        reg = ex.extra.get("reg")
        key = Path(ex.item.subset).name if ex.item.subset else (run.reg_dir if reg else run.dataset).name
        entry = (reg_dirs if reg else dataset_dirs).setdefault(key, {"n_repeats": ex.item.repeats, "img_count": 0})
        entry["img_count"] += 1
    metadata = kohya_metadata(
        arch=run.arch, output_name=output_name, params=params, resolution=(run.resolution, run.resolution),
        tag_frequency=tag_frequency(run.items, run.dataset.name), dataset_dirs=dataset_dirs, steps=steps,
        epoch=epoch, num_images=sum(ex.item.repeats for ex in run.train_examples), bucket_info=bucket_info(run.examples),
        base_model_name=run.base.name, prediction_type=run.parts.prediction_type, started_at=run.started_at,
        trigger=trigger_phrase(captions), batches_per_epoch=run.batches_per_epoch)
    metadata["ss_num_epochs"] = str(run.num_epochs)
    metadata["ss_prior_loss_weight"] = str(run.params.prior_loss_weight)
    if getattr(run, "vae_path", None):  # sd-scripts: the VAE's name, and its hashes when it is one file
        metadata["ss_vae_name"] = run.vae_path.name
        single = [run.vae_path] if run.vae_path.is_file() else []
        if single:
            from lora_factory.plugins.image.hashes import file_sha256, legacy_model_hash

            metadata["ss_vae_hash"], metadata["ss_new_vae_hash"] = legacy_model_hash(single[0]), file_sha256(single[0])
    if run.reg_items:  # sd-scripts: the regularisation images with their folders' repeats, and those folders
        metadata["ss_num_reg_images"] = str(sum(ex.item.repeats for ex in run.examples if ex.extra.get("reg")))
        metadata["ss_reg_dataset_dirs"] = json.dumps(reg_dirs, ensure_ascii=False)
    if run.arch == "flux":  # ComfyUI / Forge read diffusers-keyed Flux LoRAs; kohya's BFL naming is not made here
        from safetensors.torch import load_file

        if diffusers_file is None:
            import tempfile

            with tempfile.TemporaryDirectory(prefix=".tmp-flux-", dir=Path(path).parent) as tmp:  # cleaned at start
                tensors = load_file(str(save_diffusers(run, Path(tmp), states)))
        else:
            tensors = load_file(str(diffusers_file))
    elif uses_lycoris_layout(run.params):
        from lora_factory.plugins.image.lycoris import module_scales, state_dict_to_kohya

        tensors = state_dict_to_kohya(states, {name: module_scales(m) for name, m in run.trainable.items()})
    else:
        tensors = kohya_state_dict(states, run.params.alpha, run.arch)
    metadata.update(network_metadata(run.params))
    return save_kohya_file(path, tensors, metadata, run.params.save_precision)


def uses_lycoris_layout(params: Any) -> bool:
    """Anything but plain LoRA on linear layers is written module by module with its own alpha."""
    return params.network_type != "lora" or params.conv_dim is not None


def has_diffusers_file(params: Any) -> bool:
    """diffusers' ``load_lora_weights`` reads LoRA (and LoCon); LoHa / LoKr exist as the kohya file only."""
    return params.network_type in ("lora", "locon")


def network_metadata(params: Any) -> dict[str, str]:
    """``ss_network_module`` / ``ss_network_args`` as sd-scripts records a LyCORIS or conv run (``--network_args``
    values are strings there)."""
    from lora_factory.plugins.image.lycoris import NETWORK_MODULE

    args: dict[str, str] = {}
    conv = params.network_type == "locon" or params.conv_dim is not None
    if params.network_type != "lora":
        args["algo"] = params.network_type
    if conv:
        args["conv_dim"] = str(params.conv_dim or params.rank)
        args["conv_alpha"] = str(_plain(params.conv_alpha or params.alpha))
    out = {"ss_network_module": NETWORK_MODULE if params.network_type != "lora" else "networks.lora"}
    if args:
        out["ss_network_args"] = json.dumps(args)
    return out


def _plain(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def save_epoch_file(run: Any, epoch: int, step: int) -> Path:
    """``<name>-00000N.safetensors`` in the adapter folder (kohya's ``--save_every_n_epochs``); with
    ``save_last_n_epochs`` the epoch file that falls out of the window is removed, as sd-scripts does."""
    out_dir = Path(run.ctx.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    output_name = files.safe_name(str(run.spec.get("output_name") or "lora"), "output name")
    path = _kohya_file(run, out_dir / EPOCH_FILE_NAME.format(output_name, epoch), output_name, step, epoch, None)
    p = run.params
    if p.save_last_n_epochs:
        for old in out_dir.glob(f"{output_name}-[0-9][0-9][0-9][0-9][0-9][0-9].safetensors"):
            number = int(old.stem[-6:])
            if number <= epoch - p.save_last_n_epochs * p.save_every_n_epochs:
                old.unlink()
    return path


def epoch_files(out_dir: Path, output_name: str) -> list[dict[str, Any]]:
    """The epoch files present: ``[{"epoch": N, "file": name}]``, in order."""
    found = sorted(Path(out_dir).glob(f"{output_name}-[0-9][0-9][0-9][0-9][0-9][0-9].safetensors"))
    return [{"epoch": int(f.stem[-6:]), "file": f.name} for f in found]


def save_adapter(run: Any, result: dict[str, Any]) -> dict[str, Any]:
    """Write the adapter folder into ``ctx.output_dir``; return the file names for the result."""
    out_dir = Path(run.ctx.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    output_name = files.safe_name(str(run.spec.get("output_name") or "lora"), "output name")
    states = peft_state_dicts(run)
    diffusers_file = save_diffusers(run, out_dir, states) if has_diffusers_file(run.params) else None
    trigger = trigger_phrase([ex.item.caption for ex in run.train_examples])
    kohya_file = _kohya_file(run, out_dir / f"{output_name}.safetensors", output_name, result["steps"],
                             result["epochs"], diffusers_file)
    sample_names = copy_samples(run.sample_paths[-len(run.sample_prompts()):] if run.sample_paths else [],
                                out_dir / "samples")
    pipeline = {"flux": "FluxPipeline", "sdxl": "StableDiffusionXLPipeline"}.get(run.arch, "StableDiffusionPipeline")
    usage = USAGE.format(pipeline=pipeline, base=str(run.spec.get("base_model_ref") or run.base.name),
                         adapter=f"lora_adapters/image/{output_name}", weight=DIFFUSERS_WEIGHT_NAME,
                         prompt=(trigger or run.sample_prompts()[0]).replace('"', "'"))
    files_out = {"diffusers_file": diffusers_file.name if diffusers_file else None, "kohya_file": kohya_file.name, "samples": sample_names,
                 "trigger_phrase": trigger, "epoch_files": epoch_files(out_dir, output_name)}
    model_card.write_adapter_metadata(
        out_dir, modality="image", spec=run.spec, params=run.params.model_dump(), result={**result, **files_out},
        usage=usage, library_name="diffusers",
        card_metrics=("final_loss", "steps", "epochs", "images", "resolution", "buckets", "steps_per_s", "stopped"),
        extra={"architecture": run.arch, "kohya_file": kohya_file.name, "network_type": run.params.network_type,
               "diffusers_file": files_out["diffusers_file"],
               "trigger_phrase": trigger, "epoch_files": files_out["epoch_files"]},
        extra_sections={
            "A1111 / Forge / ComfyUI": (
                f"`{kohya_file.name}` を `models/Lora` に置き、プロンプトに `<lora:{output_name}:1>` を書きます"
                f"{f'(トリガーワード: `{trigger}`)' if trigger else ''}。\n\n"
                f"Copy `{kohya_file.name}` into `models/Lora` and write `<lora:{output_name}:1>` in the prompt"
                f"{f' (trigger word: `{trigger}`)' if trigger else ''}; in ComfyUI use a LoraLoader node."),
        },
        tags=["image", "diffusers", "text-to-image", run.arch])
    return files_out


def copy_samples(paths: list[Path], out_dir: Path) -> list[str]:
    """The last sample images into the adapter folder; the names copied."""
    out_dir.mkdir(parents=True, exist_ok=True)
    names = []
    for path in paths:
        if Path(path).is_file():
            shutil.copy2(path, out_dir / Path(path).name)
            names.append(Path(path).name)
    return names
