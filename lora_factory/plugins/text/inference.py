"""Chat with a base model, with or without a LoRA adapter, streaming tokens.

Why a cache in ``session``: the inference worker lives across requests; loading a base model is the
slow part, so it is loaded once per base path, adapters are attached to it by name, and switching
adapter (or answering with the base alone) never reloads the base.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lora_factory.kit import LoRAFactoryError

_CACHE_KEY = "text"


class LoadedBase:
    """One base model in the cache, with the adapters already attached to it."""

    def __init__(self, path: str, model: Any, tokenizer: Any) -> None:
        self.path = path
        self.base_model = model  # the plain transformers model (same object inside the PeftModel)
        self.model = model  # becomes a PeftModel once an adapter is attached
        self.tokenizer = tokenizer
        self.adapters: dict[str, str] = {}  # adapter path -> adapter name
        self.lock = threading.Lock()


def _base_entry(session: Any, base_path: str, trust_remote_code: bool) -> LoadedBase:
    from lora_factory.plugins.text.loading import load_causal_lm, load_tokenizer

    cache: dict[str, Any] = session.cache.setdefault(_CACHE_KEY, {})
    folder = str(Path(base_path).resolve())
    key = f"{folder}@{_weights_stamp(Path(folder))}" if Path(folder).is_dir() else folder
    entry = cache.get(key)
    if entry is None:
        if not (Path(folder) / "config.json").is_file():
            raise LoRAFactoryError("MODEL_NOT_FOUND", f"モデル「{base_path}」が見つかりません。",
                                   f"Model '{base_path}' was not found.", 404, detail={"path": base_path})
        # one base model at a time by default: a second 7B model next to the first would not fit a
        # consumer GPU (LORA_FACTORY_INFER_MAX_BASES raises it); a replaced folder is always dropped
        keep = max(1, int(os.environ.get("LORA_FACTORY_INFER_MAX_BASES", "1")))
        for stale in [k for k in cache if k.rsplit("@", 1)[0] == folder] + list(cache)[: max(0, len(cache) - keep + 1)]:
            cache.pop(stale, None)
        _free_accelerator_memory()
        tokenizer = load_tokenizer(Path(folder), trust_remote_code)
        model = load_causal_lm(Path(folder), "none", trust_remote_code)
        model.eval()
        entry = LoadedBase(folder, model, tokenizer)
        cache[key] = entry
    return entry


def _free_accelerator_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _weights_stamp(folder: Path) -> str:
    """Modification times of the weight files: changes when the folder's content is replaced."""
    files = sorted(folder.glob("*.safetensors")) or [folder / "config.json"]
    return ",".join(f"{p.stat().st_mtime_ns}" for p in files if p.exists())


def _activate_adapter(entry: LoadedBase, adapter_path: str) -> str:
    """Attach (once) and select an adapter on the cached base; returns its name."""
    from peft import PeftModel

    folder = str(Path(adapter_path).resolve())
    if not (Path(folder) / "adapter_config.json").is_file():
        raise LoRAFactoryError("ADAPTER_NOT_FOUND", f"アダプタ「{adapter_path}」に adapter_config.json がありません。",
                               f"The adapter '{adapter_path}' has no adapter_config.json.", 404,
                               detail={"path": adapter_path})
    # an adapter deleted and trained again under the same name must not be served from the cache
    key = f"{folder}@{_weights_stamp(Path(folder))}"
    name = entry.adapters.get(key)
    try:
        if name is None:
            name = f"a{len(entry.adapters)}"
            if isinstance(entry.model, PeftModel):
                entry.model.load_adapter(folder, adapter_name=name)
            else:
                entry.model = PeftModel.from_pretrained(entry.base_model, folder, adapter_name=name)
            entry.model.eval()
            for stale_key in [k for k in entry.adapters if k.rsplit("@", 1)[0] == folder]:
                entry.model.delete_adapter(entry.adapters.pop(stale_key))  # replaced on disk
            entry.adapters[key] = name
        entry.model.set_adapter(name)
    except LoRAFactoryError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise LoRAFactoryError("ADAPTER_LOAD_FAILED", f"アダプタを読み込めません: {exc}",
                               f"Could not load the adapter: {exc}", 500,
                               detail={"path": adapter_path, "reason": f"{type(exc).__name__}: {exc}"}) from exc
    return name


def _prompt_ids(tokenizer: Any, request: dict[str, Any]) -> Any:
    messages = request.get("messages")
    if messages:
        text = tokenizer.apply_chat_template(
            [{"role": m["role"], "content": m["content"]} for m in messages],
            tokenize=False, add_generation_prompt=True,
        )
    elif request.get("prompt") is not None:
        text = str(request["prompt"])
    else:
        raise LoRAFactoryError("INVALID_REQUEST", "messages か prompt を指定してください。",
                               "Give either messages or prompt.", 422, detail={"field": "messages"})
    return tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]


