"""kohya's ``--full_bf16`` (issue 17, item 20): the network's weights, gradients and optimizer state in bf16, and
refused (422) unless the mixed precision is bf16, as sd-scripts refuses it."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.image.conftest import make_dataset, resolved, train_tiny


def test_full_bf16_needs_mixed_precision_bf16():
    from lora_factory.kit import LoRAFactoryError

    for precision in ("auto", "no", "fp16"):
        with pytest.raises(LoRAFactoryError) as err:
            resolved({"full_bf16": True, "mixed_precision": precision})
        assert err.value.http_status == 422 and err.value.detail["field"] == "full_bf16"
        assert "bf16" in err.value.message_en and "bf16" in err.value.message_ja
    assert resolved({"full_bf16": True, "mixed_precision": "bf16"})["params"]["full_bf16"] is True


def test_full_bf16_trains_the_network_in_bf16_with_a_finite_loss(tmp_path, tiny_sd15):
    import torch
    from safetensors.torch import load_file

    root = make_dataset(tmp_path / "chars", n=2, concept="1_mychar")
    params = {"full_bf16": True, "mixed_precision": "bf16", "dora": True, "rank": 4, "alpha": 2, "max_steps": 2,
              "batch_size": 2, "learning_rate": 1e-2, "train_text_encoder": True, "save_every_n_steps": 1,
              "sample_every_n_steps": 0, "sample_steps": 1, "save_precision": "fp32"}
    result, ctx = train_tiny(tmp_path / "ws", tiny_sd15, root, params, "b16", "bf1")
    assert math.isfinite(result["final_loss"]) and math.isfinite(result["first_loss"])
    checkpoint = next((Path(ctx.workspace.home) / "runs" / "bf1").rglob("training_state.pt")).parent
    for name in ("unet", "text_encoder"):
        tensors = load_file(str(checkpoint / f"adapter_{name}.safetensors"))
        assert tensors and {v.dtype for v in tensors.values()} == {torch.bfloat16}, name
        assert any(k.endswith("lora_dora_scale") for k in tensors)
    state = torch.load(checkpoint / "training_state.pt", map_location="cpu", weights_only=True)["optimizer"]["state"]
    moments = [s["exp_avg"] for s in state.values()]
    assert moments and {m.dtype for m in moments} == {torch.bfloat16}  # AdamW's state follows the bf16 weights
    assert any(m.abs().max() > 0 for m in moments)  # gradients reached them
