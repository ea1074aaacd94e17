"""Fixtures for the image plugin's tests: tiny pipelines, a two-aspect dataset, a tiny tagger and captioner.

Everything is built here from configs, offline: a random SD1.5-layout pipeline, a WD-v3-layout
tagger exported as ONNX from a hand-made graph (it "sees" red and blue), a BLIP captioner.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from lora_factory.kit.testing import FakeJobContext, temp_workspace

RED, BLUE = (210, 40, 30), (30, 40, 210)


def write_image(path: Path, size: tuple[int, int], color: tuple[int, int, int], mark: int = 0, fmt: str | None = None) -> Path:
    """A picture in ``color`` with a pattern of brighter and darker blocks that ``mark`` chooses
    (different marks give pictures that pHash tells apart; the mean colour stays ``color``)."""
    import random

    from PIL import Image, ImageDraw

    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.new("RGB", size, color)
    draw = ImageDraw.Draw(im)
    rng = random.Random(mark)
    cell = 8
    for y in range(0, size[1], cell):
        for x in range(0, size[0], cell):
            f = rng.uniform(0.45, 1.0)
            draw.rectangle((x, y, x + cell - 1, y + cell - 1), fill=tuple(int(c * f) for c in color))
    im.save(path, format=fmt)
    return path


def make_dataset(root: Path, n: int = 6, captions: bool = True, concept: str = "4_mychar") -> Path:
    """``n`` images in ``root/<concept>/``: portrait and landscape (two buckets), red and blue ones."""
    folder = root / concept
    for i in range(n):
        size = (64, 96) if i % 2 == 0 else (96, 64)
        color = RED if i < n // 2 else BLUE
        image = write_image(folder / f"img{i:02d}.png", size, color, mark=i)
        if captions:
            colour = "red" if color == RED else "blue"
            image.with_suffix(".txt").write_text(f"mychar, {colour} background, circle, pose{i}", encoding="utf-8")
    return root


def make_ctx(home: Path, job_id: str = "job1", kind: str = "train", **kwargs) -> FakeJobContext:
    return FakeJobContext(temp_workspace(home), job_id, kind=kind, modality="image", **kwargs)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The tiny models gain nothing from threads, and on a shared 2-core runner OpenMP's waiting threads
    make them several times slower: one thread here (restored after), ``OMP_NUM_THREADS=1`` for workers."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture
def ctx_factory():
    return make_ctx


@pytest.fixture(scope="session")
def tiny_sd15(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lora_factory.plugins.image.tiny_model import build_tiny_image_model

    out = tmp_path_factory.mktemp("tiny") / "tiny-sd15"
    build_tiny_image_model(out, "sd15", seed=0)
    return out


@pytest.fixture(scope="session")
def image_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data") / "chars")


def build_tiny_tagger(folder: Path, size: int = 32) -> Path:
    """A WD v3-layout tagger: NHWC BGR 0-255 in, sigmoid scores out; tag "red" / "blue" by colour."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    folder.mkdir(parents=True, exist_ok=True)
    tags = [("general", 9), ("sensitive", 9), ("red", 0), ("blue", 0), ("solo", 0), ("tiny_chan", 4)]
    # BGR means in [0, 1] -> logits; red = high channel 2, blue = high channel 0
    weights = np.array([
        [0.0, 0.0, 0.0],      # general
        [0.0, 0.0, 0.0],      # sensitive
        [-6.0, 0.0, 8.0],     # red
        [8.0, 0.0, -6.0],     # blue
        [0.0, 0.0, 0.0],      # solo (always 0.5 -> above 0.35)
        [0.0, 0.0, 0.0],      # character (0.5: below 0.85)
    ], dtype=np.float32).T
    bias = np.array([2.0, -2.0, -2.0, -2.0, 0.0, 0.0], dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["input_1:0"], ["mean"], axes=[1, 2], keepdims=0),
         helper.make_node("Mul", ["mean", "scale"], ["unit"]),
         helper.make_node("MatMul", ["unit", "W"], ["logits0"]),
         helper.make_node("Add", ["logits0", "B"], ["logits"]),
         helper.make_node("Sigmoid", ["logits"], ["predictions_sigmoid"])],
        "tiny_tagger",
        [helper.make_tensor_value_info("input_1:0", TensorProto.FLOAT, [1, size, size, 3])],
        [helper.make_tensor_value_info("predictions_sigmoid", TensorProto.FLOAT, [1, len(tags)])],
        initializer=[helper.make_tensor("scale", TensorProto.FLOAT, [], [1.0 / 255.0]),
                     helper.make_tensor("W", TensorProto.FLOAT, weights.shape, weights.flatten().tolist()),
                     helper.make_tensor("B", TensorProto.FLOAT, bias.shape, bias.tolist())],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(folder / "model.onnx"))
    with open(folder / "selected_tags.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["tag_id", "name", "category", "count"])
        for i, (name, category) in enumerate(tags):
            writer.writerow([i, name, category, 100])
    return folder


def build_tiny_blip(folder: Path) -> Path:
    """A random BLIP captioner with a small WordPiece vocabulary (it writes gibberish, deterministically)."""
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "photo", "of", "red", "blue", "cat", "dog", "circle",
             "background", "with", "and", "the"]
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(words)})
    text = {"vocab_size": len(words), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 2, "max_position_embeddings": 64, "bos_token_id": tokenizer.cls_token_id,
            "sep_token_id": tokenizer.sep_token_id, "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.sep_token_id}
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
              "image_size": 32, "patch_size": 8}
    import torch

    torch.manual_seed(0)
    model = BlipForConditionalGeneration(BlipConfig(text_config=text, vision_config=vision, projection_dim=32))
    processor = BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tokenizer)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def resolved(params: dict, preset: str = "quick") -> dict:
    from lora_factory.plugins import image as plugin

    return plugin.resolve_train_spec(modality="image", spec={"preset": preset, "params": params})


