"""Get a text base model: from the Hugging Face Hub, from a local folder, or built offline (tiny).

The mechanics (resumable per-file download, safetensors-first selection, byte progress, cancel,
recursive local import) are the plugin kit's; this module only says what a text model needs
(a ``config.json``) and builds the tiny demo model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lora_factory.kit import LoRAFactoryError, hub
from lora_factory.kit.hub import select_repo_files

__all__ = ["download_text_model", "select_repo_files"]


def download_text_model(spec: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Dispatch on ``spec["source"]``: ``hub``, ``local`` or ``tiny``; files land in ``ctx.output_dir``."""
    source = spec.get("source", "hub")
    out = Path(ctx.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if source == "tiny":
        from lora_factory.plugins.text.tiny_model import build_tiny_text_model

        ctx.log("tiny モデルを生成します / building the tiny random model")
        result = build_tiny_text_model(out, seed=int(spec.get("seed", 0)))
        ctx.progress(1, 1)
        return {"source": "tiny", **result}
    if source == "local":
        return hub.import_local_folder(ctx, spec.get("local_path") or "", out, require=("config.json",))
    if source == "hub":
        return hub.download_repo(ctx, spec, out, require=("config.json",))
    raise LoRAFactoryError("INVALID_SOURCE", f"不明な取得元です: {source}(hub / local / tiny)",
                           f"Unknown source '{source}' (hub, local or tiny).", 422,
                           detail={"field": "source", "value": source})
