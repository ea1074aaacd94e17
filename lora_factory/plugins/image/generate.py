"""Image generation (the ``infer`` hook for task ``image``), in the long-lived inference worker.

One base pipeline per base model stays loaded in ``session.cache``; the pipeline a request needs
(img2img, inpaint, ControlNet, another VAE) is derived from it with ``from_pipe`` (shared modules,
nothing reloaded). LoRAs are loaded once by name and switched with ``set_adapters`` (several at
once, one weight each). Every image is a PNG carrying its settings (A1111 ``parameters`` + our JSON).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lora_factory.kit import LoRAFactoryError, __version__, devices, files, media, presets
from lora_factory.plugins.image.generate_params import GenerateParams
from lora_factory.plugins.image.hashes import adapter_architecture, lora_short_hash, model_hash
from lora_factory.plugins.image.model_info import detect_folder_arch
from lora_factory.plugins.image.png_info import save_png
from lora_factory.plugins.image.text_encoding import clip_skip_embeds, needs_own_encoding

MAX_LOADED_LORAS = 8
DEFAULTS = {"sd15": (25, 7.0, "dpmpp_2m"), "sd2": (25, 7.0, "dpmpp_2m"), "sdxl": (30, 6.0, "dpmpp_2m"),
            "flux": (28, 3.5, "flow_euler")}


def make_scheduler(name: str, config: Any) -> Any:
    import diffusers

    table = {
        "euler_a": ("EulerAncestralDiscreteScheduler", {}), "euler": ("EulerDiscreteScheduler", {}),
        "dpmpp_2m": ("DPMSolverMultistepScheduler", {}),
        "dpmpp_2m_karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
        "ddim": ("DDIMScheduler", {}), "pndm": ("PNDMScheduler", {}), "lms": ("LMSDiscreteScheduler", {}),
        "heun": ("HeunDiscreteScheduler", {}), "unipc": ("UniPCMultistepScheduler", {}), "lcm": ("LCMScheduler", {}),
        "flow_euler": ("FlowMatchEulerDiscreteScheduler", {}),
    }
    cls_name, extra = table[name]
    return getattr(diffusers, cls_name).from_config(config, **extra)


class ImageGenerator:
    """The state kept in ``session.cache["image"]``: loaded pipelines, LoRAs, VAEs, ControlNets."""

    def __init__(self) -> None:
        self.device = devices.pick_device()
        self.dtype = devices.pick_dtype(self.device, prefer_bf16=False)
        self.bases: dict[str, dict[str, Any]] = {}  # base path -> {"pipe", "arch", "scheduler_config", "loras"}
        self.modules: dict[tuple[str, str], Any] = {}  # (kind, path) -> VAE / ControlNet / refiner

    # -- loading ----------------------------------------------------------------------------------
    def base(self, path: str) -> dict[str, Any]:
        if path not in self.bases:
            from diffusers import DiffusionPipeline

            arch = detect_folder_arch(Path(path))
            if arch not in DEFAULTS:
                raise LoRAFactoryError("MODEL_INVALID", f"「{Path(path).name}」は生成できる画像モデルではありません({arch})。",
                                       f"'{Path(path).name}' is not an image generation pipeline ({arch}).", 422,
                                       detail={"architecture": arch})
            if len(self.bases) >= 1:  # one base at a time on the accelerator
                self.bases.clear()
                devices.empty_cache()
            kwargs = {"safety_checker": None, "requires_safety_checker": False} if arch in ("sd15", "sd2") else {}
            pipe = DiffusionPipeline.from_pretrained(path, torch_dtype=self.dtype, **kwargs).to(self.device)
            pipe.set_progress_bar_config(disable=True)
            self.bases[path] = {"pipe": pipe, "arch": arch, "scheduler_config": pipe.scheduler.config,
                                "loras": {}, "ip_adapter": None, "model_hash": model_hash(Path(path)), "lora_hashes": {}}
        return self.bases[path]

    def module(self, kind: str, path: str, base: dict[str, Any]) -> Any:
        key = (kind, path)
        if key not in self.modules:
            if kind == "vae":
                from diffusers import AutoencoderKL

                single = sorted(Path(path).glob("*.safetensors"))
                if (Path(path) / "config.json").is_file():
                    module = AutoencoderKL.from_pretrained(path, torch_dtype=self.dtype)
                elif single:  # a VAE file from Civitai: the base model's VAE config describes it
                    base_dir = Path(base["pipe"].config._name_or_path) / "vae"
                    module = AutoencoderKL.from_single_file(str(single[0]), config=str(base_dir), torch_dtype=self.dtype)
                else:
                    raise LoRAFactoryError("MODEL_INVALID", f"VAE「{Path(path).name}」に重みがありません。",
                                           f"The VAE '{Path(path).name}' has no weights.", 422, detail={"path": path})
            elif kind == "controlnet":
                if base["arch"] == "flux":
                    from diffusers import FluxControlNetModel as ControlNet
                else:
                    from diffusers import ControlNetModel as ControlNet
                module = ControlNet.from_pretrained(path, torch_dtype=self.dtype)
            elif kind == "refiner":
                from diffusers import StableDiffusionXLImg2ImgPipeline

                pipe = base["pipe"]
                module = StableDiffusionXLImg2ImgPipeline.from_pretrained(
                    path, text_encoder_2=pipe.text_encoder_2, vae=pipe.vae, torch_dtype=self.dtype)
                module.set_progress_bar_config(disable=True)
            else:
                raise ValueError(kind)
            self.modules[key] = module.to(self.device)
        return self.modules[key]

    def apply_loras(self, base: dict[str, Any], adapters: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Load what is missing, switch to exactly these adapters and weights; return their names.

        An adapter may name its ``file`` in its folder (an epoch file); otherwise the diffusers file, else the
        first ``.safetensors``. LoRA files go through diffusers (``set_adapters`` switches them); LoHa / LoKr
        files are merged into the weights as A1111 / ComfyUI do (:mod:`lycoris`), and re-merged on a change.
        """
        pipe, loaded = base["pipe"], base["loras"]
        used = []
        for adapter in adapters:
            folder = Path(str(adapter["path"]))
            weight = _weight_file(folder, adapter.get("file"))
            key = f"{folder}::{weight}"
            entry = {"name": adapter.get("name") or folder.name, "weight": float(adapter.get("weight", 1.0)),
                     "file": folder / weight, "peft_name": None}
            if _network_kind(folder / weight) != "lora":
                _check_adapter_arch(folder, base["arch"])
                entry["hash"] = lora_short_hash(folder / weight)
                used.append(entry)
                continue
            if key not in loaded:
                if len(loaded) >= MAX_LOADED_LORAS:
                    oldest = next(iter(loaded))
                    pipe.delete_adapters(loaded.pop(oldest))
                name = f"lora{abs(hash((key, time.time()))) % 10**8}"
                _check_adapter_arch(folder, base["arch"])
                try:
                    pipe.load_lora_weights(str(folder), weight_name=weight, adapter_name=name)
                except (RuntimeError, ValueError) as exc:  # a LoRA of another architecture, found late
                    if "size mismatch" not in str(exc) and not isinstance(exc, ValueError):
                        raise
                    raise _incompatible(folder, adapter_architecture(folder) or "?", base["arch"], str(exc)) from exc
                loaded[key] = name
                kohya = folder / (Path(str(adapter["file"])).name if adapter.get("file") else _epoch_file(folder, 0))
                base["lora_hashes"][key] = lora_short_hash(kohya if kohya.is_file() else folder)
            entry.update(peft_name=loaded[key], hash=base["lora_hashes"].get(key))
            used.append(entry)
        self.set_weights(base, used)
        return used

    def set_weights(self, base: dict[str, Any], used: list[dict[str, Any]], weight: float | None = None) -> None:
        """The adapters in ``used`` active at their weights (or all at ``weight``): peft's switch for LoRA
        files, a restore-and-merge for merged ones (only when something changed)."""
        from lora_factory.plugins.image import lycoris

        pipe = base["pipe"]
        peft = [u for u in used if u["peft_name"]]
        if peft:
            pipe.enable_lora()
            pipe.set_adapters([u["peft_name"] for u in peft],
                              adapter_weights=[weight if weight is not None else u["weight"] for u in peft])
        elif base["loras"]:
            pipe.disable_lora()
        wanted = [(str(u["file"]), weight if weight is not None else u["weight"]) for u in used if not u["peft_name"]]
        merged = base.setdefault("merged", {"applied": [], "backup": {}})
        if wanted != merged["applied"]:
            lycoris.restore(merged["backup"])
            merged["applied"] = []
            for file, strength in wanted:
                try:
                    lycoris.merge_kohya_file(pipe, Path(file), strength, merged["backup"])
                except (KeyError, RuntimeError) as exc:  # modules or shapes of another model
                    lycoris.restore(merged["backup"])
                    folder = Path(file).parent
                    raise _incompatible(folder, adapter_architecture(folder) or "?", base["arch"], str(exc)) from exc
            merged["applied"] = wanted

    def apply_ip_adapter(self, base: dict[str, Any], ip: dict[str, Any] | None) -> None:
        pipe = base["pipe"]
        wanted = ip["path"] if ip else None
        if base["ip_adapter"] == wanted:
            if ip:
                pipe.set_ip_adapter_scale(ip["scale"])
            return
        if base["ip_adapter"]:
            pipe.unload_ip_adapter()
            base["ip_adapter"] = None
        if ip:
            subfolder, weight = _ip_adapter_layout(Path(ip["path"]), base["arch"])
            pipe.load_ip_adapter(str(ip["path"]), subfolder=subfolder, weight_name=weight, image_encoder_folder="image_encoder")
            pipe.set_ip_adapter_scale(ip["scale"])
            base["ip_adapter"] = wanted


