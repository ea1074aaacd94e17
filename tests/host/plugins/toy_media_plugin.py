"""A toy folder-dataset, media-output modality (test only): what the host must do for image and audio
plugins, without their models. Items are ``<stem>.png`` + ``<stem>.txt``; generation writes PNG files
and streams "speech" as PCM chunks; a regression check kind of its own; samples during training."""

import json
import shutil
import time
import wave
from pathlib import Path

from lora_factory.kit import LoRAFactoryError, hookimpl, media

# a valid 1x1 PNG
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")


@hookimpl
def describe_modalities():
    return [{
        "id": "toymedia", "label_ja": "トイ", "label_en": "Toy media", "dataset_kind": "folder",
        "presets": {"fast": {"steps": 4}}, "inference_kinds": ["image", "speech"],
        "infer_schemas": {
            "image": {"input_schema": {"type": "object", "properties": {
                "prompt": {"type": "string", "title": "Prompt", "title_ja": "プロンプト"},
                "image": {"type": "string", "format": "upload", "accept": "image/*", "title": "Image"}}}},
            "speech": {"input_schema": {"type": "object", "properties": {"text": {"type": "string", "title": "Text"}}},
                       "params_schema": {"type": "object", "properties": {"delay": {"type": "number", "default": 0.3}}},
                       "presets": {"slow": {"delay": 0.5}}},
        },
        "aux_model_kinds": {"vae": {"label_ja": "VAE", "label_en": "VAE"}},
        "regression_checks": {"bright": {"label_ja": "明るさ", "label_en": "Brightness", "params_schema": {}}},
        "refine_operations": {
            "upper": {"label_ja": "大文字", "label_en": "Upper", "params_schema": {}},
            "edit_items": {"label_ja": "編集", "label_en": "Edit", "params_schema": {}},
        },
        "supports": ["tiny_model", "item_edit", "single_file", "regression"],
    }]


def _items(folder):
    return sorted(p for p in Path(folder).rglob("*.png"))


@hookimpl
def inspect_dataset(modality, path, options):
    folder = Path(path)
    errors = []
    for png in _items(folder):
        rel = png.relative_to(folder).as_posix()
        if png.read_bytes()[:8] != PNG[:8]:
            errors.append({"file": rel, "reason": "not a PNG image"})
        elif not png.with_suffix(".txt").is_file():
            errors.append({"file": rel, "reason": "no caption (.txt)"})
    if not _items(folder):
        errors.append({"file": "", "reason": "no image"})
    if errors:
        raise LoRAFactoryError("DATASET_INVALID", f"不正なファイル: {errors[0]['file']}",
                               f"Bad file: {errors[0]['file']} ({errors[0]['reason']})", 422, detail={"errors": errors})
    items = _items(folder)
    offset, rows = int(options.get("offset", 0)), int(options.get("preview_rows", 5))
    preview = [{"id": p.relative_to(folder).as_posix(), "text": p.with_suffix(".txt").read_text(encoding="utf-8"),
                "media": [{"kind": "image", "file": p.relative_to(folder).as_posix()}]}
               for p in items[offset:offset + rows]]
    return {"format": "toy", "rows": len(items), "preview": preview, "stats": {"images": len(items)}}


@hookimpl
def download_model(modality, spec, ctx):
    out = Path(ctx.output_dir)
    if spec["source"] == "single_file":
        shutil.copy(spec["local_path"], out / Path(spec["local_path"]).name)
    else:
        (out / "weights.txt").write_text(f"{spec['source']} {spec.get('model_kind')}")
    ctx.progress(1, 1)
    return {"source": spec["source"], "model_kind": spec.get("model_kind")}


@hookimpl
def resolve_train_spec(modality, spec):
    return dict(spec, params={"steps": 4, **(spec.get("params") or {})})


@hookimpl
def train(modality, spec, ctx):
    steps = int(spec["params"]["steps"])
    for step in range(1, steps + 1):
        ctx.progress(step, steps, loss=1.0 / step)
        if step % 2 == 0:
            sample = ctx.sample_dir / f"sample_{step:04d}.png"
            sample.parent.mkdir(parents=True, exist_ok=True)
            sample.write_bytes(PNG)
            ctx.report_sample(sample, step, kind="image", caption="a toy")
    (Path(ctx.output_dir) / "adapter.json").write_text(json.dumps({"steps": steps}))
    return {"final_loss": 1.0 / steps}


@hookimpl
def resolve_refine_spec(modality, spec, workspace):
    return spec


@hookimpl
def refine_dataset(modality, spec, ctx):
    source = Path(spec["dataset"])
    out = Path(ctx.output_dir) / spec["output_name"]
    shutil.copytree(source, out)
    for op in spec["operations"]:
        if op["op"] == "upper":
            for txt in out.rglob("*.txt"):
                txt.write_text(txt.read_text(encoding="utf-8").upper(), encoding="utf-8")
        elif op["op"] == "edit_items":
            for edit in op["params"]["edits"]:
                (out / edit["id"]).with_suffix(".txt").write_text(edit["text"], encoding="utf-8")
    n = len(_items(out))
    return {"rows_in": n, "rows_out": n, "removed": {},
            "output": {"kind": "folder", "name": spec["output_name"], "format": "toy"}}


@hookimpl
def resolve_infer_request(modality, request, workspace):
    params = request["params"]
    if params.get("steps", 1) < 1:
        raise LoRAFactoryError("INVALID_INFER_PARAMS", "steps は 1 以上です。", "steps must be at least 1.",
                               422, detail={"field": "steps"})
    if params.get("vae"):
        params["vae"] = str(workspace.resolve_ref(f"models/toymedia/vae/{params['vae']}", "models", modality))
    return request


def _speech(request, session):
    delay = float(request["params"].get("delay", 0.3))
    rate = 8000
    samples = []
    for index, sentence in enumerate(request["input"].get("text", "").split("。")):
        if not sentence:
            continue
        time.sleep(delay)
        piece = [0.1] * 800
        samples += piece
        yield media.audio_chunk_event(piece, rate, index)
    path = session.outputs_dir / f"speech_{time.time_ns()}.wav"
    with wave.open(str(path), "wb") as fh:
        fh.setnchannels(1)
        fh.setsampwidth(2)
        fh.setframerate(rate)
        fh.writeframes(media.pcm16_bytes(samples))
    yield media.audio_event(path, rate, {"sentences": index + 1})
    yield media.done_event(text=request["input"].get("text", ""))


def _image(request, session):
    path = session.outputs_dir / f"image_{request['params'].get('seed', 0)}_{time.time_ns()}.png"
    path.write_bytes(PNG)
    source = request["input"].get("image")
    meta = {"seed": request["params"].get("seed"), "adapters": [a["name"] for a in request.get("adapters", [])],
            "prompt": request["input"].get("prompt"), "input_bytes": Path(source).stat().st_size if source else None,
            "vae": request["params"].get("vae")}
    yield media.image_event(path, meta)
    yield media.done_event(text="")


@hookimpl
def infer(modality, request, session):
    return _speech(request, session) if request.get("task") == "speech" else _image(request, session)


@hookimpl
def regression_check(modality, check, output, reference, session):
    files = [m["path"] for m in output["media"]]
    same = reference is not None and [Path(m["path"]).read_bytes() for m in reference["media"]] == \
        [Path(p).read_bytes() for p in files]
    return {"passed": bool(files), "score": float(len(files)), "detail": {"same_as_previous": same}}
