"""Optimizers and learning-rate schedules as kohya sd-scripts builds them (``library/train_util.py``:
``get_optimizer`` and ``get_scheduler_fix``), from the same maintained packages.

- ``adamw`` / ``adamw8bit``: torch's AdamW / bitsandbytes' AdamW8bit (CUDA); ``lion``: lion-pytorch's Lion,
  ``lion8bit``: bitsandbytes' Lion8bit (CUDA); ``prodigy``: prodigyopt; ``dadaptation``: dadaptation's
  DAdaptAdamPreprint (kohya's "DAdaptation"), ``dadaptadam``: DAdaptAdam; ``adafactor``: transformers'.
- ``optimizer_args`` go to the class as keyword arguments, as kohya's ``--optimizer_args`` do. Our AdamW keeps
  its class defaults (weight decay 0.01, betas 0.9 / 0.999, as sd-scripts), so ``ss_optimizer`` names only
  what the user gave.
- Adafactor with ``relative_step`` (kohya's default) computes its own rate: the groups lose their ``lr`` and the
  schedule is transformers' ``AdafactorSchedule``, recorded as ``adafactor:<lr>`` like sd-scripts does.
- Schedules are transformers' ``get_scheduler`` (sd-scripts' own), with ``num_cycles`` for
  ``cosine_with_restarts`` and ``power`` for ``polynomial``.

A missing package is a 422 naming what to install, checked when the job is submitted (:func:`check_available`,
no import) and again in the worker.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from lora_factory.kit import LoRAFactoryError

# optimizer -> (module to import, what to pip install)
PACKAGES: dict[str, tuple[str, str]] = {
    "adamw8bit": ("bitsandbytes", "bitsandbytes"), "lion8bit": ("bitsandbytes", "bitsandbytes"),
    "prodigy": ("prodigyopt", "prodigyopt"), "lion": ("lion_pytorch", "lion-pytorch"),
    "dadaptation": ("dadaptation", "dadaptation"), "dadaptadam": ("dadaptation", "dadaptation"),
    "adafactor": ("transformers", "transformers"),
}
CUDA_ONLY = {"adamw8bit": "adamw", "lion8bit": "lion"}  # bitsandbytes' 8-bit states need CUDA; the 32-bit twin
ADAPTIVE = ("prodigy", "dadaptation", "dadaptadam")  # learning-rate free: lr is a multiplier, ~1.0


def check_available(name: str) -> None:
    """422 ``OPTIMIZER_UNAVAILABLE`` when the optimizer's package is not installed (no import: server-safe).
    The 8-bit ones are not refused: without bitsandbytes (or CUDA) they fall back to their 32-bit twin."""
    module, pip_name = PACKAGES.get(name, ("", ""))
    if module and name not in CUDA_ONLY and importlib.util.find_spec(module) is None:
        raise LoRAFactoryError(
            "OPTIMIZER_UNAVAILABLE",
            f"オプティマイザ「{name}」にはパッケージ {pip_name} が必要です: pip install {pip_name}",
            f"The optimizer '{name}' needs the package {pip_name}: pip install {pip_name}", 422,
            detail={"field": "optimizer", "package": pip_name})


def resolve_name(name: str, device: str, log: Any) -> str:
    """``auto`` -> 8-bit AdamW on CUDA, AdamW elsewhere; a CUDA-only optimizer falls back on a CPU (logged)."""
    if name == "auto":
        return "adamw8bit" if device == "cuda" and importlib.util.find_spec("bitsandbytes") else "adamw"
    if name in CUDA_ONLY and (device != "cuda" or importlib.util.find_spec("bitsandbytes") is None):
        log(f"{name} は CUDA と bitsandbytes が必要です。{CUDA_ONLY[name]} を使います / "
            f"{name} needs CUDA and bitsandbytes: using {CUDA_ONLY[name]}")
        return CUDA_ONLY[name]
    return name


def _kwargs(args: dict[str, Any]) -> dict[str, Any]:
    """JSON lists back to the tuples the classes expect (``betas``)."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in args.items()}


