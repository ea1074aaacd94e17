"""Several kohya LoRAs merged into one, and a LoRA's rank changed by SVD (sd-scripts' ``merge_lora.py``
with ``--concat``, ``svd_merge_lora.py`` and ``resize_lora.py``).

Each module's LoRA is the update ``dW = (alpha / r) * up @ down``. A merge of LoRAs with weights ``w_i``
is ``sum(w_i * dW_i)``: written exactly by stacking the ranks (``down`` rows and scaled ``up`` columns,
rank = the sum of the ranks, ``alpha = rank``), or, with a ``rank``, as that sum's best approximation
of that rank (truncated SVD). A resize is the SVD of one LoRA's ``dW`` cut to the new rank.

Why the SVD through QR: ``dW`` has rank <= r, so ``up = Qa Ra`` and ``down.T = Qb Rb`` leave an r x r
core ``Ra @ Rb.T`` whose SVD gives dW's singular values exactly, without forming the (out x in) matrix:
a full SDXL LoRA resizes in seconds on a CPU. The kept energy (Frobenius) per module,
``sqrt(sum(S[:k]^2) / sum(S^2))``, is sd-scripts' ``fro_retained``; ``sqrt(1 - kept^2)`` is the relative
(Frobenius) error the cut introduces in that module's update.
"""

from __future__ import annotations

import math
from typing import Any

DOWN, UP, ALPHA = ".lora_down.weight", ".lora_up.weight", ".alpha"


def modules(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``lora_unet_..._to_q`` -> {"down", "up", "alpha"} (alpha defaults to the rank, as kohya's loaders do)."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in state.items():
        for suffix, part in ((DOWN, "down"), (UP, "up"), (ALPHA, "alpha")):
            if key.endswith(suffix):
                out.setdefault(key[: -len(suffix)], {})[part] = value
    for name, mod in out.items():
        if "down" not in mod or "up" not in mod:
            raise ValueError(f"incomplete LoRA module {name}")
        rank = mod["down"].shape[0]
        mod["alpha"] = float(mod["alpha"]) if "alpha" in mod else float(rank)
        mod["scale"] = mod["alpha"] / rank
    return out


def _flat(mod: dict[str, Any]) -> tuple[Any, Any, tuple[int, ...]]:
    """(up as out x r, down as r x in, the shape of dW): conv LoRAs flattened like kohya's resize."""
    up, down = mod["up"].float(), mod["down"].float()
    shape = (up.shape[0], *down.shape[1:])
    return up.reshape(up.shape[0], -1), down.reshape(down.shape[0], -1), shape


def delta(mod: dict[str, Any]) -> Any:
    """The module's full update ``(alpha / r) * up @ down`` in the weight's shape."""
    up, down, shape = _flat(mod)
    return (mod["scale"] * (up @ down)).reshape(shape)


def _as_kohya(name: str, up: Any, down: Any, shape: tuple[int, ...], conv_up: bool) -> dict[str, Any]:
    """Tensors of one module with ``alpha = rank`` (scale 1), shapes as the original layers'."""
    import torch

    rank = down.shape[0]
    down = down.reshape(rank, *shape[1:])
    up = up.reshape(up.shape[0], rank, 1, 1) if conv_up else up
    return {name + DOWN: down.contiguous(), name + UP: up.contiguous(), name + ALPHA: torch.tensor(float(rank))}


def svd_low_rank(up: Any, down: Any, rank: int) -> tuple[Any, Any, dict[str, float]]:
    """``up @ down`` (already scaled) cut to ``rank``: (new up, new down, {"kept", "rank"})."""
    import torch

    qa, ra = torch.linalg.qr(up)
    qb, rb = torch.linalg.qr(down.T)
    u, s, vh = torch.linalg.svd(ra @ rb.T, full_matrices=False)
    k = max(1, min(rank, int(s.numel())))
    total = float((s ** 2).sum())
    kept = math.sqrt(float((s[:k] ** 2).sum()) / total) if total > 0 else 1.0
    root = s[:k].sqrt()
    new_up = (qa @ u[:, :k]) * root
    new_down = root[:, None] * (vh[:k] @ qb.T)
    return new_up, new_down, {"kept": kept, "rank": k}


def merge(states: list[dict[str, Any]], weights: list[float], rank: int | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The LoRAs' weighted sum as one kohya state dict; (tensors, report)."""
    import torch

    parsed = [modules(s) for s in states]
    names = sorted({n for p in parsed for n in p})
    out: dict[str, Any] = {}
    kept: dict[str, float] = {}
    for name in names:
        ups, downs, shape, conv_up = [], [], None, False
        for mods, weight in zip(parsed, weights, strict=True):
            if name not in mods:
                continue
            up, down, shape = _flat(mods[name])
            conv_up = conv_up or mods[name]["up"].ndim == 4
            ups.append(up * (weight * mods[name]["scale"]))
            downs.append(down)
        up, down = torch.cat(ups, dim=1), torch.cat(downs, dim=0)
        if rank is not None and rank < down.shape[0]:
            up, down, info = svd_low_rank(up, down, rank)
            kept[name] = info["kept"]
        out.update(_as_kohya(name, up, down, shape, conv_up))
    return out, _report(out, kept, len(names))


def resize(state: dict[str, Any], rank: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """One LoRA cut to ``rank`` (modules already at or below it are rewritten exactly); (tensors, report)."""
    out: dict[str, Any] = {}
    kept: dict[str, float] = {}
    mods = modules(state)
    for name, mod in sorted(mods.items()):
        up, down, shape = _flat(mod)
        new_up, new_down, info = svd_low_rank(up * mod["scale"], down, rank)
        kept[name] = info["kept"]
        out.update(_as_kohya(name, new_up, new_down, shape, mod["up"].ndim == 4))
    return out, _report(out, kept, len(mods))


def _report(tensors: dict[str, Any], kept: dict[str, float], n_modules: int) -> dict[str, Any]:
    ranks = sorted({int(v.shape[0]) for k, v in tensors.items() if k.endswith(DOWN)})
    report: dict[str, Any] = {"modules": n_modules, "ranks": ranks, "rank": max(ranks) if ranks else 0}
    if kept:
        values = list(kept.values())
        report.update({"kept_energy_mean": sum(values) / len(values), "kept_energy_min": min(values),
                       "relative_error_max": math.sqrt(max(0.0, 1 - min(values) ** 2)),
                       "worst_module": min(kept, key=kept.__getitem__)})
    return report