def _weight_file(folder: Path, file: str | None) -> str:
    """The weight file to load from an adapter folder: the named one (inside the folder), else diffusers', else
    the first ``.safetensors``."""
    if file:
        path = folder / Path(str(file)).name
        if not path.is_file():
            from lora_factory.plugins.image.train_outputs import epoch_files

            have = [e["epoch"] for e in epoch_files(folder, Path(str(file)).name.rsplit("-", 1)[0])]
            raise LoRAFactoryError("ADAPTER_INVALID", f"アダプタ「{folder.name}」に {path.name} がありません(エポック: {have})。",
                                   f"The adapter '{folder.name}' has no {path.name} (epoch files: {have}).", 422,
                                   detail={"path": str(folder), "file": path.name, "epochs": have})
        return path.name
    if (folder / "pytorch_lora_weights.safetensors").is_file():
        return "pytorch_lora_weights.safetensors"
    if (folder / _epoch_file(folder, 0)).is_file():  # the kohya file, not an epoch file beside it
        return _epoch_file(folder, 0)
    found = sorted(folder.glob("*.safetensors"))
    if not found:
        raise LoRAFactoryError("ADAPTER_INVALID", f"アダプタ「{folder.name}」に .safetensors がありません。",
                               f"The adapter '{folder.name}' has no .safetensors file.", 422, detail={"path": str(folder)})
    return found[0].name


