"""Get image models: diffusers repos from the Hub, local folders, single-file checkpoints, tiny ones.

Base models live in ``models/image/<name>/`` as diffusers pipeline folders (every tool here, and
plain diffusers, opens them). A single-file checkpoint (Civitai's ``.safetensors``) is converted
once at import with ``from_single_file`` and saved as a diffusers folder; diffusers needs the
pipeline's configs for that, taken offline from (in this order) ``spec["config"]`` (a diffusers model
of the same architecture in the workspace), any such model already in ``models/image/``, or else
the Hub (the reference repository's small config files only).

Auxiliary models (``spec["model_kind"]``) go to ``models/image/<kind>/<name>/``: ``vae``, ``controlnet``,
``ip_adapter``, ``refiner``, ``tagger`` (WD v3: ``model.onnx`` + ``selected_tags.csv``),
``captioner`` (BLIP / Florence-2), ``clip`` (for CLIP scores in regression runs).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from lora_factory.kit import LoRAFactoryError, hub
from lora_factory.plugins.image.hashes import record_source_file
from lora_factory.plugins.image.model_info import arch_from_keys, detect_folder_arch, inspect_image_model

AUX_KINDS: dict[str, dict[str, str]] = {
    "vae": {"label_ja": "VAE", "label_en": "VAE"},
    "controlnet": {"label_ja": "ControlNet", "label_en": "ControlNet"},
    "ip_adapter": {"label_ja": "IP-Adapter", "label_en": "IP-Adapter"},
    "refiner": {"label_ja": "リファイナー (SDXL)", "label_en": "Refiner (SDXL)"},
    "tagger": {"label_ja": "タガー (WD v3)", "label_en": "Tagger (WD v3)"},
    "captioner": {"label_ja": "キャプション生成 (BLIP / Florence-2)", "label_en": "Captioner (BLIP / Florence-2)"},
    "clip": {"label_ja": "CLIP (回帰テストの採点)", "label_en": "CLIP (regression scoring)"},
    "depth": {"label_ja": "深度推定 (ControlNet depth 用)", "label_en": "Depth estimator (for ControlNet depth)"},
}
REFERENCE_REPOS = {"sd15": "stable-diffusion-v1-5/stable-diffusion-v1-5",
                   "sd2": "stabilityai/stable-diffusion-2-1",
                   "sdxl": "stabilityai/stable-diffusion-xl-base-1.0",
                   "sdxl_refiner": "stabilityai/stable-diffusion-xl-refiner-1.0",
                   "flux": "black-forest-labs/FLUX.1-dev"}
SINGLE_FILE_PIPELINES = {"sd15": "StableDiffusionPipeline", "sd2": "StableDiffusionPipeline",
                         "sdxl": "StableDiffusionXLPipeline", "sdxl_refiner": "StableDiffusionXLImg2ImgPipeline",
                         "flux": "FluxPipeline"}
TAGGER_FILES = ("model.onnx", "selected_tags.csv")


def _require_for(kind: str | None) -> Any:
    """What a downloaded / imported folder of ``kind`` must contain."""
    if kind in (None, "", "base", "refiner"):
        return ("model_index.json",)
    if kind in ("vae", "controlnet", "captioner", "clip", "depth"):
        return ("config.json",)
    if kind == "ip_adapter":
        return lambda names: None if any(n.endswith(".safetensors") for n in names) else "*.safetensors"
    return None


def download_image_model(spec: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """The ``download_model`` hook: ``source`` tiny / hub / local / single_file; ``kind`` for aux models."""
    source = spec.get("source", "hub")
    kind = spec.get("model_kind") or None
    if kind == "base":
        kind = None
    if kind is not None and kind not in AUX_KINDS:
        raise LoRAFactoryError("INVALID_REQUEST", f"補助モデルの種類「{kind}」はありません。", f"Unknown auxiliary model kind '{kind}'.",
                               422, detail={"field": "kind", "choices": list(AUX_KINDS)})
    out = Path(ctx.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if source == "tiny":
        from lora_factory.plugins.image.tiny_model import ARCHES, build_tiny_image_model

        arch = str(spec.get("arch") or "sd15")
        if arch not in ARCHES:
            raise LoRAFactoryError("INVALID_REQUEST", f"アーキテクチャ「{arch}」はありません({', '.join(ARCHES)})。",
                                   f"Unknown architecture '{arch}' ({', '.join(ARCHES)}).", 422,
                                   detail={"field": "arch", "choices": list(ARCHES)})
        ctx.log(f"tiny {arch} パイプラインを生成します / building the tiny {arch} pipeline")
        result = build_tiny_image_model(out, arch, seed=int(spec.get("seed", 0)))
        ctx.progress(1, 1)
        return {"source": "tiny", **result}
    if kind == "tagger":
        return _tagger(spec, ctx, out, source)
    if source == "hub":
        result = hub.download_repo(ctx, spec, out, require=_require_for(kind), what_ja="diffusers 形式",
                                   what_en="a diffusers model", variant=spec.get("variant"))
        return {**result, **_summary(out)}
    local = Path(str(spec.get("local_path") or "")).expanduser()
    if source == "single_file" or (source == "local" and local.is_file()):
        return _single_file(spec, ctx, out, local, kind)
    if source == "local":
        result = hub.import_local_folder(ctx, local, out, require=_require_for(kind))
        return {**result, **_summary(out)}
    raise LoRAFactoryError("INVALID_SOURCE", f"不明な取得元です: {source}(hub / local / single_file / tiny)",
                           f"Unknown source '{source}' (hub, local, single_file or tiny).", 422,
                           detail={"field": "source", "value": source})


def _summary(out: Path) -> dict[str, Any]:
    info = inspect_image_model(out)
    return {"architecture": info.get("architecture"), "parameters": info.get("parameters"), "dtype": info.get("dtype")}


def _single_file(spec: dict[str, Any], ctx: Any, out: Path, src: Path, kind: str | None) -> dict[str, Any]:
    """Copy a ``.safetensors`` checkpoint in; base models and refiners are converted to diffusers folders."""
    import shutil

    staging = out.parent / f".{out.name}-single"
    staging.mkdir(parents=True, exist_ok=True)
    try:
        copied = hub.import_single_file(ctx, src, staging)
        header = hub.read_safetensors_header(copied)
        arch = arch_from_keys([k for k in header if k != "__metadata__"])
        if kind in ("vae", "controlnet", "ip_adapter"):  # kept as the file; loaded with the base's configs later
            shutil.move(str(copied), out / copied.name)
            return {"source": "single_file", "path": str(out), "file": copied.name, "kind": kind}
        if arch is None:
            raise LoRAFactoryError("MODEL_INVALID", f"「{src.name}」は SD1.5 / SDXL / Flux のチェックポイントとして認識できません。",
                                   f"'{src.name}' is not recognised as an SD1.5 / SDXL / Flux checkpoint.", 422,
                                   detail={"path": str(src)})
        ctx.log(f"single-file checkpoint: {arch}; converting to a diffusers folder")
        config = _config_folder(spec, ctx, arch)
        _convert_single_file(copied, arch, config, out)
        record_source_file(out, copied)  # A1111 / sd-scripts identify the base by this file's hashes
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    ctx.progress(1, 1)
    return {"source": "single_file", "file": src.name, "architecture": arch, "path": str(out),
            "config": str(config) if config else "hub", **_summary(out)}


def _config_folder(spec: dict[str, Any], ctx: Any, arch: str) -> Path | None:
    """A local diffusers folder of ``arch`` whose configs ``from_single_file`` may use (None: ask the Hub)."""
    workspace = ctx.workspace
    if spec.get("config"):
        path = workspace.resolve_ref(str(spec["config"]), "models", "image")
        found = detect_folder_arch(path)
        if found != arch:
            raise LoRAFactoryError("MODEL_INVALID", f"設定の参照先「{spec['config']}」は {arch} の diffusers モデルではありません({found})。",
                                   f"The config model '{spec['config']}' is not a diffusers {arch} model ({found}).", 422,
                                   detail={"field": "config", "architecture": found, "expected": arch})
        return path
    root = Path(workspace.home) / "models" / "image"
    for candidate in sorted(root.iterdir()) if root.is_dir() else []:
        if not candidate.name.startswith(".") and candidate.is_dir() and detect_folder_arch(candidate) == arch:
            ctx.log(f"configs from the local model {candidate.name}")
            return candidate
    return None


def _convert_single_file(checkpoint: Path, arch: str, config: Path | None, out: Path) -> None:
    import diffusers

    pipeline_cls = getattr(diffusers, SINGLE_FILE_PIPELINES[arch])
    kwargs: dict[str, Any] = {"config": str(config), "local_files_only": True} if config else {"config": REFERENCE_REPOS[arch]}
    if arch in ("sd15", "sd2"):
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    try:
        pipe = pipeline_cls.from_single_file(str(checkpoint), **kwargs)
    except LoRAFactoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - offline without a local config, or a damaged file
        raise LoRAFactoryError(
            "SINGLE_FILE_FAILED",
            f"チェックポイントを変換できませんでした: {exc}。同じ種類 ({arch}) の diffusers モデルを models/image/ に置くか、"
            "config に指定してください(設定ファイルだけ使います)。",
            f"The checkpoint could not be converted: {exc}. Put a diffusers {arch} model in models/image/ (or name it "
            "in 'config'): only its configuration files are used.", 422,
            detail={"architecture": arch, "reason": str(exc)[:500]}) from exc
    pipe.save_pretrained(str(out), safe_serialization=True)


def _tagger(spec: dict[str, Any], ctx: Any, out: Path, source: str) -> dict[str, Any]:
    """A WD v3 tagger is ONNX + CSV (no safetensors): the kit fetches it with ONNX as its weights."""
    import shutil

    if source == "hub":
        hub.download_repo(ctx, spec, out, require=TAGGER_FILES, allow_patterns=TAGGER_FILES, weight_suffixes=(".onnx",),
                          what_ja="WD タガー", what_en="a WD tagger")
    else:
        src = Path(str(spec.get("local_path") or ""))
        missing = [n for n in TAGGER_FILES if not (src / n).is_file()]
        if not src.is_absolute() or missing:
            raise LoRAFactoryError("MODEL_INVALID", f"タガーのフォルダには {', '.join(TAGGER_FILES)} が必要です。",
                                   f"A tagger folder needs {', '.join(TAGGER_FILES)}.", 422,
                                   detail={"path": str(src), "missing": missing})
        for name in TAGGER_FILES:
            shutil.copyfile(src / name, out / name)
    with open(out / "selected_tags.csv", newline="", encoding="utf-8") as fh:
        labels = sum(1 for _ in csv.DictReader(fh))
    (out / "tagger.json").write_text(json.dumps({"format": "wd-v3", "tags": labels}), encoding="utf-8")
    return {"source": source, "kind": "tagger", "path": str(out), "tags": labels}
