"""Inference of the audio modality: ``speech`` (TTS, streamed sentence by sentence), ``transcribe``
(Whisper, text + timestamps) and ``read`` (the text as it will be read, no model needed).

Loaded models stay in ``session.cache``: one base at a time, its adapters added to the same
PeftModel, so comparing base and adapter (or switching voices) does not reload the base. The request
was validated by ``requests.resolve_audio_request`` in the server: nothing here checks it again.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from lora_factory.kit import LoRAFactoryError, devices, files, media, presets
from lora_factory.plugins.audio.audio_io import AudioReadError, encode_audio, read_audio
from lora_factory.plugins.audio.dictionary_store import load_near
from lora_factory.plugins.audio.loudness import integrated_loudness
from lora_factory.plugins.audio.speech_params import SpeechParams
from lora_factory.plugins.audio.synthesis import TTSModel, synthesize
from lora_factory.plugins.audio.text_norm import NormalizationOptions
from lora_factory.plugins.audio.text_norm.normalize import normalize_with_spans
from lora_factory.plugins.audio.text_norm.reading import reading_of

CACHE_KEY = "audio"


def _adapter_list(request: dict[str, Any]) -> list[tuple[Path, float]]:
    """Every adapter of the request with its weight (the host fills ``adapters``; ``adapter`` alone
    is the plain single-adapter form)."""
    if request.get("adapters"):
        return [(Path(a["path"]), float(a.get("weight", 1.0))) for a in request["adapters"]]
    return [(Path(request["adapter"]), 1.0)] if request.get("adapter") else []


def _loaded(session: Any, base: Path, kind: str) -> dict[str, Any]:
    cache = session.cache.setdefault(CACHE_KEY, {})
    if cache.get("base") != (str(base), kind):
        cache.clear()
        devices.empty_cache()
        device = devices.pick_device()
        dtype = devices.pick_dtype(device) if device == "cuda" else None
        if kind == "tts":
            cache["model"] = TTSModel.load(base, device=device, dtype=dtype)
        else:
            from lora_factory.plugins.audio.asr import WhisperModel

            cache["model"] = WhisperModel.load(base, device=device, dtype=dtype)
        cache["base"] = (str(base), kind)
        cache["adapters"] = {}
    return cache


def _load_adapter(holder: Any, names: dict[str, str], adapter: Path) -> str:
    key = str(adapter.resolve())
    if key not in names:
        name = f"a{len(names)}"
        model = holder.model
        if hasattr(model, "load_adapter") and hasattr(model, "peft_config"):
            model.load_adapter(key, adapter_name=name)
        else:
            from peft import PeftModel

            holder.model = PeftModel.from_pretrained(model, key, adapter_name=name)
            holder.model.eval()
        names[key] = name
    return names[key]


@contextlib.contextmanager
def _with_adapter(cache: dict[str, Any], adapter: Path | None | list[tuple[Path, float]]) -> Iterator[Any]:
    """The cached model with ``adapter`` active (or with every adapter disabled for the base).

    Several voices with weights (or one with a weight other than 1) are mixed with peft's
    ``add_weighted_adapter(combination_type="cat")``: the sum of each LoRA's update times its
    weight, whatever the ranks. The mix is kept under a name made of its parts and weights.
    """
    holder = cache["model"]
    adapters = [(adapter, 1.0)] if isinstance(adapter, Path) else list(adapter or [])
    if not adapters:
        model = holder.model
        if hasattr(model, "disable_adapter"):
            with model.disable_adapter():
                yield holder
        else:
            yield holder
        return
    names: dict[str, str] = cache["adapters"]
    loaded = [(_load_adapter(holder, names, path), weight) for path, weight in adapters]
    if len(loaded) == 1 and loaded[0][1] == 1.0:
        holder.model.set_adapter(loaded[0][0])
        yield holder
        return
    mix = "mix_" + "_".join(f"{name}x{weight:g}".replace(".", "p").replace("-", "m") for name, weight in loaded)
    if mix not in holder.model.peft_config:
        holder.model.add_weighted_adapter([n for n, _ in loaded], [w for _, w in loaded], adapter_name=mix,
                                          combination_type="cat")
    holder.model.set_adapter(mix)
    yield holder


def _reference_of(request: dict[str, Any]) -> tuple[np.ndarray, int, str] | None:
    """``input.reference_audio`` (an uploaded file) and ``input.reference_text`` (what it says): the
    voice to clone. Both or neither: a reference without its transcript cannot prefix the prompt."""
    given = request.get("input") or {}
    source, transcript = given.get("reference_audio"), str(given.get("reference_text") or "").strip()
    if not source and not transcript:
        return None
    if not source or not Path(str(source)).is_file():
        raise LoRAFactoryError("INFER_INVALID_INPUT", "クローンする声の音声ファイル（reference_audio）を指定してください。",
                               "Give the reference recording to clone (reference_audio).", 422,
                               detail={"field": "input.reference_audio"})
    if not transcript:
        raise LoRAFactoryError("INFER_INVALID_INPUT", "参照音声の書き起こし（reference_text）を指定してください。",
                               "Give the transcript of the reference recording (reference_text).", 422,
                               detail={"field": "input.reference_text"})
    try:
        wave, sr = read_audio(Path(str(source)))
    except AudioReadError as exc:
        raise LoRAFactoryError("AUDIO_UNREADABLE", "参照音声を読み込めません。", f"The reference audio cannot be read: {exc}",
                               422, detail={"field": "input.reference_audio"}) from exc
    return wave, sr, transcript


def _int8_of(cache: dict[str, Any], tts: TTSModel, adapters: list[tuple[Path, float]]) -> TTSModel:
    """The int8 copy for this adapter set, kept until another set (or base) asks for one."""
    key = tuple((str(path.resolve()), weight) for path, weight in adapters)
    if cache.get("int8_key") != key:
        cache.pop("int8", None)
        cache["int8"], cache["int8_key"] = tts.int8(), key
    return cache["int8"]


def speech_events(request: dict[str, Any], session: Any) -> Iterator[dict[str, Any]]:
    text = str(request["input"]["text"])
    params = presets.trusted(SpeechParams, request.get("params") or {})
    base = Path(request["base_model"])
    dictionary = load_near(base)
    reference = _reference_of(request)
    cache = _loaded(session, base, "tts")
    started = time.perf_counter()
    first_chunk: float | None = None
    pieces: list[np.ndarray] = []
    spoken: list[str] = []
    rate = 0
    adapters = _adapter_list(request)
    with _with_adapter(cache, adapters) as tts:
        int8 = params.int8 and tts.device == "cpu"
        if int8:
            tts = _int8_of(cache, tts, adapters)
        for chunk in synthesize(tts, text, params, dictionary, reference=reference):
            if first_chunk is None:
                first_chunk = time.perf_counter() - started
            pieces.append(chunk.wave)
            spoken.append(chunk.text)
            rate = chunk.sample_rate
            if request.get("stream", True):
                yield media.audio_chunk_event(chunk.wave, chunk.sample_rate, chunk.index, text=chunk.text)
    total = time.perf_counter() - started
    wave = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    duration = wave.size / rate if rate else 0.0
    out_dir = Path(session.outputs_dir)
    path = files.unique_file(out_dir, time.strftime("speech-%Y%m%d-%H%M%S"), params.format)
    files.write_bytes_atomic(path, encode_audio(wave, rate, params.format))
    meta = {"text": text, "normalized": "".join(spoken), "seconds": round(duration, 3),
            "time_to_first_chunk_s": round(first_chunk or total, 3), "total_s": round(total, 3),
            "rtf": round(total / duration, 3) if duration else None,
            "lufs": round(integrated_loudness(wave, rate), 2) if wave.size else None,
            "format": params.format, "chunks": len(pieces), "lm": "int8" if int8 else "float",
            "batch_sentences": params.batch_sentences,
            "reference_seconds": round(reference[0].size / reference[1], 3) if reference else None}
    yield media.audio_event(path, rate, meta)
    yield media.done_event(text="".join(spoken), usage={"audio_seconds": meta["seconds"], "chunks": len(pieces)},
                           meta=meta)


def transcribe_events(request: dict[str, Any], session: Any) -> Iterator[dict[str, Any]]:
    source = request["input"]["audio"]
    params = request.get("params") or {}
    base = Path(request["base_model"])
    try:
        wave, sr = read_audio(Path(source))
    except AudioReadError as exc:
        reason = str(exc).replace(str(source), Path(source).name)  # never the server's absolute path
        raise LoRAFactoryError("AUDIO_UNREADABLE", "音声ファイルを読み込めません。", f"The audio cannot be read: {reason}",
                               422, detail={"field": "input.audio"}) from exc
    cache = _loaded(session, base, "asr")
    with _with_adapter(cache, _adapter_list(request)) as whisper:
        result = whisper.transcribe(wave, sr, language=params.get("language") or "ja",
                                    prompt=params.get("prompt") or None,
                                    timestamps=bool(params.get("timestamps", True)),
                                    max_new_tokens=params.get("max_new_tokens"))
    yield media.token_event(result.text)
    yield media.done_event(text=result.text, segments=result.segments, duration=round(result.duration, 3),
                           language=result.language)


def read_events(request: dict[str, Any]) -> Iterator[dict[str, Any]]:
    text = str((request.get("input") or {}).get("text") or "")
    params = request.get("params") or {}
    dictionary = load_near(request.get("base_model"))
    normalized, spans = normalize_with_spans(text, NormalizationOptions(latin=params.get("latin", "keep"),
                                                                        user_dictionary=dictionary))
    yield media.token_event(normalized)
    yield media.done_event(text=normalized, reading=reading_of(normalized, spans).to_dict())


def infer_events(request: dict[str, Any], session: Any) -> Iterator[dict[str, Any]]:
    task = request.get("task") or "speech"
    if task == "speech":
        return speech_events(request, session)
    if task == "transcribe":
        return transcribe_events(request, session)
    if task == "read":
        return read_events(request)
    raise LoRAFactoryError("INFER_INVALID_TASK", f"不明な推論の種類です: {task}", f"Unknown inference task '{task}' "
                           "(speech, transcribe, read).", 422, detail={"field": "task"})


def wave_of_output(path: Path) -> tuple[np.ndarray, int]:
    return read_audio(path)
