"""The ``lora_merge`` / ``lora_resize`` jobs: read the kohya files, compute (:mod:`lora_ops`), write a new
adapter folder (kohya file with sd-scripts' metadata, ``training_config.json`` with where it came from,
model card). The host publishes it as an adapter whose parents are the source adapters.

Why a diffusers file as well: diffusers (0.42, with transformers 5's flattened CLIP) cannot read a kohya
file's text-encoder layers, so the generation view would refuse the new adapter. The peft names come
from the sources' own diffusers files (each name run through the same kohya renaming), and the
per-module ranks go into the metadata (``rank_pattern`` / ``alpha_pattern``) so every module keeps scale 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lora_factory.kit import model_card


def _read(source: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str], dict[str, Any]]:
    from safetensors.torch import load_file

    from lora_factory.plugins.image.export import read_kohya_metadata

    folder = Path(source["path"])
    path = folder / source["file"]
    try:
        config = json.loads((folder / "training_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}
    return load_file(str(path)), read_kohya_metadata(path), config if isinstance(config, dict) else {}


def _metadata(first: dict[str, str], name: str, report: dict[str, Any], comment: str,
              merged_from: list[str] | None) -> dict[str, str]:
    """The first source's ``ss_*`` / ``modelspec.*`` keys with the new dimension, name and history
    (sd-scripts' merge and resize scripts keep the training metadata the same way)."""
    meta = {k: v for k, v in first.items() if not k.startswith("sshs_")}
    meta.update({"ss_network_dim": str(report["rank"]), "ss_network_alpha": str(report["rank"]),
                 "ss_output_name": name, "modelspec.title": name, "ss_training_comment": comment})
    if merged_from:
        meta["ss_merged_from"] = ",".join(merged_from)
    return meta


def _peft_names(sources: list[dict[str, Any]], arch: str) -> dict[str, tuple[str, str]]:
    """kohya module name -> (component, peft module path), from the sources' diffusers files."""
    import torch
    from safetensors import safe_open

    from lora_factory.plugins.image.export import DIFFUSERS_WEIGHT_NAME, kohya_state_dict

    names: dict[str, tuple[str, str]] = {}
    for source in sources:
        path = Path(source["path"]) / DIFFUSERS_WEIGHT_NAME
        if not path.is_file():
            continue
        with safe_open(str(path), framework="pt") as fh:
            keys = list(fh.keys())
        for key in keys:
            if not key.endswith(".lora_A.weight"):
                continue
            component, rest = key.split(".", 1)
            (kohya,) = [k for k in kohya_state_dict({component: {rest: torch.zeros(1)}}, 1.0, arch)
                        if k.endswith(".lora_down.weight")]
            names[kohya[: -len(".lora_down.weight")]] = (component, rest[: -len(".lora_A.weight")])
    return names


def save_diffusers_file(out: Path, tensors: dict[str, Any], names: dict[str, tuple[str, str]], arch: str) -> str | None:
    """``pytorch_lora_weights.safetensors`` of the new adapter (None when a module has no known peft name)."""
    from lora_factory.plugins.image import lora_ops

    parts: dict[str, dict[str, Any]] = {}
    ranks: dict[str, dict[str, int]] = {}
    for name, mod in lora_ops.modules(tensors).items():
        if name not in names:
            return None
        component, path = names[name]
        parts.setdefault(component, {})[f"{path}.lora_A.weight"] = mod["down"]
        parts[component][f"{path}.lora_B.weight"] = mod["up"] * mod["scale"]  # scale folded in: alpha = rank
        # matched as a suffix: without "text_model." the name fits a flattened (transformers 5) CLIP and an older one
        ranks.setdefault(component, {})[path.removeprefix("text_model.")] = int(mod["down"].shape[0])
    metadata = {}
    for component, per_module in ranks.items():
        common = max(set(per_module.values()), key=list(per_module.values()).count)
        odd = {p: r for p, r in per_module.items() if r != common}
        metadata[f"{component}_lora_adapter_metadata"] = {
            "r": common, "lora_alpha": common, "rank_pattern": odd, "alpha_pattern": odd,
            "target_modules": sorted(per_module), "init_lora_weights": True}
    if arch == "sdxl":
        from diffusers import StableDiffusionXLPipeline as Pipeline
    else:
        from diffusers import StableDiffusionPipeline as Pipeline
    Pipeline.save_lora_weights(str(out), safe_serialization=True,
                               **{f"{c}_lora_layers": {k: v.contiguous() for k, v in state.items()}
                                  for c, state in parts.items()}, **metadata)
    from lora_factory.plugins.image.export import DIFFUSERS_WEIGHT_NAME

    return DIFFUSERS_WEIGHT_NAME


def run_lora_op(spec: dict[str, Any], ctx: Any) -> dict[str, Any]:
    from lora_factory.plugins.image import lora_ops
    from lora_factory.plugins.image.export import save_kohya_file

    target, params, name = spec["target"], spec["params"], spec["output_name"]
    out = Path(ctx.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    sources = spec["sources"]
    loaded = []
    for i, source in enumerate(sources):
        ctx.log(f"read {source['ref']}/{source['file']} (weight {source['weight']})")
        loaded.append(_read(source))
        ctx.progress(i + 1, len(sources) + 1)
        if ctx.should_stop():
            return {"stopped": True}
    refs = [str(s["ref"]) for s in sources]
    if target == "lora_merge":
        tensors, report = lora_ops.merge([t for t, _, _ in loaded], [float(s["weight"]) for s in sources], params.get("rank"))
        comment = "merged by LoRA Factory: " + " + ".join(f"{s['weight']} * {s['ref']}" for s in sources)
        comment += f" (SVD to rank {params['rank']})" if params.get("rank") else " (exact: ranks stacked)"
    else:
        tensors, report = lora_ops.resize(loaded[0][0], int(params["rank"]))
        comment = f"resized by LoRA Factory: {refs[0]} to rank {params['rank']} (SVD)"
    ctx.log(comment + "; " + json.dumps({k: v for k, v in report.items() if k != "ranks"}))
    first_meta, first_config = loaded[0][1], loaded[0][2]
    file_name = f"{name}.safetensors"
    save_kohya_file(out / file_name, tensors, _metadata(first_meta, name, report, comment,
                                                        refs if target == "lora_merge" else None), params["precision"])
    arch = spec.get("architecture") or first_config.get("architecture")
    diffusers_file = save_diffusers_file(out, tensors, _peft_names(sources, arch or "sd15"), arch or "sd15")
    ctx.progress(len(sources) + 1, len(sources) + 1)
    base_ref = spec.get("base_model_ref") or first_config.get("base_model")
    history = {"operation": target, "sources": [{"adapter": s["ref"], "weight": s["weight"]} for s in sources],
               "rank": params.get("rank"), **report}
    model_card.write_adapter_metadata(
        out, modality="image",
        spec={"output_name": name, "base_model_ref": base_ref, "dataset_ref": first_config.get("dataset")},
        params={"rank": report["rank"], "alpha": report["rank"], "operation": target, "precision": params["precision"]},
        result={k: v for k, v in report.items() if k != "worst_module"}, library_name="diffusers",
        extra={"architecture": arch, "kohya_file": file_name, "diffusers_file": diffusers_file, "derived_from": history},
        extra_sections={"由来 / derived from": "\n".join(
            [f"- {comment}"] + [f"- `{s['ref']}` × {s['weight']}" for s in sources])},
        tags=["image", "text-to-image", *([arch] if arch else [])])
    checks = {k: report[k] for k in ("kept_energy_mean", "kept_energy_min", "relative_error_max") if k in report}
    return {"files": [file_name, *([diffusers_file] if diffusers_file else []), "README.md", "training_config.json"],
            "primary": file_name,
            "opens_in": ["AUTOMATIC1111", "Forge", "ComfyUI", "diffusers"],
            "commands": [f"cp {file_name} <stable-diffusion-webui>/models/Lora/  # then <lora:{name}:1>"],
            "checks": {"rank": report["rank"], "modules": report["modules"], **checks},
            "publish_as": "adapter", "parents": refs, "warnings": []}
