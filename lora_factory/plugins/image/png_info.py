"""Generation settings inside PNG files: A1111's ``parameters`` text chunk and our JSON chunk.

A1111 / Forge's "PNG Info" tab and Civitai read the ``parameters`` tEXt chunk::

    <prompt with <lora:name:weight> tags>
    Negative prompt: <negative>
    Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 512x512, Model: base, ...

Our ``lora_factory`` chunk holds the exact JSON request (base, adapters, every parameter), so
dropping one of our PNGs on the UI restores the settings losslessly; a PNG from A1111 restores what
its ``parameters`` text says.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

JSON_KEY = "lora_factory"
PARAMETERS_KEY = "parameters"

# our scheduler names -> A1111 sampler labels (and back)
SAMPLER_LABELS = {
    "euler_a": "Euler a", "euler": "Euler", "dpmpp_2m": "DPM++ 2M", "dpmpp_2m_karras": "DPM++ 2M Karras",
    "ddim": "DDIM", "pndm": "PLMS", "lms": "LMS", "heun": "Heun", "unipc": "UniPC", "dpm2": "DPM2",
    "dpmpp_2m_sde": "DPM++ 2M SDE", "lcm": "LCM", "flow_euler": "Euler",
}
_LABEL_TO_SAMPLER = {v.lower(): k for k, v in SAMPLER_LABELS.items() if k != "flow_euler"}
_LORA_TAG = re.compile(r"<lora:([^:>]+):([-+]?[0-9]*\.?[0-9]+)>")


def a1111_parameters(settings: dict[str, Any]) -> str:
    """The A1111 ``parameters`` text for one of our generation settings dicts."""
    prompt = str(settings.get("prompt") or "")
    loras = "".join(f" <lora:{a['name']}:{float(a.get('weight', 1.0)):g}>" for a in settings.get("adapters") or [])
    lines = [prompt + loras]
    if settings.get("negative_prompt"):
        lines.append(f"Negative prompt: {settings['negative_prompt']}")
    fields: list[tuple[str, Any]] = [
        ("Steps", settings.get("steps")),
        ("Sampler", _sampler_label(settings.get("scheduler"))),
        ("Schedule type", "Karras" if str(settings.get("scheduler") or "").endswith("_karras") else None),
        ("CFG scale", settings.get("guidance_scale")),
        ("Seed", settings.get("seed")),
        ("Size", f"{settings.get('width')}x{settings.get('height')}" if settings.get("width") else None),
        ("Model hash", settings.get("model_hash")),
        ("Model", settings.get("base_model_name")),
        ("Denoising strength", settings.get("strength") if settings.get("mode") in ("img2img", "inpaint") else None),
        ("VAE", settings.get("vae_name")),
        ("Clip skip", settings.get("clip_skip") if (settings.get("clip_skip") or 1) > 1 else None),
    ]
    if settings.get("adapters"):
        fields.append(("Lora weights", ", ".join(f"{a['name']}: {float(a.get('weight', 1.0)):g}"
                                                  for a in settings["adapters"])))
    hashes = settings.get("lora_hashes") or {}
    if hashes:  # A1111's form: one quoted "name: 12 hex, name: 12 hex" (Civitai links the LoRAs by it)
        fields.append(("Lora hashes", ", ".join(f"{name}: {value}" for name, value in hashes.items())))
    fields.append(("Version", f"LoRA Factory {settings.get('version', '')}".strip()))
    lines.append(", ".join(f"{k}: {_quote(v)}" for k, v in fields if v is not None and v != ""))
    return "\n".join(lines)


def _quote(value: Any) -> str:
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if ("," in text or ":" in text) and not re.fullmatch(r"\d+x\d+", text) else text


def save_png(image: Any, path: Path, settings: dict[str, Any]) -> None:
    """Write ``image`` as PNG with both chunks (to a temp name, then renamed)."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text(PARAMETERS_KEY, a1111_parameters(settings))
    info.add_text(JSON_KEY, json.dumps(settings, ensure_ascii=False, default=str))
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    image.save(tmp, format="PNG", pnginfo=info)
    tmp.replace(path)