class ChatParams(BaseModel):
    """What a chat request may set; anything else (a typo, a string for a number) is a 422 naming it."""

    model_config = ConfigDict(extra="ignore")

    max_new_tokens: int = Field(128, ge=1, le=32768)
    temperature: float = Field(0.0, ge=0.0, le=10.0, allow_inf_nan=False)
    top_p: float = Field(1.0, gt=0.0, le=1.0, allow_inf_nan=False)
    top_k: int = Field(0, ge=0, le=100000)
    repetition_penalty: float = Field(1.0, gt=0.0, le=10.0, allow_inf_nan=False)
    seed: int | None = Field(None, ge=0, le=2**63 - 1)


def chat_params(params: dict[str, Any] | None) -> ChatParams:
    """The chat parameters validated (``None`` values mean the default)."""
    from lora_factory.kit import presets

    try:
        return ChatParams.model_validate({k: v for k, v in (params or {}).items() if v is not None})
    except ValidationError as exc:
        raise presets.invalid_params(exc, "INVALID_INFER_PARAMS", "生成パラメータ", "Generation parameter") from exc


def _generation_kwargs(tokenizer: Any, params: dict[str, Any]) -> dict[str, Any]:
    checked = chat_params(params)
    temperature = checked.temperature
    kwargs: dict[str, Any] = {
        "max_new_tokens": checked.max_new_tokens,
        "repetition_penalty": checked.repetition_penalty,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    if temperature > 0:
        kwargs.update(do_sample=True, temperature=temperature, top_p=checked.top_p, top_k=checked.top_k)
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    return kwargs


def _stop_when(flag: Any) -> Any:
    """A ``StoppingCriteriaList`` that ends ``generate()`` once ``flag()`` is true."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _Stop(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            import torch

            return torch.full((input_ids.shape[0],), bool(flag()), dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([_Stop()])


def context_length(model: Any) -> int | None:
    """The longest sequence the model was built for (``max_position_embeddings`` or its aliases)."""
    config = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _check_context(model: Any, prompt_tokens: int, max_new_tokens: int) -> None:
    """A prompt that does not fit the model's context is a 422 at once, before any generation."""
    limit = context_length(model)
    if limit is not None and prompt_tokens >= limit:
        raise LoRAFactoryError(
            "PROMPT_TOO_LONG",
            f"プロンプトが長すぎます({prompt_tokens} トークン、モデルの上限は {limit} トークン)。会話を短くしてください。",
            f"The prompt is too long ({prompt_tokens} tokens; the model's context is {limit} tokens). Shorten it.",
            422, detail={"field": "messages", "prompt_tokens": prompt_tokens, "context_length": limit})


def chat_events(request: dict[str, Any], session: Any) -> Iterator[dict[str, Any]]:
    """Yield ``{"type": "token", "text"}`` events then one ``{"type": "done", "text", "usage", "model"}``."""
    import contextlib

    import torch
    from transformers import TextIteratorStreamer

    params = dict(request.get("params") or {})
    chat_params(params)  # a bad parameter is a 422 before the model loads
    entry = _base_entry(session, str(request.get("base_model", "")), bool(request.get("trust_remote_code", False)))
    adapter = request.get("adapter")
    tokenizer = entry.tokenizer
    input_ids = _prompt_ids(tokenizer, request)
    gen_kwargs = _generation_kwargs(tokenizer, params)
    _check_context(entry.base_model, int(input_ids.shape[-1]), gen_kwargs["max_new_tokens"])
    model_name = Path(entry.path).name + (f"+{Path(str(adapter)).name}" if adapter else "")

    with entry.lock:  # one generation at a time per base: adapters are switched on a shared model
        if adapter:
            _activate_adapter(entry, str(adapter))
            scope: Any = contextlib.nullcontext()
        else:
            scope = entry.model.disable_adapter() if entry.adapters else contextlib.nullcontext()
        if params.get("seed") is not None:
            torch.manual_seed(int(params["seed"]))
        device = next(entry.model.parameters()).device
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)
        errors: list[BaseException] = []
        output: dict[str, Any] = {}
        stop = threading.Event()  # set when the consumer closes this generator (its client is gone)
        stopping = _stop_when(lambda: stop.is_set() or bool(getattr(session, "should_stop", lambda: False)()))

        def run() -> None:
            try:
                with scope, torch.inference_mode():
                    output["ids"] = entry.model.generate(
                        input_ids=input_ids.to(device), attention_mask=torch.ones_like(input_ids).to(device),
                        streamer=streamer, stopping_criteria=stopping, **gen_kwargs,
                    )
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                errors.append(exc)
                streamer.end()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        pieces: list[str] = []
        try:
            for piece in streamer:
                if piece:
                    pieces.append(piece)
                    yield {"type": "token", "text": piece}
        finally:
            stop.set()  # a closed generator (client gone) ends generate() at its next token
            thread.join()
    if errors:
        exc = errors[0]
        raise LoRAFactoryError("GENERATION_FAILED", f"生成に失敗しました: {exc}", f"Generation failed: {exc}", 500,
                               detail={"reason": f"{type(exc).__name__}: {exc}"}) from exc
    completion = int(output["ids"].shape[-1] - input_ids.shape[-1]) if "ids" in output else 0
    yield {
        "type": "done",
        "text": "".join(pieces),
        "usage": {"prompt_tokens": int(input_ids.shape[-1]), "completion_tokens": completion,
                  "total_tokens": int(input_ids.shape[-1]) + completion},
        "model": model_name,
    }
