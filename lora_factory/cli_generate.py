"""``lora-factory generate``: the CLI face of ``POST /api/infer/generate`` (images, speech, transcripts).

The model runs in the same inference worker process the server uses, so the CLI stays free of torch
and behaves exactly like the API; the files land in ``artifacts/outputs/<modality>/`` and are copied
to ``--out`` when given.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from lora_factory.core.errors import LoRAFactoryError


def _json_arg(value: str | None, what: str) -> dict[str, Any]:
    if not value:
        return {}
    try:
        data = json.loads(value)
    except json.JSONDecodeError as exc:
        raise LoRAFactoryError("INVALID_JSON", f"{what} が JSON ではありません: {exc.msg}", f"{what} is not valid JSON: {exc.msg}",
                               detail={"field": what}) from exc
    if not isinstance(data, dict):
        raise LoRAFactoryError("INVALID_JSON", f"{what} は JSON オブジェクトで指定してください。", f"{what} must be a JSON object.",
                               detail={"field": what})
    return data


def _adapter(spec: str) -> dict[str, Any]:
    """``name`` or ``name:weight``."""
    name, _, weight = spec.partition(":")
    return {"name": name, "weight": float(weight) if weight else 1.0}


def cmd_generate(args: argparse.Namespace, services: Any) -> int:
    from lora_factory.core.schemas import GenerateRequest

    svc = services(args)
    inputs = _json_arg(args.input, "--input")
    if args.prompt:
        inputs.setdefault("prompt", args.prompt)
        inputs.setdefault("text", args.prompt)
    for item in args.file or []:  # key=path: an input file (img2img image, audio to transcribe)
        key, _, path = item.partition("=")
        with open(path, "rb") as fh:
            inputs[key] = svc.media.save_upload(Path(path).name, fh)["value"]
    req = GenerateRequest(modality=args.modality, base_model=args.base_model, task=args.task,
                          adapters=[_adapter(a) for a in args.adapter or []], input=inputs,
                          params=_json_arg(args.params, "--params"), compare=args.compare)
    try:
        answer = svc.generation.compare(req) if args.compare else svc.generation.complete(req)
    finally:
        svc.inference.close()
    results = [answer["base"], answer["adapter"]] if args.compare else [answer]
    for result in results:
        for item in result.get("media") or []:
            item["path"] = str(svc.media.outputs_dir(args.modality) / item["file"]) if item.get("file") else None
            if args.out and item["path"]:
                Path(args.out).mkdir(parents=True, exist_ok=True)
                item["copied_to"] = str(shutil.copy2(item["path"], Path(args.out) / Path(item["path"]).name))
    print(json.dumps(answer, ensure_ascii=False, indent=2, default=str))
    return 0


def add_parser(sub: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p = sub.add_parser("generate", parents=[common],
                       help="generate with a base model (+ adapters): an image, speech, a transcript ...")
    p.add_argument("prompt", nargs="?", help="the prompt / text (same as --input '{\"prompt\": ...}')")
    p.add_argument("--modality", required=True)
    p.add_argument("--base-model", required=True)
    p.add_argument("--adapter", action="append", help="adapter name, or name:weight (repeatable)")
    p.add_argument("--task", help="an inference kind of the modality (image, speech, transcribe ...)")
    p.add_argument("--input", help="JSON object of inputs")
    p.add_argument("--file", action="append", help="key=path: an input file, e.g. image=cat.png (repeatable)")
    p.add_argument("--params", help="JSON object of parameters, e.g. {\"seed\": 1, \"steps\": 20}")
    p.add_argument("--compare", action="store_true", help="with and without the adapter(s), same seed")
    p.add_argument("--out", help="copy the files made into this folder")
    return p
