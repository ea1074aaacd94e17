"""A test plugin (not shipped): declares the modality ``dummy`` and implements every hook.

It is dropped into ``<home>/plugins/`` by the tests, so the job workers load it exactly as they
would load a user's drop-in plugin. Its train hook sleeps between steps, writes checkpoints, honours
``ctx.should_stop()`` and can crash on demand, which is what the job-lifecycle tests need.
"""

import json
import os
import time
from pathlib import Path

from lora_factory import LoRAFactoryError, hookimpl

__version__ = "0.0.1"


def _mine(modality):
    return modality == "dummy"


@hookimpl
def describe_modalities():
    return [{"id": "dummy", "label_ja": "ダミー", "label_en": "Dummy", "presets": {"fast": {"steps": 5}},
             "dataset_extensions": [".txt"], "supports": ["chat", "tiny_model", "merge"], "worker_modules": ["numpy"],
             "export_targets": {"txt": {"label_ja": "テキスト", "label_en": "Text file", "params_schema": {}},
                                "folder": {"label_ja": "フォルダ", "label_en": "Folder", "params_schema": {}}},
             "refine_operations": {"upper": {"label_ja": "大文字", "label_en": "Upper", "params_schema": {}}}}]


@hookimpl
def resolve_train_spec(modality, spec):
    if not _mine(modality):
        return None
    params = dict(spec.get("params") or {})
    steps = params.get("steps", 5)
    if not isinstance(steps, int) or steps < 1:
        raise LoRAFactoryError("INVALID_TRAIN_PARAMS", "steps は正の整数です。", "steps must be a positive integer.",
                               detail={"field": "steps"})
    params.setdefault("steps", steps)
    params.setdefault("delay", 0.05)
    return dict(spec, params=params)


@hookimpl
def resolve_refine_spec(modality, spec, workspace):
    if not _mine(modality):
        return None
    for op in spec["operations"]:
        if op["params"].get("bad"):
            raise LoRAFactoryError("REFINE_INVALID_PARAMS", "bad は使えません。", "'bad' is not allowed.",
                                   detail={"field": "bad"})
    return dict(spec, operations=[dict(op, params=dict(op["params"], resolved=True)) for op in spec["operations"]])


@hookimpl
def train(modality, spec, ctx):
    if not _mine(modality):
        return None
    params = spec["params"]
    steps, delay = int(params["steps"]), float(params["delay"])
    time.sleep(float(params.get("load_delay", 0)))  # a slow model load: no should_stop() poll meanwhile
    start = 0
    if ctx.resume_checkpoint:
        start = json.loads((Path(ctx.resume_checkpoint) / "state.json").read_text())["step"]
        ctx.log(f"resuming at step {start}")
    ctx.log(f"pid {os.getpid()}")
    stopped = False
    step = start
    for step in range(start + 1, steps + 1):
        if params.get("crash_at") == step:
            ctx.log("crashing on purpose")
            os._exit(3)
        if not params.get("ignore_cancel") and ctx.should_stop():
            stopped = True
            step -= 1
            break
        time.sleep(delay)
        ctx.progress(step, steps, loss=1.0 / step, lr=0.001)
        if step % 2 == 0:
            ckpt = ctx.checkpoint_dir / f"checkpoint-{step}"
            ckpt.mkdir(parents=True, exist_ok=True)
            (ckpt / "state.json").write_text(json.dumps({"step": step}))
    (ctx.output_dir / "adapter.json").write_text(json.dumps({"steps_done": step, "start": start}))
    return {"final_loss": 1.0 / max(step, 1), "stopped": stopped, "start_step": start, "steps_done": step,
            "api_key_reversed": (params.get("api_key") or "")[::-1],
            "env_devices": os.environ.get("LORA_FACTORY_JOB_DEVICES"), "env_cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
            # for the warm-start tests: who started this worker, and whether its randomness is its own
            "parent_pid": os.getppid(), "numpy_draw": float(__import__("numpy").random.random())}


@hookimpl
def download_model(modality, spec, ctx):
    if not _mine(modality):
        return None
    (ctx.output_dir / "weights.txt").write_text("dummy weights " + spec.get("source", ""))
    ctx.progress(1, 1)
    return {"source": spec.get("source"), "hf_token_seen": os.environ.get("HF_TOKEN")}


@hookimpl
def refine_dataset(modality, spec, ctx):
    if not _mine(modality):
        return None
    lines = Path(spec["dataset"]).read_text(encoding="utf-8").splitlines()
    out = [line.upper() for line in lines]
    name = f"{spec['output_name']}.txt"
    (ctx.output_dir / name).write_text("\n".join(out), encoding="utf-8")
    ctx.progress(1, 1)
    return {"rows_in": len(lines), "rows_out": len(out), "removed": {}, "output_file": name}


