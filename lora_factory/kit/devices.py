"""Device, dtype and attention choice, the same for training and inference of every modality.

Why one place: an adapter trained in bf16 with sdpa and queried in fp32 with eager attention gives
different answers; every plugin asks here so the two always agree.
"""

from __future__ import annotations

import importlib.util
from typing import Any


def cuda_available() -> bool:
    """True when torch sees a CUDA device (False when torch is not even installed)."""
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


def pick_device() -> str:
    """``cuda`` when present, else ``cpu`` (MPS is not offered: several training ops are missing there)."""
    return "cuda" if cuda_available() else "cpu"


def pick_dtype(device: str, prefer_bf16: bool = True) -> Any:
    """bf16 on a GPU that supports it, fp16 on an older GPU when bf16 is not wanted, float32 on a CPU.

    fp32 on the CPU: half precision is slow there and does not train stably.
    """
    import torch

    if device == "cuda":
        if prefer_bf16 and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float16
    return torch.float32


def pick_attention(device: str) -> str:
    """``flash_attention_2`` only when the package is really installed and a GPU is there; else ``sdpa``."""
    if device == "cuda" and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def empty_cache() -> None:
    """Give cached GPU memory back (between two pipelines, after a job)."""
    if cuda_available():
        import torch

        torch.cuda.empty_cache()


def peak_memory_mb() -> float | None:
    """Peak GPU memory allocated since the process started, in MiB (None on a CPU)."""
    if not cuda_available():
        return None
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**20, 1)