def train_tiny(home: Path, base: Path, dataset: Path, params: dict, name: str, job: str, **ctx_kwargs) -> tuple[dict, FakeJobContext]:
    from lora_factory.plugins.image.train import train_image_adapter

    spec = resolved(params) | {"base_model": str(base), "dataset": str(dataset), "output_name": name,
                               "base_model_ref": f"models/image/{base.name}"}
    ctx = make_ctx(home, job, **ctx_kwargs)
    return train_image_adapter(spec, ctx), ctx


@pytest.fixture(scope="session")
def trained(tmp_path_factory, tiny_sd15, image_dataset):
    """One quick run shared by the output and generation tests: alpha != rank, text encoder trained too,
    samples every 3 steps, a checkpoint at step 3."""
    home = tmp_path_factory.mktemp("ws")
    params = {"max_steps": 6, "rank": 4, "alpha": 2, "train_text_encoder": True, "learning_rate": 5e-3,
              "sample_every_n_steps": 3, "sample_steps": 2, "save_every_n_steps": 3, "save_precision": "fp32"}
    result, ctx = train_tiny(home, tiny_sd15, image_dataset, params, "mychar_v1", "train1")
    return {"result": result, "ctx": ctx, "out": Path(ctx.output_dir)}


def build_tiny_clip(folder: Path) -> Path:
    """A random CLIP (text + vision, projection 32) with our byte-level tokenizer, for clip_score."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from lora_factory.plugins.image.tiny_model import build_clip_tokenizer

    tokenizer = build_clip_tokenizer(folder)
    torch.manual_seed(0)
    text = {"vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
            "num_attention_heads": 2, "max_position_embeddings": 77, "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
              "image_size": 32, "patch_size": 8}
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=32)).save_pretrained(folder)
    CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
                  tokenizer=tokenizer).save_pretrained(folder)
    return folder