@hookimpl
def infer(modality, request, session):
    if not _mine(modality):
        return None
    session.cache["calls"] = session.cache.get("calls", 0) + 1
    if "messages" in request:
        text = request["messages"][-1]["content"][::-1]
    else:  # a generation (/api/infer/generate): its prompt, reversed like a chat message
        text = str((request.get("input") or {}).get("prompt", ""))[::-1]
    if request.get("adapter"):
        text = "[adapter] " + text

    delay = float((request.get("params") or {}).get("delay", 0))

    def events():
        for ch in text:
            time.sleep(delay)
            yield {"type": "token", "text": ch}
        yield {"type": "done", "text": text, "usage": {"prompt_tokens": 1, "completion_tokens": len(text)},
               "calls": session.cache["calls"], "device": os.environ.get("LORA_FACTORY_INFERENCE_DEVICE"),
               "cuda": os.environ.get("CUDA_VISIBLE_DEVICES")}

    return events()


@hookimpl
def evaluate(modality, spec, ctx):
    if not _mine(modality):
        return None
    return {"eval_loss": 0.5 if spec.get("adapter") else 0.9}


@hookimpl
def merge_adapter(modality, spec, ctx):
    if not _mine(modality):
        return None
    (ctx.output_dir / "merged.txt").write_text(Path(spec["adapter"]).name)
    return {"merged": True}


@hookimpl
def resolve_export_spec(modality, spec, workspace):
    params = dict(spec["params"])
    if params.get("bad"):
        raise LoRAFactoryError("INVALID_EXPORT_PARAMS", "bad は使えません。", "'bad' is not allowed.",
                               detail={"field": "bad"})
    warnings = [{"code": "DUMMY_WARNING", "message": "a runtime may refuse this", "message_ja": "注意"}] \
        if params.get("warn") else []
    return dict(spec, params=dict(params, steps=int(params.get("steps", 2))), warnings=warnings)


@hookimpl
def export_adapter(modality, spec, ctx):
    steps = spec["params"]["steps"]
    for step in range(steps):
        if ctx.should_stop():
            return {"stopped": True}
        time.sleep(float(spec["params"].get("delay", 0)))
        ctx.progress(step + 1, steps)
    name = Path(spec["adapter"]).name
    ctx.log(f"exporting {name} as {spec['target']}")
    (ctx.output_dir / "README.md").write_text(f"# {name} ({spec['target']})\n")
    if spec["target"] == "txt":
        (ctx.output_dir / f"{name}.txt").write_text(f"exported {name}")
        return {"files": [f"{name}.txt", "README.md"], "primary": f"{name}.txt", "opens_in": ["cat"],
                "commands": [f"cat {name}.txt"]}
    (ctx.output_dir / "part1.bin").write_bytes(b"1")
    (ctx.output_dir / "sub").mkdir()
    (ctx.output_dir / "sub" / "part2.bin").write_bytes(b"22")
    return {"files": ["part1.bin", "sub/part2.bin", "README.md"], "primary": None}


@hookimpl
def inspect_model(modality, path):
    if not _mine(modality):
        return None
    return {"architecture": "DummyModel", "parameters": 42}


@hookimpl
def inspect_dataset(modality, path, options):
    if not _mine(modality):
        return None
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    errors = [{"line": i, "reason": "contains BAD"} for i, line in enumerate(lines, 1) if "BAD" in line]
    if errors:
        raise LoRAFactoryError("DATASET_INVALID", "不正な行があります。", "The file has bad lines.", 422,
                               detail={"errors": errors})
    return {"format": "lines", "rows": len(lines), "preview": lines[:3], "stats": {"rows": len(lines)}}


@hookimpl
def import_dataset_index(modality, path, datasets_dir):
    if not _mine(modality):
        return None
    out = []
    for name in json.loads(Path(path).read_text())["files"]:
        dest = Path(datasets_dir) / name
        dest.write_bytes((Path(path).parent / name).read_bytes())
        out.append({"name": name, "file": str(dest), "format": "lines", "mapping": None})
    return out


@hookimpl
def register_reward_functions(register):
    def dummy_reversed(prompts, completions, answers):
        """1.0 for a completion that is its prompt reversed (what the dummy model's chat answers)."""
        return [1.0 if str(c) == str(p)[::-1] else 0.0 for p, c in zip(prompts, completions)]

    register("dummy_reversed", dummy_reversed, "回文なら 1", "1 for a palindrome")
