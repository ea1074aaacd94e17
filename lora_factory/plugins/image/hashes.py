"""The hashes A1111, Civitai and sd-scripts identify models by.

- A1111's ``Model hash`` is its "sha256 short": the first 10 hex digits of the SHA-256 of the whole
  checkpoint file. A base we imported from one ``.safetensors`` keeps that file's hashes (recorded at
  import in :data:`SOURCE_FILE`), so our PNGs link to the same Civitai model; for any other diffusers
  folder it is the hash of the main weights file (``unet/`` or ``transformer/``
  ``diffusion_pytorch_model.safetensors``).
- A LoRA's ``Lora hashes`` entry is the first 12 hex digits of the kohya file's ``sshs_model_hash``
  (A1111 uses the same metadata field when present).
- sd-scripts' ``ss_sd_model_hash`` is its legacy hash (8 hex of 64 KiB at offset 1 MiB) and
  ``ss_new_sd_model_hash`` the full SHA-256, both of the checkpoint file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

SOURCE_FILE = "lora_factory_source.json"
MAIN_WEIGHTS = ("unet/diffusion_pytorch_model.safetensors", "transformer/diffusion_pytorch_model.safetensors",
                "unet/diffusion_pytorch_model.bin")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def legacy_model_hash(path: Path) -> str:
    """sd-scripts' ``train_util.model_hash`` (A1111's old 8-digit hash)."""
    with open(path, "rb") as fh:
        fh.seek(0x100000)
        return hashlib.sha256(fh.read(0x10000)).hexdigest()[:8]


def record_source_file(folder: Path, checkpoint: Path) -> dict[str, str]:
    """Remember the hashes of the single file a diffusers folder was converted from (written atomically)."""
    info = {"file": checkpoint.name, "sha256": file_sha256(checkpoint), "legacy_hash": legacy_model_hash(checkpoint)}
    tmp = folder / f".{SOURCE_FILE}.tmp"
    tmp.write_text(json.dumps(info, indent=2), encoding="utf-8")
    tmp.replace(folder / SOURCE_FILE)
    return info


def source_file_hashes(folder: Path) -> dict[str, Any] | None:
    """The recorded single-file hashes of a base folder, or None (not imported from one file)."""
    try:
        return json.loads((Path(folder) / SOURCE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def model_hash(base: Path) -> str | None:
    """A1111's ``Model hash`` (10 hex) of a base: a checkpoint file, or a diffusers folder (see the module doc)."""
    base = Path(base)
    if base.is_file():
        return file_sha256(base)[:10]
    recorded = source_file_hashes(base)
    if recorded and recorded.get("sha256"):
        return str(recorded["sha256"])[:10]
    for rel in MAIN_WEIGHTS:
        if (base / rel).is_file():
            return file_sha256(base / rel)[:10]
    return None


def lora_short_hash(adapter_folder: Path) -> str | None:
    """The 12-hex A1111 ``Lora hashes`` entry: the start of the kohya file's ``sshs_model_hash``."""
    from safetensors import safe_open

    folder = Path(adapter_folder)
    files = [folder] if folder.is_file() else sorted(folder.glob("*.safetensors"))
    for path in files:
        try:
            with safe_open(str(path), framework="pt") as fh:
                value = (fh.metadata() or {}).get("sshs_model_hash")
        except Exception:  # noqa: BLE001 - not a safetensors file we can read: try the next
            continue
        if value:
            return value[:12]
    return None


# kohya's ss_base_model_version prefixes -> our architecture names
_KOHYA_VERSIONS = (("sdxl", "sdxl"), ("sd_v1", "sd15"), ("sd_v2", "sd2"), ("flux", "flux"))


def adapter_architecture(adapter_folder: Path) -> str | None:
    """The base architecture an adapter was trained for: ours record it in ``training_config.json``; a kohya
    file from elsewhere says it in ``ss_base_model_version``. None when nothing says."""
    from safetensors import safe_open

    folder = Path(adapter_folder)
    try:
        arch = json.loads((folder / "training_config.json").read_text(encoding="utf-8")).get("architecture")
        if arch:
            return str(arch)
    except (OSError, ValueError, AttributeError):
        pass
    for path in sorted(folder.glob("*.safetensors")) if folder.is_dir() else [folder]:
        try:
            with safe_open(str(path), framework="pt") as fh:
                version = str((fh.metadata() or {}).get("ss_base_model_version") or "")
        except Exception:  # noqa: BLE001 - unreadable: try the next file
            continue
        for prefix, arch in _KOHYA_VERSIONS:
            if version.startswith(prefix):
                return arch
    return None
