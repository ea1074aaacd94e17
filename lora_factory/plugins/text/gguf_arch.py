"""What llama.cpp needs to know about a transformers architecture: its GGUF name, its hyper-parameters
and how a weight is named and laid out there (the part of llama.cpp's ``convert_hf_to_gguf.py`` that
our exports use, written against the ``gguf`` package's own ``TensorNameMap``).

Why a short table instead of "any architecture": a GGUF that llama.cpp loads but computes wrongly is
worse than a refusal. Llama-family models (Llama, Mistral) are converted and checked by llama.cpp in
the tests; anything else is refused with the reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lora_factory.kit import LoRAFactoryError

# transformers architecture -> (llama.cpp architecture, whether q/k rows are permuted for its RoPE)
SUPPORTED = {
    "LlamaForCausalLM": ("llama", True),
    "MistralForCausalLM": ("llama", True),
}


def unsupported(reason_ja: str, reason_en: str, **detail: Any) -> LoRAFactoryError:
    return LoRAFactoryError("EXPORT_UNSUPPORTED", f"このアダプターは GGUF にできません: {reason_ja}",
                            f"This adapter cannot be exported to GGUF: {reason_en}", 422, detail=detail or None)


@dataclass
class GGUFArch:
    """A base model's architecture as llama.cpp names and computes it."""

    arch: str  # llama.cpp's name, e.g. "llama"
    config: dict[str, Any]
    permute_qk: bool

    @property
    def n_layers(self) -> int:
        return int(self.config["num_hidden_layers"])

    @property
    def n_head(self) -> int:
        return int(self.config["num_attention_heads"])

    @property
    def n_head_kv(self) -> int:
        return int(self.config.get("num_key_value_heads") or self.n_head)

    @property
    def head_dim(self) -> int:
        return int(self.config.get("head_dim") or self.config["hidden_size"] // self.n_head)

    def name_map(self) -> Any:
        import gguf

        arch = next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == self.arch)
        return gguf.get_tensor_name_map(arch, self.n_layers)

    def gguf_name(self, hf_module: str, suffix: str = ".weight") -> str:
        """``model.layers.0.self_attn.q_proj`` -> ``blk.0.attn_q.weight``; a module llama.cpp lacks is refused."""
        found = self.name_map().get_name(hf_module)
        if found is None:
            raise unsupported(f"llama.cpp に対応する重みがありません: {hf_module}",
                              f"llama.cpp has no tensor for {hf_module}", module=hf_module)
        return found + suffix

    def permute_rows(self, array: Any, hf_module: str) -> Any:
        """llama.cpp's RoPE pairs the halves of each head differently from transformers': the rows of
        q_proj / k_proj (the output side) are reordered as ``convert_hf_to_gguf.py`` does."""
        if not self.permute_qk:
            return array
        if hf_module.endswith("self_attn.q_proj"):
            heads = self.n_head
        elif hf_module.endswith("self_attn.k_proj"):
            heads = self.n_head_kv
        else:
            return array
        shape = array.shape
        return array.reshape(heads, 2, shape[0] // heads // 2, *shape[1:]).swapaxes(1, 2).reshape(shape)

    def add_hparams(self, writer: Any) -> None:
        c = self.config
        writer.add_context_length(int(c.get("max_position_embeddings") or 2048))
        writer.add_embedding_length(int(c["hidden_size"]))
        writer.add_block_count(self.n_layers)
        writer.add_feed_forward_length(int(c["intermediate_size"]))
        writer.add_head_count(self.n_head)
        writer.add_head_count_kv(self.n_head_kv)
        writer.add_rope_dimension_count(self.head_dim)
        writer.add_layer_norm_rms_eps(float(c.get("rms_norm_eps") or 1e-6))
        rope = c.get("rope_parameters") or c.get("rope_scaling") or {}
        theta = c.get("rope_theta") or (rope.get("rope_theta") if isinstance(rope, dict) else None) or 10000.0
        writer.add_rope_freq_base(float(theta))
        if isinstance(rope, dict) and rope.get("rope_type") not in (None, "default"):
            raise unsupported(f"RoPE スケーリング「{rope.get('rope_type')}」には未対応です",
                              f"RoPE scaling '{rope.get('rope_type')}' is not supported yet", rope=rope)
        if self.head_dim != int(c["hidden_size"]) // self.n_head:
            writer.add_key_length(self.head_dim)
            writer.add_value_length(self.head_dim)
        writer.add_vocab_size(int(c["vocab_size"]))


def read_arch(model_dir: Path) -> GGUFArch:
    """The base model's architecture, or ``EXPORT_UNSUPPORTED`` naming it and what is supported."""
    try:
        config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise unsupported(f"ベースモデルの config.json が読めません ({exc})",
                          f"the base model's config.json cannot be read ({exc})") from exc
    names = config.get("architectures") or []
    for name in names:
        if name in SUPPORTED:
            arch, permute = SUPPORTED[name]
            return GGUFArch(arch, config, permute)
    shown = ", ".join(names) or config.get("model_type") or "?"
    raise unsupported(f"アーキテクチャ「{shown}」には未対応です(対応: {', '.join(SUPPORTED)})",
                      f"the architecture '{shown}' is not supported (supported: {', '.join(SUPPORTED)})",
                      architecture=shown, supported=sorted(SUPPORTED))


OUTTYPES = ("f32", "f16", "bf16", "q8_0")


def quantized(array: Any, outtype: str) -> tuple[Any, Any]:
    """``(data, GGMLQuantizationType)`` for a 2-D float32 array; q8_0 needs rows of a multiple of 32
    (else f16, as llama.cpp's converter falls back); 1-D tensors (norms) stay f32."""
    import gguf
    import numpy as np

    array = np.ascontiguousarray(array, dtype=np.float32)
    qtype = {"f32": gguf.GGMLQuantizationType.F32, "f16": gguf.GGMLQuantizationType.F16,
             "bf16": gguf.GGMLQuantizationType.BF16, "q8_0": gguf.GGMLQuantizationType.Q8_0}[outtype]
    if array.ndim < 2:
        qtype = gguf.GGMLQuantizationType.F32
    elif qtype == gguf.GGMLQuantizationType.Q8_0 and array.shape[-1] % 32:
        qtype = gguf.GGMLQuantizationType.F16
    return gguf.quants.quantize(array, qtype), qtype


def file_type(outtype: str) -> int:
    import gguf

    return {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
            "bf16": gguf.LlamaFileType.MOSTLY_BF16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[outtype]


def publish(writer: Any, tmp: Path, out_path: Path) -> None:
    """Write a filled ``GGUFWriter`` (header, metadata, tensors) to its temporary file, then rename it into
    place: a reader never sees a half-written GGUF."""
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    tmp.replace(out_path)
