"""A PEFT LoRA written as a GGUF LoRA adapter, the file llama.cpp (``--lora``), llama-cpp-python
(``Llama(lora_path=...)``) and Ollama (``ADAPTER``) load on top of a GGUF base model.

The layout is llama.cpp's ``convert_lora_to_gguf.py``: metadata ``general.type=adapter``,
``adapter.type=lora``, ``adapter.lora.alpha``; one ``<gguf tensor>.weight.lora_a`` (rank x in) and
``.lora_b`` (out x rank) per adapted weight, named by the base architecture's ``TensorNameMap``;
the rows of q / k's ``lora_b`` permuted like the base weights. llama.cpp scales each pair by
``alpha / rank``; where peft's scale differs (rsLoRA, per-module rank or alpha patterns) the
difference is folded into ``lora_b`` so the product is exactly peft's.

Refused, with the reason: trained embeddings / LM head (``modules_to_save`` or LoRA on them), DoRA,
LoRA biases, and architectures llama.cpp computes differently (see :mod:`gguf_arch`).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from lora_factory.plugins.text.gguf_arch import GGUFArch, publish, quantized, read_arch, unsupported

_EMBEDDING_MODULES = ("embed_tokens", "lm_head", "wte", "embed_in", "embed_out")
_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<ab>[AB])(?:\.default)?\.weight$")


def read_adapter_config(adapter_dir: Path) -> dict[str, Any]:
    return json.loads((Path(adapter_dir) / "adapter_config.json").read_text(encoding="utf-8"))


def check_exportable(config: dict[str, Any]) -> None:
    """What llama.cpp cannot apply, refused before any tensor is read (the server calls this too)."""
    if str(config.get("peft_type", "LORA")).upper() != "LORA":
        raise unsupported(f"LoRA 以外のアダプター ({config.get('peft_type')}) です",
                          f"it is not a LoRA ({config.get('peft_type')})")
    saved = [m for m in config.get("modules_to_save") or [] if m]
    if saved:
        raise unsupported(f"全体を学習したモジュール {saved} (embed_tokens / lm_head など) は GGUF LoRA に入りません。"
                          "マージしたモデルを GGUF にしてください",
                          f"fully trained modules {saved} (embed_tokens / lm_head ...) do not fit in a GGUF LoRA; "
                          "export the merged model as GGUF instead", modules_to_save=saved)
    targets = config.get("target_modules") or []
    targets = [targets] if isinstance(targets, str) else list(targets)
    trained_embeddings = [t for t in targets if any(e in t for e in _EMBEDDING_MODULES)]
    if trained_embeddings:
        raise unsupported(f"埋め込み / 出力層 ({trained_embeddings}) の LoRA は llama.cpp が適用しません",
                          f"a LoRA on the embeddings / output head ({trained_embeddings}) is not applied by llama.cpp",
                          target_modules=trained_embeddings)
    if config.get("use_dora"):
        raise unsupported("DoRA は llama.cpp の LoRA 形式にありません", "DoRA has no llama.cpp LoRA form")
    if config.get("lora_bias") or config.get("bias") not in (None, "none"):
        raise unsupported("バイアスを学習したアダプターです", "the adapter trains biases")


def _module_scale(config: dict[str, Any], module: str, rank: int) -> float:
    """peft's scaling for one module: ``alpha / r`` (``alpha / sqrt(r)`` with rsLoRA), with patterns."""
    alpha = float(config.get("lora_alpha") or rank)
    for pattern, value in (config.get("alpha_pattern") or {}).items():
        if re.search(rf"(^|\.){pattern}$", module):
            alpha = float(value)
    return alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank


def lora_pairs(adapter_dir: Path) -> dict[str, dict[str, Any]]:
    """``{hf module: {"A": array, "B": array}}`` from ``adapter_model.safetensors`` (float32 numpy)."""
    from safetensors import safe_open

    pairs: dict[str, dict[str, Any]] = {}
    with safe_open(str(Path(adapter_dir) / "adapter_model.safetensors"), framework="pt") as fh:
        for key in fh.keys():
            match = _KEY.match(key)
            if not match:
                raise unsupported(f"想定外の重み {key} があります", f"unexpected tensor {key}", tensor=key)
            pairs.setdefault(match["module"], {})[match["ab"]] = fh.get_tensor(key).float().numpy()
    return pairs


def write_gguf_lora(adapter_dir: Path, base_dir: Path, out_path: Path, outtype: str = "f16",
                    name: str | None = None) -> dict[str, Any]:
    """Write ``out_path`` (temp file, then renamed). :return: ``{"tensors", "alpha", "rank", "types"}``."""
    import gguf

    config = read_adapter_config(adapter_dir)
    check_exportable(config)
    arch: GGUFArch = read_arch(base_dir)
    pairs = lora_pairs(adapter_dir)
    if not pairs:
        raise unsupported("LoRA の重みがありません", "the adapter holds no LoRA weights")
    rank = int(config.get("r") or next(iter(pairs.values()))["A"].shape[0])
    alpha = float(config.get("lora_alpha") or rank)
    out_path = Path(out_path)
    tmp = out_path.with_name(f".tmp-{out_path.name}")
    writer = gguf.GGUFWriter(str(tmp), arch.arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_name(name or Path(adapter_dir).name)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    types: dict[str, int] = {}
    for module in sorted(pairs):
        a, b = pairs[module].get("A"), pairs[module].get("B")
        if a is None or b is None:
            raise unsupported(f"{module} の lora_A / lora_B が揃っていません", f"{module} lacks lora_A or lora_B")
        if any(e in module.rsplit(".", 1)[-1] for e in _EMBEDDING_MODULES):
            raise unsupported(f"{module} (埋め込み / 出力層) の LoRA は llama.cpp が適用しません",
                              f"a LoRA on {module} (embeddings / output head) is not applied by llama.cpp")
        module_rank = a.shape[0]
        wanted, applied = _module_scale(config, module, module_rank), alpha / module_rank
        if not math.isclose(wanted, applied, rel_tol=1e-6):
            b = b * (wanted / applied)  # llama.cpp applies alpha / rank: fold the rest into B
        base_name = arch.gguf_name(module)
        b = arch.permute_rows(b, module)
        for suffix, array in ((".lora_a", a), (".lora_b", b)):
            data, qtype = quantized(array, outtype)
            writer.add_tensor(base_name + suffix, data, raw_dtype=qtype)
            types[qtype.name] = types.get(qtype.name, 0) + 1
    publish(writer, tmp, out_path)
    return {"tensors": 2 * len(pairs), "alpha": alpha, "rank": rank, "types": types, "architecture": arch.arch}