def _network_kind(path: Path) -> str:
    """``lora`` / ``loha`` / ``lokr`` from the file's tensor names."""
    from safetensors import safe_open

    from lora_factory.plugins.image.lycoris import network_kind

    with safe_open(str(path), framework="pt") as fh:
        return network_kind(fh.keys())


def _epoch_file(folder: Path, epoch: int) -> str:
    """``<name>-00000N.safetensors`` of an adapter folder (``<name>`` = its kohya file's), or the final file at 0."""
    from lora_factory.plugins.image.train_outputs import EPOCH_FILE_NAME

    try:
        kohya = json.loads((folder / "training_config.json").read_text(encoding="utf-8")).get("kohya_file")
    except (OSError, ValueError, AttributeError):
        kohya = None
    if not kohya:
        plain = [f.name for f in sorted(folder.glob("*.safetensors"))
                 if f.name != "pytorch_lora_weights.safetensors" and not f.stem[-7:-6] == "-"]
        kohya = plain[0] if plain else f"{folder.name}.safetensors"
    return kohya if epoch == 0 else EPOCH_FILE_NAME.format(Path(kohya).stem, epoch)


def _incompatible(folder: Path, adapter_arch: str, base_arch: str, reason: str | None = None) -> LoRAFactoryError:
    return LoRAFactoryError(
        "ADAPTER_INCOMPATIBLE",
        f"LoRA「{folder.name}」({adapter_arch} 用)はこのベースモデル({base_arch})では使えません。",
        f"The LoRA '{folder.name}' is for {adapter_arch}; it cannot be used with this {base_arch} base model.", 422,
        detail={"adapter": folder.name, "adapter_architecture": adapter_arch, "base_architecture": base_arch,
                **({"reason": reason[:300]} if reason else {})})


def _check_adapter_arch(folder: Path, base_arch: str) -> None:
    """Refuse an adapter whose recorded architecture is not the base's (SD1.5 and SD2 differ too)."""
    arch = adapter_architecture(folder)
    if arch and arch != base_arch:
        raise _incompatible(folder, arch, base_arch)


