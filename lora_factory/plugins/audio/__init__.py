"""The built-in audio plugin: Japanese voice LoRA (codec LM in the Llasa layout), Whisper ASR and
its LoRA, a dataset builder (slice, transcribe, normalise ...), text normalisation with a user
dictionary, streamed synthesis with prosody, and regression checks for voices.

Written as a third party would write it: only ``lora_factory.kit`` from the host. Hook bodies import
their working modules lazily: the server imports this file at start-up and torch must stay out.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from lora_factory.kit import LoRAFactoryError, hookimpl

MODALITY = "audio"
LICENSES = (
    "Llasa-1B / Llasa-1B-Multilingual / Llasa-3B (HKUSTAudio) と XCodec2 の重みは CC-BY-NC-4.0（非商用）です。"
    "作った声を商用に使う場合は、商用可のモデルを選んでください。Whisper は MIT、kotoba-whisper は Apache-2.0。\n"
    "Llasa (HKUSTAudio) LM weights and XCodec2 are CC-BY-NC-4.0: non-commercial use only. Whisper: MIT; "
    "kotoba-whisper: Apache-2.0. Check each checkpoint's card; only clone a voice you have the right to use."
)
# transformers' Whisper generate warns about its own defaults on every call; nothing to act on
logging.getLogger("transformers.generation.configuration_utils").setLevel(logging.ERROR)


def _loads_model(operations: list[dict[str, Any]]) -> bool:
    """Whether a refine loads a model (transcription, Whisper): that makes it GPU-bound, and only then does its
    worker ask for a device (which imports torch, seconds)."""
    return any(op.get("op") == "transcribe" for op in operations)


def _mine(modality: str) -> bool:
    return modality == MODALITY


def _dataset_error(problems: Any) -> LoRAFactoryError:
    first = problems.errors[0]
    where = f"{first.get('file')}" + (f":{first['line']}" if first.get("line") else "")
    return LoRAFactoryError(
        "DATASET_INVALID", f"データセットに問題があります（{problems.total} 件）。最初: {where} {first['reason']}",
        f"The dataset has {problems.total} problem(s). First: {where} {first['reason']}", 422,
        detail={"errors": problems.errors, "total": problems.total})


@hookimpl
def describe_modalities() -> list[dict[str, Any]]:
    from lora_factory.kit.presets import schema_for, with_descriptions_ja
    from lora_factory.plugins.audio.dataset_export import TARGETS as DATASET_EXPORTS
    from lora_factory.plugins.audio.dataset_formats import FORMATS
    from lora_factory.plugins.audio.export_ct2 import EXPORT_TARGETS
    from lora_factory.plugins.audio.presets import DEFAULT_PRESET, PRESET_INFO, PRESETS, TITLES_JA, AudioTrainParams
    from lora_factory.plugins.audio.refine_operations import refine_operations_description
    from lora_factory.plugins.audio.regression_checks import CHECKS
    from lora_factory.plugins.audio.speech_params import (
        SPEECH_DESCRIPTIONS_JA,
        SPEECH_PRESETS,
        SPEECH_TITLES_JA,
        SpeechParams,
    )

    return [{
        "id": MODALITY,
        "label_ja": "音声",
        "label_en": "Audio",
        # the libraries its workers import: a warm start (core/jobs/warm_start) imports them once (pyloudnorm,
        # with scipy, measures loudness in refines, synthesis and the regression checks: 1-2 s a job otherwise)
        "worker_modules": ["peft", "transformers", "accelerate", "soundfile", "soxr", "pyloudnorm"],
        "presets": PRESETS,
        "preset_info": PRESET_INFO,
        "default_preset": DEFAULT_PRESET,
        "dataset_formats": list(FORMATS),
        "dataset_extensions": [".zip", ".wav", ".flac", ".ogg", ".mp3", ".list", ".jsonl"],
        "dataset_kind": "folder",
        "refine_operations": refine_operations_description(),
        "train_params_schema": schema_for(AudioTrainParams, TITLES_JA),
        "supports": ["tiny_model", "item_edit", "regression", "speech", "transcribe", "eval_cer"],
        "export_targets": EXPORT_TARGETS,
        "inference_kinds": ["speech", "transcribe"],
        "infer_schemas": {
            "speech": {"input_schema": {"type": "object", "required": ["text"], "properties": {
                "text": {"type": "string", "title": "Text", "title_ja": "読み上げる文"},
                "reference_audio": {"type": "string", "format": "upload", "title": "Voice to clone (a few seconds)",
                                    "title_ja": "まねる声(数秒の録音)"},
                "reference_text": {"type": "string", "title": "What the reference says",
                                   "title_ja": "その録音の書き起こし"}}},
                       "params_schema": with_descriptions_ja(schema_for(SpeechParams, SPEECH_TITLES_JA),
                                                            SPEECH_DESCRIPTIONS_JA),
                       "presets": SPEECH_PRESETS},
            "transcribe": {"input_schema": {"type": "object", "required": ["audio"],
                                            "properties": {"audio": {"type": "string", "format": "upload",
                                                                     "title": "Audio", "title_ja": "音声ファイル"}}},
                           "params_schema": {"type": "object", "properties": {
                               "language": {"type": "string", "default": "ja", "title": "Language",
                                            "title_ja": "言語"},
                               "prompt": {"type": "string", "default": "", "title": "Prompt (words to expect)",
                                          "title_ja": "プロンプト(出てくる語句のヒント)"},
                               "timestamps": {"type": "boolean", "default": True, "title": "Timestamps",
                                              "title_ja": "タイムスタンプ"}}},
                           "presets": {}},
        },
        "regression_checks": CHECKS,
        "licenses": LICENSES,
        "dataset_exports": {target: {"label_ja": ja, "label_en": en} for target, (ja, en) in DATASET_EXPORTS.items()},
    }]


@hookimpl
def download_model(modality: str, spec: dict[str, Any], ctx: Any) -> dict[str, Any] | None:
    if not _mine(modality):
        return None
    from lora_factory.plugins.audio.download import download_audio_model

    return download_audio_model(spec, ctx)


@hookimpl
def resolve_export_spec(modality: str, spec: dict[str, Any], workspace: Any) -> dict[str, Any] | None:
    if not _mine(modality):
        return None
    from lora_factory.plugins.audio.export_ct2 import resolve

    return resolve(spec)


@hookimpl
def export_adapter(modality: str, spec: dict[str, Any], ctx: Any) -> dict[str, Any] | None:
    if not _mine(modality):
        return None
    from lora_factory.plugins.audio.export_ct2 import run

    return run(spec, ctx)


@hookimpl
def inspect_model(modality: str, path: str) -> dict[str, Any] | None:
    if not _mine(modality):
        return None
    from lora_factory.plugins.audio.model_info import inspect_audio_model

    return inspect_audio_model(Path(path))


@hookimpl
def inspect_dataset(modality: str, path: str, options: dict[str, Any]) -> dict[str, Any] | None:
    if not _mine(modality):
        return None
    from lora_factory.plugins.audio.dataset_inspect import DatasetProblems, inspect_audio_dataset

    folder = Path(path)
    if not folder.is_dir():
        raise LoRAFactoryError("DATASET_INVALID", "音声データセットはフォルダ（wavs/ と esd.list）です。",
                               "An audio dataset is a folder (wavs/ + esd.list).", 422,
                               detail={"errors": [{"file": folder.name, "reason": "not a folder"}]})
    try:
        return inspect_audio_dataset(folder, options or {})
    except DatasetProblems as problems:
        raise _dataset_error(problems) from None


@hookimpl
def export_dataset(modality: str, path: str, target: str, out_file: str) -> dict[str, Any] | None:
    if not _mine(modality):
        return None
    from lora_factory.plugins.audio.dataset_export import ExportError
    from lora_factory.plugins.audio.dataset_export import export_dataset as write_export

    try:
        report = write_export(Path(path), target, Path(out_file))
    except ExportError as exc:
        raise LoRAFactoryError("EXPORT_IMPOSSIBLE", f"この形式では書き出せません: {exc}",
                               f"Cannot export for this target: {exc}", 422, detail={"target": target}) from exc
    return {"path": str(report.path), "clips": report.clips, "list_file": report.list_file}


def _user_dictionary_near(path: Any) -> list[dict[str, str]]:
    from lora_factory.plugins.audio.dictionary_store import load_near

    return load_near(path).to_list()


@hookimpl
def resolve_train_spec(modality: str, spec: dict[str, Any]) -> dict[str, Any] | None:
    if not _mine(modality):
        return None
    from lora_factory.kit.presets import resolve_params
    from lora_factory.plugins.audio.model_info import model_kind
    from lora_factory.plugins.audio.presets import DEFAULT_PRESET, PRESETS, AudioTrainParams

    preset = spec.get("preset") or DEFAULT_PRESET
    overrides = dict(spec.get("params") or {})
    overrides.setdefault("user_dictionary", _user_dictionary_near(spec.get("dataset")))
    params = resolve_params(AudioTrainParams, PRESETS, preset, overrides)
    kind = model_kind(Path(spec["base_model"])) if spec.get("base_model") else "unknown"
    if kind == "unknown":
        raise LoRAFactoryError("MODEL_KIND_MISMATCH", "音声のベースモデルは TTS（コーデック付き LM）か Whisper です。",
                               "An audio base model is a TTS codec LM (with codec/) or a Whisper model.", 422,
                               detail={"field": "base_model"})
    # ``task`` is decided here, once: the worker trains what it says (a train job always queues with the GPU
    # jobs, so no ``gpu`` flag: it would only be a dead value in config.json)
    return dict(spec, preset=preset, params=params.model_dump(), requested_params=spec.get("params") or {},
                task=kind)


@hookimpl
def train(modality: str, spec: dict[str, Any], ctx: Any) -> dict[str, Any] | None:
    if not _mine(modality):
        return None
    from lora_factory.kit import devices, model_card, trainer
    from lora_factory.plugins.audio.train_tts import TrainingDataError

    device = devices.pick_device()
    dtype = devices.pick_dtype(device) if device == "cuda" else None

    def make_reporter(**kwargs: Any) -> Any:
        return trainer.StepReporter(ctx, **kwargs)

    kind = spec["task"]  # decided by resolve_train_spec from the base model
    try:
        if kind == "asr":
            from lora_factory.plugins.audio.train_asr import train_asr_adapter

            result = train_asr_adapter(spec, ctx, make_reporter, device=device, dtype=dtype)
            usage = ("from transformers import WhisperForConditionalGeneration, WhisperProcessor\n"
                     "from peft import PeftModel\n"
                     "base = WhisperForConditionalGeneration.from_pretrained('BASE')\n"
                     "model = PeftModel.from_pretrained(base, 'ADAPTER')")
        else:
            from lora_factory.plugins.audio.train_tts import train_tts_adapter

            result = train_tts_adapter(spec, ctx, make_reporter, device=device, dtype=dtype)
            usage = ("from transformers import AutoModelForCausalLM\nfrom peft import PeftModel\n"
                     "base = AutoModelForCausalLM.from_pretrained('BASE')  # the Llasa LM; codec in BASE/codec\n"
                     "model = PeftModel.from_pretrained(base, 'ADAPTER')")
    except TrainingDataError as exc:
        raise LoRAFactoryError("DATASET_INVALID", f"学習に使えるクリップがありません: {exc}",
                               f"No clip can be used for training: {exc}", 422) from exc
    model_card.write_adapter_metadata(ctx.output_dir, modality=MODALITY, spec=spec, params=spec["params"],
                                      result=result, usage=usage, tags=["audio", result.get("task", kind)],
                                      extra={"task": result.get("task"), "family": result.get("family")})
    return result


@hookimpl
def resolve_refine_spec(modality: str, spec: dict[str, Any], workspace: Any) -> dict[str, Any] | None:
    if not _mine(modality):
        return None
    from lora_factory.plugins.audio.dictionary_store import dictionary_path
    from lora_factory.plugins.audio.refine_operations import validate_operations
    from lora_factory.plugins.audio.text_norm import UserDictionary

    operations = validate_operations(spec.get("operations"))
    for op in operations:
        params = op["params"]
        if op["op"] == "transcribe":
            params["model"] = str(workspace.resolve_ref(params["model"], "models", MODALITY))
            if params.get("adapter"):
                params["adapter"] = str(workspace.resolve_ref(params["adapter"], "lora_adapters", MODALITY))
        if op["op"] == "normalize_text" and params.get("use_user_dictionary") and not params.get("user_dictionary"):
            params["user_dictionary"] = UserDictionary.load(
                dictionary_path(workspace.datasets_dir(MODALITY))).to_list()
    return dict(spec, operations=operations, gpu=_loads_model(operations))


@hookimpl
def refine_dataset(modality: str, spec: dict[str, Any], ctx: Any) -> dict[str, Any] | None:
    if not _mine(modality):
        return None
    from lora_factory.kit import devices
    from lora_factory.plugins.audio.refine import EditError, run_operations

    name = str(spec.get("output_name") or "refined")
    try:
        report = run_operations(Path(spec["dataset"]), Path(ctx.output_dir) / name, spec["operations"], ctx,
                                device=devices.pick_device() if _loads_model(spec["operations"]) else "cpu")
    except EditError as exc:
        raise LoRAFactoryError("REFINE_INVALID_PARAMS", f"編集できません: {exc}", f"Cannot apply the edit: {exc}",
                               422) from exc
    return {**report, "output": {"kind": "folder", "name": name, "format": report["format"]}, "output_file": name}


@hookimpl
def infer(modality: str, request: dict[str, Any], session: Any) -> Any:
    if not _mine(modality):
        return None
    from lora_factory.plugins.audio.inference import infer_events

    return infer_events(request, session)


@hookimpl
def evaluate(modality: str, spec: dict[str, Any], ctx: Any) -> dict[str, Any] | None:
    if not _mine(modality):
        return None
    from lora_factory.plugins.audio.evaluation import evaluate_audio

    return evaluate_audio(spec, ctx)


@hookimpl
def regression_check(modality: str, check: dict[str, Any], output: dict[str, Any], reference: Any,
                     session: Any) -> dict[str, Any] | None:
    if not _mine(modality):
        return None
    from lora_factory.plugins.audio.regression_checks import evaluate_check

    return evaluate_check(check, output, reference, session)


@hookimpl
def resolve_infer_request(modality: str, request: dict[str, Any], workspace: Any) -> dict[str, Any] | None:
    if not _mine(modality):
        return None
    from lora_factory.plugins.audio.requests import resolve_audio_request

    return resolve_audio_request(request)


# -- what the plugin adds to the server, the CLI and the UI ---------------------------------------

@hookimpl
def register_routes(register: Any, workspace: Any) -> None:
    """``/api/audio/dictionary`` (GET / PUT) and ``/api/audio/read``: the user dictionary (``web.py``)."""
    from lora_factory.plugins.audio.web import build_router

    register(build_router(workspace, MODALITY), modality=MODALITY)


@hookimpl
def register_commands(register: Any) -> None:
    """``lora-factory audio-dictionary list | add | remove | read`` (``commands.py``)."""
    from lora_factory.plugins.audio import commands

    register(commands.NAME, lambda args, workspace: commands.run(args, workspace, MODALITY),
             help=commands.HELP, configure=commands.configure)


@hookimpl
def register_ui(register: Any) -> None:
    """The voice studio tab (``static/voice.js``), shown while the audio modality is chosen."""
    register(Path(__file__).parent / "static", script="voice.js", modality=MODALITY)
