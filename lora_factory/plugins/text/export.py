"""The text plugin's export targets: GGUF (llama.cpp), Ollama (GGUF + Modelfile) and vLLM (PEFT folder).

``resolve`` runs in the server (no torch: JSON files only) so a refused adapter or a bad parameter is
a 4xx before anything is queued, and a target a runtime may refuse is a warning at once; ``run``
writes the files in the export job.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from lora_factory.kit import LoRAFactoryError
from lora_factory.kit.files import write_text_atomic

_OUTTYPE = {"type": "string", "enum": ["f16", "bf16", "q8_0", "f32"], "default": "f16"}
EXPORT_TARGETS = {
    "gguf": {
        "label_ja": "GGUF (llama.cpp)", "label_en": "GGUF (llama.cpp)",
        "description_ja": "llama.cpp / LM Studio / llama-cpp-python 用の GGUF LoRA(とベースまたはマージ済みモデル)。",
        "description_en": "A GGUF LoRA for llama.cpp / LM Studio / llama-cpp-python (and the base or merged model).",
        "params_schema": {"type": "object", "properties": {
            "what": {"type": "string", "enum": ["lora", "lora+base", "merged"], "default": "lora"},
            "outtype": _OUTTYPE,
            "model_outtype": {"type": "string", "enum": ["f16", "bf16", "q8_0", "f32"], "default": "f16"}}},
    },
    "ollama": {
        "label_ja": "Ollama", "label_en": "Ollama",
        "description_ja": "GGUF のベースと LoRA、チャットテンプレートを変換した Modelfile。ollama create で登録します。",
        "description_en": "GGUF base + LoRA and a Modelfile with the chat template converted; register with ollama create.",
        "params_schema": {"type": "object", "properties": {
            "outtype": _OUTTYPE,
            "model_outtype": {"type": "string", "enum": ["f16", "bf16", "q8_0", "f32"], "default": "f16"},
            "merged": {"type": "boolean", "default": False}}},
    },
    "vllm": {
        "label_ja": "vLLM / OpenAI 互換サーバー", "label_en": "vLLM / OpenAI-compatible server",
        "description_ja": "PEFT フォルダをそのまま --lora-modules で読み込みます(制約を確認して警告)。",
        "description_en": "The PEFT folder as vLLM's --lora-modules loads it (its limits checked, with warnings).",
        "params_schema": {"type": "object", "properties": {"max_lora_rank": {"type": "integer", "default": 16}}},
    },
}
VLLM_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
VLLM_MODULES = {"q_proj", "k_proj", "v_proj", "o_proj", "qkv_proj", "gate_proj", "up_proj", "down_proj",
                "gate_up_proj", "dense", "query_key_value", "dense_h_to_4h", "dense_4h_to_h", "c_attn", "c_proj",
                "c_fc", "w1", "w2", "w3", "wqkv", "wo", "out_proj", "fc1", "fc2"}


def _invalid(field: str, ja: str, en: str) -> LoRAFactoryError:
    return LoRAFactoryError("INVALID_EXPORT_PARAMS", ja, en, detail={"field": field})


def _params(target: str, given: dict[str, Any]) -> dict[str, Any]:
    props = EXPORT_TARGETS[target]["params_schema"]["properties"]
    unknown = sorted(set(given) - set(props))
    if unknown:
        raise _invalid(unknown[0], f"不明なパラメータ: {', '.join(unknown)}", f"Unknown parameter(s): {', '.join(unknown)}")
    out = {}
    for key, schema in props.items():
        value = given.get(key, schema.get("default"))
        if "enum" in schema and value not in schema["enum"]:
            raise _invalid(key, f"{key} は {', '.join(schema['enum'])} のどれかです。",
                           f"{key} must be one of {', '.join(schema['enum'])}.")
        if schema["type"] == "boolean" and not isinstance(value, bool):
            raise _invalid(key, f"{key} は true / false です。", f"{key} must be true or false.")
        if schema["type"] == "integer" and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise _invalid(key, f"{key} は正の整数です。", f"{key} must be a positive integer.")
        out[key] = value
    if target == "gguf" and out["what"] == "merged" and given.get("outtype"):
        raise _invalid("outtype", "マージ済みモデルの型は model_outtype で指定します。",
                       "The merged model's type is model_outtype.")
    return out


def vllm_warnings(config: dict[str, Any], max_lora_rank: int = 16) -> list[dict[str, str]]:
    """What vLLM would refuse or need a flag for, in words (the adapter folder itself is unchanged)."""
    warnings = []
    rank = max([int(config.get("r") or 0), *[int(v) for v in (config.get("rank_pattern") or {}).values()]])
    if rank > max_lora_rank:
        needed = next((r for r in VLLM_RANKS if r >= rank), rank)
        warnings.append({"code": "VLLM_RANK_TOO_HIGH",
                         "message": f"rank {rank} is above vLLM's max_lora_rank ({max_lora_rank}): start vLLM with "
                                    f"--max-lora-rank {needed}, or it refuses the adapter.",
                         "message_ja": f"rank {rank} は vLLM の max_lora_rank ({max_lora_rank}) を超えています。"
                                       f"vLLM を --max-lora-rank {needed} で起動しないと読み込めません。"})
    targets = config.get("target_modules") or []
    targets = [targets] if isinstance(targets, str) else list(targets)
    odd = sorted(t for t in targets if t.rsplit(".", 1)[-1] not in VLLM_MODULES and t != "all-linear")
    if odd:
        warnings.append({"code": "VLLM_TARGET_MODULES",
                         "message": f"vLLM applies LoRA to the model's linear layers only; {odd} may be refused "
                                    "(\"unsupported LoRA weight\").",
                         "message_ja": f"vLLM が LoRA を適用するのは線形層だけです。{odd} は拒否される可能性があります。"})
    if config.get("modules_to_save"):
        warnings.append({"code": "VLLM_MODULES_TO_SAVE",
                         "message": f"modules_to_save {config['modules_to_save']} (fully trained layers) are not "
                                    "loaded by vLLM: serve the merged model instead.",
                         "message_ja": f"modules_to_save {config['modules_to_save']}(全体を学習した層)は vLLM が読み込み"
                                       "ません。マージしたモデルを配信してください。"})
    if config.get("use_dora"):
        warnings.append({"code": "VLLM_DORA", "message": "vLLM does not load DoRA adapters.",
                         "message_ja": "vLLM は DoRA アダプターを読み込めません。"})
    if config.get("lora_bias"):
        warnings.append({"code": "VLLM_LORA_BIAS", "message": "the adapter trains biases: start vLLM with --enable-lora-bias.",
                         "message_ja": "バイアスを学習したアダプターです。vLLM を --enable-lora-bias で起動してください。"})
    return warnings


def resolve(spec: dict[str, Any]) -> dict[str, Any]:
    """Server side: parameters complete, the adapter checked against the target, warnings listed."""
    from lora_factory.plugins.text.export_gguf import check_exportable, read_adapter_config
    from lora_factory.plugins.text.gguf_arch import read_arch

    target = spec["target"]
    params = _params(target, dict(spec.get("params") or {}))
    adapter = Path(spec["adapter"])
    if not (adapter / "adapter_config.json").is_file():
        raise LoRAFactoryError("ADAPTER_NOT_FOUND", f"「{adapter.name}」に adapter_config.json がありません。",
                               f"'{adapter.name}' has no adapter_config.json.", 404)
    config = read_adapter_config(adapter)
    warnings: list[dict[str, str]] = []
    if target == "vllm":
        warnings = vllm_warnings(config, params["max_lora_rank"])
    else:
        read_arch(Path(spec["base_model"]))
        merged = params.get("what") == "merged" or params.get("merged")
        if not merged:
            check_exportable(config)
    return dict(spec, params=params, warnings=warnings)


def _card(title: str, spec: dict[str, Any], body: str) -> str:
    return (f"# {title}\n\nExported by LoRA Factory from the adapter `{spec.get('adapter_ref')}` "
            f"(base model `{spec.get('base_model_ref')}`), target `{spec['target']}`.\n\n{body}\n")


def run(spec: dict[str, Any], ctx: Any) -> dict[str, Any]:
    target = spec["target"]
    out = Path(ctx.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if target == "vllm":
        return _run_vllm(spec, ctx, out)
    return _run_gguf(spec, ctx, out, ollama=target == "ollama")


def _run_gguf(spec: dict[str, Any], ctx: Any, out: Path, ollama: bool) -> dict[str, Any]:
    from lora_factory.plugins.text.export_gguf import write_gguf_lora
    from lora_factory.plugins.text.gguf_model import export_model_gguf

    params, adapter, base = spec["params"], Path(spec["adapter"]), Path(spec["base_model"])
    name = spec["output_name"]
    merged = params.get("what") == "merged" or bool(params.get("merged"))
    with_base = ollama or params.get("what") == "lora+base"
    stages = 1 + int(merged or with_base) + int(ollama)
    files, checks, commands, step = [], {}, [], 0
    lora_file = model_file = None
    if not merged:
        lora_file = f"{adapter.name}-lora-{params['outtype']}.gguf"
        ctx.log(f"GGUF LoRA ({params['outtype']}) -> {lora_file}")
        checks["lora"] = write_gguf_lora(adapter, base, out / lora_file, params["outtype"], name=adapter.name)
        files.append(lora_file)
        step += 1
        ctx.progress(step, stages)
        if ctx.should_stop():
            return {"stopped": True}
    if merged or with_base:
        model_file = f"{name}-merged-{params['model_outtype']}.gguf" if merged else \
            f"{base.name}-{params['model_outtype']}.gguf"
        ctx.log(f"GGUF model ({'merged' if merged else 'base'}, {params['model_outtype']}) -> {model_file}")
        checks["model"] = export_model_gguf(base, out / model_file, params["model_outtype"],
                                            adapter_dir=adapter if merged else None, name=name)
        files.append(model_file)
        step += 1
        ctx.progress(step, stages)
        if ctx.should_stop():
            return {"stopped": True}
    opens_in = ["llama.cpp", "llama-cpp-python", "LM Studio"]
    if lora_file and model_file:
        commands.append(f"llama-cli -m {model_file} --lora {lora_file}")
    elif model_file:
        commands.append(f"llama-cli -m {model_file}")
    else:
        commands.append(f"llama-cli -m <the base model as GGUF> --lora {lora_file}")
    commands.append(f"llama-quantize {model_file or '<model-f16.gguf>'} model-Q4_K_M.gguf Q4_K_M  # further quantisation")
    warnings: list[dict[str, str]] = []
    if ollama:
        warnings += _write_modelfile(spec, ctx, out, model_file, lora_file, checks)
        files.append("Modelfile")
        commands.insert(0, f"ollama create {name} -f Modelfile  # in this folder; then: ollama run {name}")
        opens_in.insert(0, "Ollama")
        ctx.progress(stages, stages)
    body = "\n".join(["## Files", *[f"- `{f}`" for f in files], "", "## Use", "```", *commands, "```"])
    write_text_atomic(out / "README.md", _card(name, spec, body))
    primary = lora_file if (len(files) == 1 and lora_file) else (model_file if len(files) == 1 else None)
    return {"files": [*files, "README.md"], "primary": primary, "opens_in": opens_in, "commands": commands,
            "checks": checks, "warnings": warnings}


def _write_modelfile(spec: dict[str, Any], ctx: Any, out: Path, model_file: str | None, lora_file: str | None,
                     checks: dict[str, Any]) -> list[dict[str, str]]:
    from transformers import AutoTokenizer

    from lora_factory.plugins.text.ollama import (
        TemplateNotConvertible,
        convert_template,
        modelfile,
        read_generation_config,
        stop_tokens,
        wrappers,
    )

    adapter, base = Path(spec["adapter"]), Path(spec["base_model"])
    tokenizer = AutoTokenizer.from_pretrained(str(adapter if (adapter / "tokenizer_config.json").is_file() else base))
    warnings = []
    template, parts = None, None
    if tokenizer.chat_template:
        def render(messages: list[dict[str, str]], generation: bool) -> str:
            return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)

        try:
            parts = wrappers(render)
            template, checks["template"] = convert_template(render)
        except TemplateNotConvertible as exc:
            ctx.log(f"chat template not converted: {exc}")
            warnings.append({"code": "OLLAMA_TEMPLATE_NOT_CONVERTED",
                             "message": f"The chat template could not be converted to Ollama's syntax ({exc}); "
                                        "write TEMPLATE in the Modelfile by hand.",
                             "message_ja": f"チャットテンプレートを Ollama の書式に変換できませんでした({exc})。"
                                           "Modelfile の TEMPLATE を手で書いてください。"})
    text = modelfile(str(model_file), lora_file, template, stop_tokens(parts, tokenizer.eos_token),
                     read_generation_config(base), spec["output_name"])
    write_text_atomic(out / "Modelfile", text)
    return warnings


def _run_vllm(spec: dict[str, Any], ctx: Any, out: Path) -> dict[str, Any]:
    adapter, name = Path(spec["adapter"]), spec["output_name"]
    folder = out / adapter.name
    shutil.copytree(adapter, folder, ignore=shutil.ignore_patterns(".*", "checkpoint-*"))
    ctx.progress(1, 1)
    base = spec.get("base_model_ref") or "<base model>"
    rank = int(json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8")).get("r") or 16)
    flag = f" --max-lora-rank {next((r for r in VLLM_RANKS if r >= rank), rank)}" if rank > 16 else ""
    commands = [f"vllm serve <path of {base}> --enable-lora --lora-modules {adapter.name}=./{adapter.name}{flag}",
                f"curl localhost:8000/v1/chat/completions -d '{{\"model\": \"{adapter.name}\", \"messages\": [...]}}'"]
    warnings = spec.get("warnings") or []
    body = "\n".join(["## Use", "```", *commands, "```", "", *[f"- **{w['code']}**: {w['message']}" for w in warnings]])
    write_text_atomic(out / "README.md", _card(name, spec, body))
    return {"files": [adapter.name, "README.md"], "primary": None, "opens_in": ["vLLM", "SGLang", "TGI"],
            "commands": commands, "checks": {}, "warnings": []}