def _ip_adapter_layout(folder: Path, arch: str) -> tuple[str, str]:
    """(subfolder, weight file): the weights with an ``image_encoder/`` beside them, at the top or in h94's
    ``models/`` (SD1.5) / ``sdxl_models/`` (SDXL) sub-folders, the plain (not plus / face) file first."""
    order = ["", "sdxl_models", "models"] if arch == "sdxl" else ["", "models", "sdxl_models"]
    for sub in order:
        where = folder / sub if sub else folder
        weights = sorted(where.glob("ip-adapter*.safetensors"), key=lambda p: (len(p.name), p.name)) or \
            sorted(where.glob("*.safetensors"))
        if weights and (where / "image_encoder").is_dir():
            return sub, weights[0].name
    raise LoRAFactoryError("MODEL_INVALID", f"IP-Adapter「{folder.name}」には *.safetensors と image_encoder/ が必要です。",
                           f"The IP-Adapter '{folder.name}' needs *.safetensors with an image_encoder/ folder beside them.",
                           422, detail={"path": str(folder)})


def _open_image(path: str | None, what: str) -> Any:
    if not path:
        return None
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as im:
            return ImageOps.exif_transpose(im).convert("RGB")
    except Exception as exc:  # noqa: BLE001
        raise LoRAFactoryError("INVALID_IMAGE", f"{what}を画像として読めません。", f"The {what} is not a readable image.", 422,
                               detail={"field": what, "reason": str(exc)}) from exc