def build_optimizer(name: str, groups: list[dict[str, Any]], lr: float, args: dict[str, Any],
                    log: Any) -> tuple[Any, dict[str, Any]]:
    """The optimizer over ``groups`` (each with its own ``lr``) and what it used: ``{"kwargs", "adafactor_lr"}``."""
    check_available(name)
    kwargs = _kwargs(args)
    adafactor_lr = None
    if name in ("adamw", "adamw8bit"):
        if name == "adamw8bit":
            import bitsandbytes as bnb

            cls = bnb.optim.AdamW8bit
        else:
            import torch

            cls = torch.optim.AdamW
        optimizer = cls(groups, lr=lr, **kwargs)
    elif name == "lion8bit":
        import bitsandbytes as bnb

        optimizer = bnb.optim.Lion8bit(groups, lr=lr, **kwargs)
    elif name == "lion":
        from lion_pytorch import Lion

        optimizer = Lion(groups, lr=lr, **kwargs)
    elif name in ADAPTIVE:
        if lr <= 0.1:
            log(f"{name} の学習率は 1.0 前後が推奨です (lr={lr}) / {name} expects a learning rate around 1.0 (lr={lr})")
        if len({g["lr"] for g in groups}) > 1:
            log(f"{name}: 最初の学習率だけが効きます / only the first learning rate takes effect")
        if name == "prodigy":
            from prodigyopt import Prodigy as cls
        elif name == "dadaptation":
            from dadaptation.experimental import DAdaptAdamPreprint as cls
        else:
            from dadaptation import DAdaptAdam as cls
        optimizer = cls(groups, lr=lr, **kwargs)
    elif name == "adafactor":
        from transformers.optimization import Adafactor

        kwargs.setdefault("relative_step", True)
        if kwargs.get("warmup_init"):
            kwargs["relative_step"] = True
        if kwargs["relative_step"]:  # Adafactor's own step size: the groups' rates are unused (as in sd-scripts)
            groups = [{k: v for k, v in g.items() if k != "lr"} for g in groups]
            adafactor_lr, lr = lr, None
        optimizer = Adafactor(groups, lr=lr, **kwargs)
    else:
        raise LoRAFactoryError("INVALID_TRAIN_PARAMS", f"未知のオプティマイザ: {name}", f"Unknown optimizer: {name}",
                               422, detail={"field": "optimizer"})
    return optimizer, {"kwargs": kwargs, "adafactor_lr": adafactor_lr}


def class_path(optimizer: Any) -> str:
    """``module.Class`` of the optimizer, unwrapped from accelerate's wrapper: sd-scripts' ``ss_optimizer``."""
    cls = type(getattr(optimizer, "optimizer", optimizer))
    return f"{cls.__module__}.{cls.__name__}"


def kohya_optimizer_field(optimizer: Any, kwargs: dict[str, Any]) -> str:
    """``ss_optimizer`` exactly as sd-scripts writes it: ``class.path(key=value,key=value)``."""
    args = ",".join(f"{k}={v}" for k, v in kwargs.items())
    return class_path(optimizer) + (f"({args})" if args else "")


def build_scheduler(name: str, optimizer: Any, *, warmup: int, total: int, num_cycles: int, power: float,
                    adafactor_lr: float | None) -> tuple[Any, str]:
    """transformers' schedule (sd-scripts' ``get_scheduler_fix``) and its kohya name for ``ss_lr_scheduler``."""
    from transformers.optimization import AdafactorSchedule, get_scheduler

    if adafactor_lr is not None:
        return AdafactorSchedule(optimizer, adafactor_lr), f"adafactor:{adafactor_lr}"
    specific: dict[str, Any] = {}
    if name == "cosine_with_restarts":
        specific["num_cycles"] = num_cycles
    elif name == "polynomial":
        specific["power"] = power
    scheduler = get_scheduler(name, optimizer=optimizer, num_warmup_steps=warmup, num_training_steps=total,
                              scheduler_specific_kwargs=specific or None)
    return scheduler, name
