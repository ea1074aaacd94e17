"""What a train request would do, told before it is queued: total steps, time and memory.

Why here and not in the browser: the step count needs the dataset's rows (or images × repeats), the
time needs the speed this machine measured in past jobs, and the memory needs the model's tensors —
all on the server. The UI's estimate and ``lora-factory train --dry-run`` call the same function.

The estimate is honest about its sources: the time comes from the recorded ``metrics.jsonl`` of past
completed jobs on the same base model (samples per second between their first and last step, plus
their load time), or is left empty with the reason; the memory is a rough sum (weights in the
precision the run will use, LoRA weights with their gradients and Adam states, activations from the
model's ``config.json``) against the largest GPU's VRAM, or the free RAM on a CPU.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

GIB = 1024**3
# bytes per weight of the frozen base, by how the run keeps it
_WEIGHT_BYTES = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "4bit": 0.55}
# a trainable LoRA weight: fp32 value, gradient and Adam's two moments
_TRAINABLE_BYTES = 16
_OVERHEAD = {"gpu": 0.75 * GIB, "cpu": 0.6 * GIB}  # CUDA context / the Python process with torch loaded
_TIGHT = 0.85  # above this share of the memory the run may still fit, but nothing else will


def _num(params: dict[str, Any], *names: str, default: float | None = None) -> float | None:
    for name in names:
        value = params.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return default


def total_steps(samples: int | None, params: dict[str, Any]) -> dict[str, Any]:
    """Optimizer steps of a run: ``max_steps`` when set (> 0) wins over epochs; otherwise
    ceil(epochs × ceil(ceil(samples / batch) / grad_accum)), as the trainers count them."""
    batch = int(_num(params, "batch_size", "train_batch_size", default=1) or 1)
    accum = int(_num(params, "grad_accum", "gradient_accumulation", "gradient_accumulation_steps", default=1) or 1)
    epochs = _num(params, "num_epochs", "epochs")
    max_steps = _num(params, "max_steps", "max_train_steps")
    out: dict[str, Any] = {"samples": samples, "batch_size": batch, "grad_accum": accum, "epochs": epochs,
                           "max_steps": None if max_steps is None or max_steps <= 0 else int(max_steps)}
    steps_per_epoch = None
    if samples:
        steps_per_epoch = math.ceil(math.ceil(samples / batch) / accum)
    out["steps_per_epoch"] = steps_per_epoch
    if out["max_steps"]:
        out.update(total_steps=out["max_steps"], decided_by="max_steps")
        if steps_per_epoch:
            out["epochs_covered"] = round(out["max_steps"] / steps_per_epoch, 2)
    elif epochs is not None and steps_per_epoch:
        out.update(total_steps=math.ceil(epochs * steps_per_epoch), decided_by="epochs")
    else:
        out.update(total_steps=None, decided_by="epochs" if epochs is not None else None)
    return out


def dataset_samples(info: dict[str, Any]) -> int | None:
    """Samples per epoch from a dataset inspection: images × their folder repeats, or rows."""
    stats = info.get("stats") or {}
    for key in ("images_with_repeats", "utterances", "pairs"):
        if isinstance(stats.get(key), int) and stats[key] > 0:
            return int(stats[key])
    rows = info.get("rows")
    return int(rows) if isinstance(rows, int) and rows > 0 else None


# -- time ----------------------------------------------------------------------------------------
def _metrics_span(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]] | None:
    try:
        lines = (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    records = []
    for line in lines:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("step"), int) and isinstance(rec.get("elapsed"), (int, float)):
            records.append(rec)
    if len(records) < 2 or records[-1]["step"] <= records[0]["step"] or records[-1]["elapsed"] <= records[0]["elapsed"]:
        return None
    return records[0], records[-1]


def measured_speed(jobs: list[dict[str, Any]], run_dir_of: Any, base_ref: str, limit: int = 5) -> dict[str, Any] | None:
    """Samples per second measured by past completed train jobs on ``base_ref`` (their recorded
    ``metrics.jsonl``: from the first reported step to the last, so the model's loading is apart),
    and their mean load time (elapsed seconds at the first step)."""
    rates, loads, used = [], [], []
    for job in jobs:
        spec = job.get("spec") or {}
        if job.get("status") != "completed" or spec.get("base_model_ref") != base_ref:
            continue
        span = _metrics_span(run_dir_of(job["id"]))
        if span is None:
            continue
        first, last = span
        params = spec.get("params") or {}
        per_step = (_num(params, "batch_size", "train_batch_size", default=1) or 1) * (
            _num(params, "grad_accum", "gradient_accumulation", "gradient_accumulation_steps", default=1) or 1)
        rates.append((last["step"] - first["step"]) * per_step / (last["elapsed"] - first["elapsed"]))
        loads.append(float(first["elapsed"]))
        used.append(job["id"])
        if len(used) >= limit:
            break
    if not rates:
        return None
    return {"samples_per_s": sum(rates) / len(rates), "load_s": sum(loads) / len(loads), "jobs": used}


def time_estimate(steps: dict[str, Any], speed: dict[str, Any] | None) -> dict[str, Any]:
    if speed is None:
        return {"seconds": None, "source": "none"}
    if not steps.get("total_steps"):
        return {"seconds": None, "source": "past_jobs", "jobs": speed["jobs"]}
    samples = steps["total_steps"] * steps["batch_size"] * steps["grad_accum"]
    seconds = samples / speed["samples_per_s"] + speed["load_s"]
    return {"seconds": round(seconds, 1), "source": "past_jobs", "jobs": speed["jobs"],
            "steps_per_s": round(speed["samples_per_s"] / (steps["batch_size"] * steps["grad_accum"]), 4)}


# -- memory --------------------------------------------------------------------------------------
def tensor_shapes(model_dir: Path) -> list[tuple[str, list[int]]]:
    """(name, shape) of every tensor in the model's ``*.safetensors`` files (headers only)."""
    from lora_factory.kit.hub import read_safetensors_header  # the one header reader

    files = [model_dir] if model_dir.is_file() else sorted(model_dir.rglob("*.safetensors"))
    shapes = []
    for path in files:
        for name, entry in read_safetensors_header(path).items():
            if name != "__metadata__" and isinstance(entry, dict):
                shapes.append((name, list(entry.get("shape") or [])))
    return shapes


def _config(model_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data.get("text_config", data) if isinstance(data, dict) else {}


def precision_of(params: dict[str, Any], device: str) -> str:
    """How the frozen base is held: 4bit (QLoRA / nf4), the mixed precision asked for, bf16 on a GPU, fp32 on a CPU."""
    if params.get("quantization") == "4bit" or params.get("quantize_base") == "nf4":
        return "4bit"
    asked = params.get("mixed_precision")
    if device == "gpu" and asked in ("fp16", "bf16"):
        return str(asked)
    if asked == "no":
        return "fp32"
    return "bf16" if device == "gpu" else "fp32"


def memory_estimate(model_dir: Path, params: dict[str, Any], device: str, available_bytes: int | None) -> dict[str, Any]:
    """A rough training footprint: frozen weights + LoRA weights (with gradients and Adam states) +
    activations (transformer models: batch × length × hidden per layer, less with gradient checkpointing)
    + the process's own overhead; ``fits`` compares it with ``available_bytes``."""
    precision = precision_of(params, device)
    shapes = tensor_shapes(model_dir)
    n_params = sum(math.prod(shape) for _, shape in shapes)
    weights = n_params * _WEIGHT_BYTES[precision]
    rank = int(_num(params, "rank", "lora_r", "network_dim", default=16) or 16)
    lora_params = sum(rank * (shape[0] + shape[1]) for name, shape in shapes
                      if len(shape) == 2 and name.endswith(".weight") and "embed" not in name and "lm_head" not in name
                      and "norm" not in name)
    trainable = lora_params * _TRAINABLE_BYTES
    config = _config(model_dir)
    act_bytes = 2 if device == "gpu" else 4
    hidden, layers, vocab = config.get("hidden_size"), config.get("num_hidden_layers"), config.get("vocab_size")
    length = _num(params, "max_length", "max_seq_length")
    batch = _num(params, "batch_size", "train_batch_size", default=1) or 1
    if hidden and layers and length:
        tokens = batch * length
        per_layer = tokens * hidden * 17 * act_bytes  # ~34 bytes per token × hidden in 16-bit (Korthikanti et al.)
        if params.get("gradient_checkpointing"):
            activations = tokens * hidden * act_bytes * layers + per_layer
        else:
            activations = per_layer * layers
        activations += tokens * (vocab or 0) * 4 * 2  # fp32 logits and their gradient
    else:
        activations = 0.3 * weights  # no transformer config (diffusion, codecs): a share of the weights
    total = int(weights + trainable + activations + _OVERHEAD[device])
    out: dict[str, Any] = {
        "device": device, "precision": precision, "parameters": n_params, "rank": rank,
        "breakdown": {"weights_bytes": int(weights), "lora_bytes": int(trainable),
                      "activations_bytes": int(activations), "overhead_bytes": int(_OVERHEAD[device])},
        "total_bytes": total, "available_bytes": available_bytes,
    }
    if available_bytes:
        out["fits"] = total <= available_bytes
        out["tight"] = out["fits"] and total > _TIGHT * available_bytes
    else:
        out["fits"] = None
        out["tight"] = False
    return out


def available_memory(system: dict[str, Any]) -> tuple[str, int | None]:
    """('gpu', largest VRAM) when a GPU is present, else ('cpu', free RAM)."""
    gpus = system.get("gpus") or []
    if gpus:
        return "gpu", int(max(g.get("vram_total_mb") or 0 for g in gpus)) * 1024 * 1024
    return "cpu", (system.get("ram") or {}).get("available_bytes")


def warnings_of(memory: dict[str, Any] | None, steps: dict[str, Any]) -> list[dict[str, str]]:
    """What the user should hear before starting, in both languages."""
    out = []
    if memory and memory.get("fits") is False:
        need, have = memory["total_bytes"] / GIB, memory["available_bytes"] / GIB
        where_ja, where_en = ("VRAM", "VRAM") if memory["device"] == "gpu" else ("空きメモリ (RAM)", "free RAM")
        out.append({"code": "MEMORY_WILL_NOT_FIT",
                    "message_ja": f"推定メモリ {need:.1f} GiB が{where_ja} {have:.1f} GiB を超えます。バッチサイズ・最大長を下げるか、"
                                  "勾配チェックポイントや 4bit 量子化を使ってください。",
                    "message": f"The estimated {need:.1f} GiB exceeds the {have:.1f} GiB of {where_en}. Lower the batch size or "
                               "maximum length, or use gradient checkpointing or 4-bit quantization."})
    elif memory and memory.get("tight"):
        out.append({"code": "MEMORY_TIGHT", "message_ja": "推定メモリが空きの 85% を超えます。ほかのアプリを閉じてください。",
                    "message": "The estimate uses more than 85% of the memory; close other applications."})
    if steps.get("decided_by") == "max_steps" and steps.get("epochs_covered") is not None and steps.get("epochs"):
        if steps["epochs_covered"] != steps["epochs"]:
            out.append({"code": "MAX_STEPS_WINS",
                        "message_ja": f"最大ステップ数 {steps['max_steps']} が優先されます(エポック数 {steps['epochs']:g} ではなく、"
                                      f"約 {steps['epochs_covered']:g} エポック分の学習になります)。",
                        "message": f"max_steps {steps['max_steps']} wins: the run covers about "
                                   f"{steps['epochs_covered']:g} epochs, not {steps['epochs']:g}."})
    return out


# -- the whole estimate ----------------------------------------------------------------------------
def estimate_train(submitter: Any, store: Any, req: Any, system: dict[str, Any]) -> dict[str, Any]:
    """Steps, time and memory of ``req`` (a ``TrainStartRequest``) as the run would resolve it."""
    spec = submitter.train_spec(req, check_output=False)
    params = spec.get("params") or {}
    dataset = Path(spec["dataset"])
    info = submitter.datasets.inspect_dataset(req.modality, dataset)
    steps = total_steps(dataset_samples(info), params)
    jobs = store.list(kind="train", status="completed", modality=req.modality, limit=200)
    speed = measured_speed(jobs, submitter.workspace.run_dir, spec.get("base_model_ref") or "")
    device, available = available_memory(system)
    try:
        memory = memory_estimate(Path(spec["base_model"]), params, device, available)
    except Exception as exc:  # noqa: BLE001 - an unreadable model: the estimate says so, the run may still work
        memory = {"error": str(exc), "device": device, "fits": None}
    name_taken = submitter.jobs.output_taken("train", req.modality, spec["output_name"])
    out_warnings = warnings_of(memory, steps)
    if name_taken:
        out_warnings.append({"code": "OUTPUT_EXISTS",
                             "message_ja": f"出力名「{spec['output_name']}」は既に使われています。別の名前にしてください。",
                             "message": f"The output name '{spec['output_name']}' is taken; choose another."})
    return {"steps": steps, "time": time_estimate(steps, speed), "memory": memory,
            "method": params.get("method"), "preset": spec.get("preset"), "params": params,
            "warnings": out_warnings}