def _snap(value: int, multiple: int) -> int:
    return max(multiple, int(value) // multiple * multiple)


def generate_images(request: dict[str, Any], session: Any) -> Iterator[dict[str, Any]]:
    """Yield one ``image`` event per picture, then ``done`` (see the module docstring)."""
    import torch
    from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting, AutoPipelineForText2Image

    generator_state: ImageGenerator = session.cache.setdefault("image", ImageGenerator())
    inputs = dict(request.get("input") or {})
    params = presets.trusted(GenerateParams, request.get("params") or {})  # validated by resolve_generate_request
    prompt = str(inputs.get("prompt") or (request.get("params") or {}).get("prompt") or request.get("prompt") or "")
    base_path = str(request["base_model"])
    base = generator_state.base(base_path)
    arch, pipe = base["arch"], base["pipe"]
    steps0, cfg0, sched0 = DEFAULTS[arch]
    used = generator_state.apply_loras(base, list(request.get("adapters") or []))

    init_image = _open_image(inputs.get("image"), "image")
    mask = _open_image(inputs.get("mask"), "mask")
    mode = params.mode if params.mode != "auto" else ("inpaint" if mask is not None and init_image is not None
                                                       else "img2img" if init_image is not None else "txt2img")
    vae_scale = getattr(pipe, "vae_scale_factor", 8)
    multiple = vae_scale * (2 if arch == "flux" else 1)
    native = int(getattr(pipe, "default_sample_size", 0) or pipe.unet.config.sample_size) * vae_scale \
        if arch != "flux" else int(pipe.default_sample_size * vae_scale)
    if init_image is not None and not (params.width or params.height):
        width, height = _snap(init_image.width, multiple), _snap(init_image.height, multiple)
    else:
        width, height = _snap(params.width or native, multiple), _snap(params.height or native, multiple)
    steps = params.steps or steps0
    guidance = params.guidance_scale if params.guidance_scale is not None else cfg0
    scheduler_name = params.scheduler or sched0
    if (arch == "flux") != (scheduler_name == "flow_euler"):
        scheduler_name = sched0

    overrides: dict[str, Any] = {}
    if params.vae:
        overrides["vae"] = generator_state.module("vae", params.vae, base)
    control_image = None
    if params.controlnet:
        source = _open_image(inputs.get("control_image") or inputs.get("image"), "control_image")
        from lora_factory.plugins.image.control import canny, depth_map

        source = source.resize((width, height))
        cn = params.controlnet
        control_image = (canny(source, cn.low_threshold, cn.high_threshold) if cn.preprocessor == "canny"
                         else depth_map(source, Path(cn.depth_model) if cn.depth_model else None, generator_state.device)
                         if cn.preprocessor == "depth" else source)
        overrides["controlnet"] = generator_state.module("controlnet", cn.model, base)
    reference = _open_image(inputs.get("reference_image"), "reference_image") if params.ip_adapter else None
    generator_state.apply_ip_adapter(base, {"path": params.ip_adapter.model, "scale": params.ip_adapter.scale}
                                     if params.ip_adapter else None)

    auto = {"txt2img": AutoPipelineForText2Image, "img2img": AutoPipelineForImage2Image,
            "inpaint": AutoPipelineForInpainting}[mode]
    run_pipe = auto.from_pipe(pipe, **overrides) if (mode != "txt2img" or overrides) else pipe
    run_pipe.scheduler = make_scheduler(scheduler_name, base["scheduler_config"])
    run_pipe.set_progress_bar_config(disable=True)

    seed = params.seed if params.seed >= 0 else random.randint(0, 2**32 - 1)
    weights = params.lora_weight_grid if (params.lora_weight_grid and used) else [None]
    epochs = params.epoch_grid if (params.epoch_grid and used) else [None]
    outputs_dir = Path(session.outputs_dir)
    base_name = Path(base_path).name
    count = 0
    cells = [(e, w) for e in epochs for w in weights]
    for grid_epoch, grid_weight in cells:
        if grid_epoch is not None:  # the first adapter from its epoch file, the others as asked
            first = dict(request["adapters"][0])
            first["file"] = _epoch_file(Path(str(first["path"])), grid_epoch)
            used = generator_state.apply_loras(base, [first, *list(request.get("adapters") or [])[1:]])
        if grid_weight is not None or grid_epoch is not None:
            generator_state.set_weights(base, used, grid_weight)
        for i in range(params.num_images):
            image_seed = seed + i
            kwargs: dict[str, Any] = {"prompt": prompt, "num_inference_steps": steps, "guidance_scale": guidance,
                                      "generator": torch.Generator(device="cpu").manual_seed(image_seed)}
            if arch != "flux":
                kwargs["negative_prompt"] = params.negative_prompt or None
                if needs_own_encoding(pipe, prompt, params.negative_prompt, params.clip_skip):  # A1111's encoding
                    del kwargs["prompt"], kwargs["negative_prompt"]
                    kwargs.update(clip_skip_embeds(pipe, arch, prompt, params.negative_prompt, params.clip_skip,
                                                   guidance > 1.0))
            else:
                kwargs["max_sequence_length"] = 256 if pipe.tokenizer_2.model_max_length >= 256 else 64
            if mode == "txt2img":
                kwargs.update(width=width, height=height)
            else:
                kwargs.update(image=init_image.resize((width, height)), strength=params.strength)
                if mode == "inpaint":
                    kwargs.update(mask_image=mask.convert("L").resize((width, height)), width=width, height=height)
            if control_image is not None:
                key = "control_image" if (mode != "txt2img" or arch == "flux") else "image"
                kwargs[key] = control_image
                kwargs["controlnet_conditioning_scale"] = params.controlnet.conditioning_scale
            if reference is not None:
                kwargs["ip_adapter_image"] = reference
            refiner = generator_state.module("refiner", params.refiner.model, base) if params.refiner and arch == "sdxl" else None
            if refiner is not None and mode == "txt2img":
                kwargs.update(denoising_end=params.refiner.switch_at, output_type="latent")
            with torch.inference_mode():
                result = run_pipe(**kwargs).images[0]
                if refiner is not None and mode == "txt2img":
                    refiner.scheduler = make_scheduler(scheduler_name, refiner.scheduler.config)
                    result = refiner(prompt=prompt, negative_prompt=params.negative_prompt or None, image=result[None],
                                     num_inference_steps=steps, denoising_start=params.refiner.switch_at,
                                     generator=torch.Generator(device="cpu").manual_seed(image_seed)).images[0]
            shown = [{"name": u["name"], "weight": grid_weight if grid_weight is not None else u["weight"]} for u in used]
            settings = {
                "prompt": prompt, "negative_prompt": params.negative_prompt, "seed": image_seed, "steps": steps,
                "guidance_scale": guidance, "width": width, "height": height, "scheduler": scheduler_name,
                "mode": mode, "strength": params.strength if mode != "txt2img" else None,
                "base_model": request.get("base_model_ref") or base_name, "base_model_name": base_name,
                "architecture": arch, "adapters": shown,
                "vae_name": Path(params.vae).name if params.vae else None,
                "refiner": params.refiner.model_dump() if params.refiner else None,
                "controlnet": params.controlnet.model_dump() if params.controlnet else None,
                "ip_adapter": params.ip_adapter.model_dump() if params.ip_adapter else None,
                "clip_skip": params.clip_skip, "lora_weight": grid_weight, "model_hash": base["model_hash"],
                "epoch": grid_epoch,
                "lora_hashes": {u["name"]: u["hash"] for u in used if u["hash"]},
                "version": __version__, "index": count,
            }
            path = files.unique_file(outputs_dir, f"{time.strftime('%Y%m%d-%H%M%S')}-{image_seed}", ".png")
            save_png(result, path, settings)
            count += 1
            yield media.image_event(path, settings)
    if (params.lora_weight_grid or params.epoch_grid) and used:
        generator_state.set_weights(base, generator_state.apply_loras(base, list(request.get("adapters") or [])))
    yield media.done_event(images=count, seed=seed, mode=mode, width=width, height=height)