def read_png_text(data: bytes | Path) -> dict[str, str]:
    """The text chunks of a PNG (``parameters``, ``lora_factory``, ...)."""
    from PIL import Image

    source = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    with Image.open(source) as im:
        im.load()
        text = dict(getattr(im, "text", {}) or {})
        for key, value in (im.info or {}).items():
            if isinstance(value, str):
                text.setdefault(key, value)
    return text


def parse_a1111_parameters(text: str) -> dict[str, Any]:
    """Settings from an A1111 ``parameters`` text (ours or A1111's own)."""
    lines = text.strip().split("\n")
    settings: dict[str, Any] = {}
    last = lines[-1] if lines else ""
    field_line = last if re.search(r"(^|, )Steps: ", last) else ""
    body = lines[:-1] if field_line else lines
    prompt_lines, negative_lines, in_negative = [], [], False
    for line in body:
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:"):].strip()
        (negative_lines if in_negative else prompt_lines).append(line)
    prompt = "\n".join(prompt_lines).strip()
    adapters = [{"name": m.group(1), "weight": float(m.group(2))} for m in _LORA_TAG.finditer(prompt)]
    settings["prompt"] = _without_tags(prompt)
    if adapters:
        settings["adapters"] = adapters
    if negative_lines:
        settings["negative_prompt"] = "\n".join(negative_lines).strip()
    schedule = ""
    for key, value in re.findall(r'\s*([\w \-/+]+): ("(?:\\.|[^"\\])*"|[^,]*)(?:,|$)', field_line):
        value = json.loads(value) if value.startswith('"') else value.strip()
        key = key.strip()
        if key == "Steps":
            settings["steps"] = int(value)
        elif key == "Schedule type":
            schedule = value.lower()
        elif key == "Sampler":
            settings["scheduler"] = _LABEL_TO_SAMPLER.get(value.lower(), value)
        elif key == "CFG scale":
            settings["guidance_scale"] = float(value)
        elif key == "Seed":
            settings["seed"] = int(value)
        elif key == "Size" and "x" in value:
            w, h = value.split("x", 1)
            settings["width"], settings["height"] = int(w), int(h)
        elif key == "Model":
            settings["base_model_name"] = value
        elif key == "Model hash":
            settings["model_hash"] = value
        elif key == "Lora hashes":
            settings["lora_hashes"] = dict(_name_value(part) for part in value.split(",") if ":" in part)
        elif key == "Denoising strength":
            settings["strength"] = float(value)
        elif key == "Clip skip":
            settings["clip_skip"] = int(value)
    if schedule == "karras" and f"{settings.get('scheduler')}_karras" in SAMPLER_LABELS:
        settings["scheduler"] = f"{settings['scheduler']}_karras"
    return settings


def _sampler_label(scheduler: Any) -> Any:
    """A1111 1.9+ labels: the sampler alone, Karras in its own ``Schedule type`` field."""
    name = str(scheduler)
    if name.endswith("_karras"):
        name = name[: -len("_karras")]
    return SAMPLER_LABELS.get(name, scheduler)


def _without_tags(prompt: str) -> str:
    """The prompt less its ``<lora:…>`` tags, without the ``, ,`` gaps they leave in a comma list."""
    text = _LORA_TAG.sub("", prompt)
    text = re.sub(r",[ \t]*(?=,)", "", text)  # empty list items
    text = re.sub(r"[ \t]{2,}", " ", text)
    return "\n".join(line.strip().strip(",").strip() for line in text.split("\n")).strip()


def _name_value(part: str) -> tuple[str, str]:
    name, value = part.rsplit(":", 1)
    return name.strip(), value.strip()


def read_settings(data: bytes | Path) -> dict[str, Any]:
    """Settings stored in a PNG: our JSON chunk when present, else A1111's ``parameters``.

    :return: ``{"source": "lora_factory"|"a1111"|None, "settings": {...}, "parameters": text|None}``.
    """
    chunks = read_png_text(data)
    parameters = chunks.get(PARAMETERS_KEY)
    if JSON_KEY in chunks:
        try:
            return {"source": JSON_KEY, "settings": json.loads(chunks[JSON_KEY]), "parameters": parameters}
        except json.JSONDecodeError:
            pass
    if parameters:
        return {"source": "a1111", "settings": parse_a1111_parameters(parameters), "parameters": parameters}
    return {"source": None, "settings": {}, "parameters": None}
