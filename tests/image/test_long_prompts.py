"""Long prompts in generation as A1111 encodes them: 75-token chunks in BOS / EOS, ``BREAK``, the negative prompt
padded to the same chunks, clip skip kept, SDXL's pooled embedding from the first chunk (SD1.5 and SDXL)."""

from __future__ import annotations

import numpy as np
import pytest

from lora_factory.kit.testing import FakeInferenceSession
from lora_factory.plugins import image as plugin

# the tiny tokenizer reads one character per token: a 90-token prompt, and the same with its last word changed
HEAD = "mychar, " + "red background " * 5
LONG_A, LONG_B = HEAD + "x" * 9 + "solo", HEAD + "x" * 9 + "duet"


def run(request: dict, session) -> list[dict]:
    events = list(plugin.infer(modality="image", request={"task": "image", **request}, session=session))
    return [e for e in events if e["type"] == "image"]


def pixels(event: dict) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(event["path"]).convert("RGB"), dtype=np.float32)


@pytest.fixture(scope="module")
def tiny_sdxl(tmp_path_factory) -> str:
    from lora_factory.plugins.image.tiny_model import build_tiny_image_model

    base = tmp_path_factory.mktemp("long-sdxl") / "tiny-sdxl"
    build_tiny_image_model(base, "sdxl")
    return str(base)


@pytest.fixture
def session(tmp_path):
    return FakeInferenceSession(tmp_path / "outputs")


def pipe_of(session, base) -> object:
    return session.cache["image"].bases[str(base)]["pipe"]


def test_chunks_follow_a1111(tiny_sd15, session):
    from lora_factory.plugins.image.prompt_chunks import chunk_ids

    run({"base_model": str(tiny_sd15), "input": {"prompt": "a"}, "params": {"seed": 1, "steps": 1, "width": 64,
                                                                         "height": 64}}, session)
    tok = pipe_of(session, tiny_sd15).tokenizer
    bos, eos = tok.bos_token_id, tok.eos_token_id
    short = chunk_ids(tok, "mychar, red")
    assert short == [tok("mychar, red", padding="max_length", max_length=77).input_ids]  # diffusers' ids
    long = chunk_ids(tok, LONG_A)
    assert len(long) == 2 and all(len(c) == 77 and c[0] == bos and c[-1] == eos for c in long)
    text_ids = tok(LONG_A, add_special_tokens=False).input_ids
    assert long[0][1:76] + long[1][1:1 + len(text_ids) - 75] == text_ids
    # BREAK closes the chunk early (the rest of it is EOS padding)
    split = chunk_ids(tok, "mychar BREAK red")
    assert len(split) == 2 and split[0][1:8] == tok("mychar", add_special_tokens=False).input_ids + [eos]
    assert split[1][1] == tok("red", add_special_tokens=False).input_ids[0]
    # a full chunk with a comma in its last 20 tokens moves what follows the comma to the next chunk
    comma = "a" * 70 + ", " + "b" * 10
    chunks = chunk_ids(tok, comma)
    comma_id = tok(",", add_special_tokens=False).input_ids[0]
    assert chunks[0][71] == comma_id and chunks[0][72] == eos
    assert chunks[1][1:12] == tok("b" * 10, add_special_tokens=False).input_ids + [eos]


def test_a_word_after_token_80_changes_the_sd15_image_and_short_prompts_are_unchanged(tiny_sd15, session):
    import torch

    from lora_factory.plugins.image.text_encoding import clip_skip_embeds, needs_own_encoding

    params = {"seed": 5, "steps": 2, "width": 64, "height": 64, "negative_prompt": "lowres"}
    a = run({"base_model": str(tiny_sd15), "input": {"prompt": LONG_A}, "params": params}, session)
    b = run({"base_model": str(tiny_sd15), "input": {"prompt": LONG_B}, "params": params}, session)
    assert np.abs(pixels(a[0]) - pixels(b[0])).max() > 1  # diffusers alone cut both at token 75: same image
    pipe = pipe_of(session, tiny_sd15)
    got = clip_skip_embeds(pipe, "sd15", LONG_A, "lowres", None, True)
    assert got["prompt_embeds"].shape[1] == 154 == got["negative_prompt_embeds"].shape[1]
    with torch.inference_mode():
        empty = clip_skip_embeds(pipe, "sd15", "", "", None, False)["prompt_embeds"]
        short, neg = pipe.encode_prompt("mychar, red background", "cpu", 1, True, "lowres")
    # the negative prompt's second chunk is the empty prompt's encoding (A1111's pad_cond)
    assert torch.allclose(got["negative_prompt_embeds"][:, 77:], empty, atol=1e-6)
    # a prompt of one chunk: the pipeline's own encoding (kept for generation), and ours equals it exactly
    assert not needs_own_encoding(pipe, "mychar, red background", "lowres", None)
    ours = clip_skip_embeds(pipe, "sd15", "mychar, red background", "lowres", None, True)
    assert torch.equal(ours["prompt_embeds"], short) and torch.equal(ours["negative_prompt_embeds"], neg)
    # clip skip 2 with a long prompt: each chunk's penultimate layer through the final norm
    skipped = clip_skip_embeds(pipe, "sd15", LONG_A, "", 2, False)["prompt_embeds"]
    with torch.inference_mode():
        from lora_factory.plugins.image.prompt_chunks import chunk_ids

        ids = torch.tensor(chunk_ids(pipe.tokenizer, LONG_A))
        hidden = pipe.text_encoder(ids, output_hidden_states=True).hidden_states[-2]
        expected = pipe.text_encoder.final_layer_norm(hidden).reshape(1, 154, -1)
    assert torch.allclose(skipped, expected, atol=1e-6)


def test_long_prompts_on_sdxl_and_the_pooled_embedding_of_the_first_chunk(tiny_sdxl, session):
    import torch

    from lora_factory.plugins.image.prompt_chunks import chunk_ids
    from lora_factory.plugins.image.text_encoding import clip_skip_embeds

    params = {"seed": 3, "steps": 2, "negative_prompt": "lowres"}
    a = run({"base_model": tiny_sdxl, "input": {"prompt": LONG_A}, "params": params}, session)
    b = run({"base_model": tiny_sdxl, "input": {"prompt": LONG_B}, "params": params}, session)
    assert np.abs(pixels(a[0]) - pixels(b[0])).max() > 1
    pipe = pipe_of(session, tiny_sdxl)
    got = clip_skip_embeds(pipe, "sdxl", LONG_A, "lowres", None, True)
    assert got["prompt_embeds"].shape[1] == 154 == got["negative_prompt_embeds"].shape[1]
    with torch.inference_mode():
        first = torch.tensor(chunk_ids(pipe.tokenizer_2, LONG_A)[:1])
        pooled = pipe.text_encoder_2(first).text_embeds
        short = pipe.encode_prompt("mychar, red", device="cpu", do_classifier_free_guidance=True,
                                   negative_prompt="lowres")
    assert torch.allclose(got["pooled_prompt_embeds"], pooled, atol=1e-6)
    ours = clip_skip_embeds(pipe, "sdxl", "mychar, red", "lowres", None, True)
    assert torch.equal(ours["prompt_embeds"], short[0]) and torch.equal(ours["pooled_prompt_embeds"], short[2])
    assert torch.equal(ours["negative_prompt_embeds"], short[1])
