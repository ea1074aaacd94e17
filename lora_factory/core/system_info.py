"""CPU / RAM / GPU / VRAM / disk / library versions, without importing torch.

GPUs are read from ``nvidia-smi`` and versions from package metadata, so ``doctor`` and
``GET /api/system`` stay fast and never load CUDA into the server.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil

LIBRARIES = ("lora-factory", "torch", "transformers", "peft", "trl", "accelerate", "datasets", "diffusers",
             "bitsandbytes", "safetensors", "tokenizers", "huggingface_hub", "xformers", "flash-attn",
             "triton", "fastapi", "pydantic", "pluggy")


def library_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def gpus(timeout: float = 10) -> list[dict[str, Any]]:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=index,name,memory.total,memory.used,driver_version", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=timeout, check=True,
        ).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    found = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 5:
            found.append({"index": int(parts[0]), "name": parts[1], "vram_total_mb": int(float(parts[2])),
                          "vram_used_mb": int(float(parts[3])), "driver": parts[4]})
    return found


def system_info(home: Path) -> dict[str, Any]:
    vm = psutil.virtual_memory()
    disk = shutil.disk_usage(home)
    return {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu": {"name": platform.processor() or platform.machine(), "cores_logical": os.cpu_count(),
                "cores_physical": psutil.cpu_count(logical=False)},
        "ram": {"total_bytes": vm.total, "available_bytes": vm.available},
        "gpus": gpus(),
        "disk": {"path": str(home), "total_bytes": disk.total, "free_bytes": disk.free},
        "versions": library_versions(),
    }
