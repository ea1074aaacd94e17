"""Get a base model: from the Hugging Face Hub, from a local folder, or built offline (tiny).

Why per-file downloads through ``hf_hub_download`` into a cache under the workspace: the cache
survives a failed or canceled job, so running the same download again resumes the ``.incomplete``
files instead of starting over; the job's ``ctx.output_dir`` only receives finished files, and the
host moves it into ``models/text/`` after we return, so a half download never looks like a model.
Only safetensors weights are accepted: pickled ``.bin`` / ``.pt`` files can execute code on load.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from lora_factory.core.errors import LoRAFactoryError

# Weight formats that duplicate safetensors (or are pickles); skipped when safetensors exist.
DUPLICATE_WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".msgpack", ".h5", ".onnx", ".onnx_data", ".gguf", ".ckpt",
                             ".ot", ".tflite")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
# The first request to the Hub; a network that drops packets fails in seconds, not minutes.
HUB_CONNECT_TIMEOUT_S = float(os.environ.get("LORA_FACTORY_HUB_TIMEOUT", "15"))
# What a local import copies besides *.safetensors.
LOCAL_KEEP_SUFFIXES = (".json", ".model", ".txt", ".jinja", ".tiktoken", ".md")


def download_text_model(spec: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Dispatch on ``spec["source"]``: ``hub``, ``local`` or ``tiny``; files land in ``ctx.output_dir``."""
    source = spec.get("source", "hub")
    out = Path(ctx.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if source == "tiny":
        from lora_factory.plugins.text.tiny_model import build_tiny_text_model

        ctx.log("tiny モデルを生成します / building the tiny random model")
        result = build_tiny_text_model(out, seed=int(spec.get("seed", 0)))
        ctx.progress(1, 1)
        return {"source": "tiny", **result}
    if source == "local":
        return _import_local(spec, ctx, out)
    if source == "hub":
        return _download_hub(spec, ctx, out)
    raise LoRAFactoryError("INVALID_SOURCE", f"不明な取得元です: {source}(hub / local / tiny)",
                           f"Unknown source '{source}' (hub, local or tiny).", 422,
                           detail={"field": "source", "value": source})


def _canceled() -> LoRAFactoryError:
    return LoRAFactoryError("CANCELED", "ダウンロードを中止しました。再実行すると途中から再開します。",
                            "The download was canceled; running it again resumes it.", 409)


# -- local --------------------------------------------------------------------------------------
def _import_local(spec: dict[str, Any], ctx: Any, out: Path) -> dict[str, Any]:
    raw = str(spec.get("local_path") or "")
    src = Path(raw).expanduser()
    if not raw or not src.is_absolute() or not src.is_dir():
        raise LoRAFactoryError("MODEL_NOT_FOUND", f"フォルダ「{raw}」が見つかりません(絶対パスで指定してください)。",
                               f"Folder '{raw}' was not found (give an absolute path).", 404,
                               detail={"field": "local_path", "path": raw})
    if not (src / "config.json").is_file():
        raise LoRAFactoryError("MODEL_INVALID", f"「{src.name}」に config.json がありません。",
                               f"'{src.name}' has no config.json.", 422,
                               detail={"field": "local_path", "path": str(src), "missing": "config.json"})
    files = [p for p in src.iterdir() if p.is_file()]
    weights = [p for p in files if p.suffix == ".safetensors"]
    if not weights:
        pickles = [p.name for p in files if p.suffix in PICKLE_SUFFIXES]
        if pickles:
            raise LoRAFactoryError(
                "UNSAFE_WEIGHTS",
                "このフォルダには pickle 形式の重み (.bin/.pt) しかありません。安全のため safetensors 形式のみ"
                "読み込めます。transformers の save_pretrained(safe_serialization=True) で変換してください。",
                "This folder only has pickled weights (.bin/.pt). For safety only safetensors are accepted; "
                "convert with save_pretrained(safe_serialization=True).",
                422, detail={"path": str(src), "files": pickles})
        raise LoRAFactoryError("MODEL_INVALID", f"「{src.name}」に重みファイル (*.safetensors) がありません。",
                               f"'{src.name}' has no weights (*.safetensors).", 422,
                               detail={"path": str(src), "missing": "*.safetensors"})
    chosen = sorted(p for p in files if p.suffix == ".safetensors" or p.suffix in LOCAL_KEEP_SUFFIXES)
    total = sum(p.stat().st_size for p in chosen)
    done = 0
    for p in chosen:
        if ctx.should_stop():
            raise _canceled()
        shutil.copyfile(p, out / p.name)
        done += p.stat().st_size
        ctx.progress(done, total, unit="bytes", file=p.name)
    ctx.log(f"imported {len(chosen)} files ({total} bytes) from {src}")
    return {"source": "local", "path": str(out), "files": [p.name for p in chosen], "size_bytes": total,
            "skipped": sorted(p.name for p in files if p not in chosen)}


# -- hub ----------------------------------------------------------------------------------------
def select_repo_files(names: list[str]) -> tuple[list[str], list[str]]:
    """(files to fetch, files skipped): safetensors win over every duplicate weight format."""
    has_safetensors = any(n.endswith(".safetensors") for n in names)
    if not has_safetensors:
        return sorted(names), []
    keep = [n for n in names if not n.endswith(DUPLICATE_WEIGHT_SUFFIXES)]
    return sorted(keep), sorted(set(names) - set(keep))


def _hub_error(exc: BaseException, endpoint: str, repo_id: str, revision: str) -> LoRAFactoryError:
    """Map huggingface_hub / httpx failures to our stable codes."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    detail = {"endpoint": endpoint, "repo_id": repo_id, "revision": revision, "reason": f"{type(exc).__name__}: {exc}"[:500]}
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, GatedRepoError) or (status in (401, 403) and not isinstance(exc, RepositoryNotFoundError)):
        return LoRAFactoryError(
            "HUB_AUTH_REQUIRED",
            f"「{repo_id}」のダウンロードには認証が必要です。Hugging Face でアクセス許可を得て、トークン (HF_TOKEN) を設定してください。",
            f"'{repo_id}' needs authentication: accept its terms on Hugging Face and set a token (HF_TOKEN).",
            401, detail=detail)
    if isinstance(exc, (RepositoryNotFoundError, RevisionNotFoundError, RemoteEntryNotFoundError)) or status == 404:
        return LoRAFactoryError(
            "MODEL_NOT_FOUND",
            f"モデル「{repo_id}」(リビジョン {revision}) が見つかりません。名前を確認してください(非公開ならトークンが必要です)。",
            f"Model '{repo_id}' (revision {revision}) was not found; check the name (private repos need a token).",
            404, detail=detail)
    if isinstance(exc, HfHubHTTPError) and status is not None:
        return LoRAFactoryError("HUB_ERROR", f"Hub がエラーを返しました (HTTP {status})。しばらくして再実行してください。",
                                f"The Hub answered HTTP {status}; try again later.", 502, detail=detail)
    if isinstance(exc, (LocalEntryNotFoundError, OfflineModeIsEnabled, ConnectionError, TimeoutError)) or \
            type(exc).__module__.split(".")[0] in ("httpx", "httpx2", "httpcore"):
        return LoRAFactoryError(
            "HUB_UNREACHABLE",
            f"Hugging Face Hub ({endpoint}) に接続できません。ネットワーク接続を確認してください。"
            "再実行すると途中から再開します。",
            f"Cannot reach the Hugging Face Hub ({endpoint}); check the network. Running again resumes the download.",
            503, detail=detail)
    return LoRAFactoryError("HUB_ERROR", f"ダウンロードに失敗しました: {exc}", f"The download failed: {exc}", 502,
                            detail=detail)


class _ByteReporter:
    """Turns huggingface_hub's per-file progress bar calls into throttled ``ctx.progress`` calls."""

    def __init__(self, ctx: Any, total: int) -> None:
        self.ctx = ctx
        self.total = total
        self.done = 0  # bytes of finished files
        self.current = 0  # bytes of the file in flight
        self.file = ""
        self._last = 0.0

    def report(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last >= 0.5:
            self._last = now
            self.ctx.progress(self.done + self.current, self.total, unit="bytes", file=self.file)

    def bar_class(self) -> type:
        reporter = self

        class Bar:
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                reporter.current = int(kwargs.get("initial") or 0)  # resumed bytes count as downloaded

            def __enter__(self) -> Bar:
                return self

            def __exit__(self, *exc: Any) -> None:
                return None

            def update(self, n: float | None = 1) -> None:
                reporter.current += int(n or 0)
                reporter.report()

            def close(self) -> None:
                return None

            def set_postfix_str(self, *args: Any, **kwargs: Any) -> None:
                return None

            def refresh(self, *args: Any, **kwargs: Any) -> None:
                return None

        return Bar


def _place(cached: Path, dest: Path) -> None:
    """Hard-link the finished cache file into the output (no second copy on disk), else copy."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    real = Path(os.path.realpath(cached))
    try:
        os.link(real, dest)
    except OSError:
        shutil.copyfile(real, dest)


def _download_hub(spec: dict[str, Any], ctx: Any, out: Path) -> dict[str, Any]:
    from huggingface_hub import HfApi, hf_hub_download

    repo_id = str(spec.get("repo_id") or "").strip()
    if not repo_id:
        raise LoRAFactoryError("INVALID_REQUEST", "repo_id を指定してください。", "repo_id is required.", 422,
                               detail={"field": "repo_id"})
    revision = str(spec.get("revision") or "main")
    token = spec.get("token") or os.environ.get("HF_TOKEN") or None
    # Read at call time (huggingface_hub freezes HF_ENDPOINT at import): the worker, a test or a mirror can set it.
    endpoint = (spec.get("endpoint") or os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
    cache_dir = Path(ctx.workspace.home) / "models" / ".cache" / "hub"
    cache_dir.mkdir(parents=True, exist_ok=True)
    ctx.log(f"hub download {repo_id}@{revision} from {endpoint}")
    try:
        # a short first contact: a network that drops packets must fail in seconds, not minutes
        info = HfApi(endpoint=endpoint, token=token).model_info(repo_id, revision=revision, files_metadata=True,
                                                                timeout=HUB_CONNECT_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - every failure is mapped to a stable code
        raise _hub_error(exc, endpoint, repo_id, revision) from exc
    sizes = {s.rfilename: int(s.size or 0) for s in (info.siblings or [])}
    wanted, skipped = select_repo_files(list(sizes))
    if "config.json" not in sizes:
        raise LoRAFactoryError("MODEL_INVALID", f"「{repo_id}」に config.json がありません(transformers 形式ではありません)。",
                               f"'{repo_id}' has no config.json (not a transformers model).", 422,
                               detail={"repo_id": repo_id, "missing": "config.json"})
    if not any(n.endswith(".safetensors") for n in wanted):
        raise LoRAFactoryError("UNSAFE_WEIGHTS", f"「{repo_id}」には safetensors 形式の重みがありません。安全のため読み込めません。",
                               f"'{repo_id}' has no safetensors weights; pickled weights are refused for safety.",
                               422, detail={"repo_id": repo_id, "files": wanted})
    total = sum(sizes[n] for n in wanted)
    reporter = _ByteReporter(ctx, total)
    commit = info.sha or revision
    for name in wanted:
        if ctx.should_stop():
            raise _canceled()
        reporter.file, reporter.current = name, 0
        try:
            cached = hf_hub_download(repo_id, name, revision=commit, cache_dir=str(cache_dir), token=token,
                                     endpoint=endpoint, tqdm_class=reporter.bar_class())
        except Exception as exc:  # noqa: BLE001
            raise _hub_error(exc, endpoint, repo_id, revision) from exc
        _place(Path(cached), out / name)
        reporter.done += sizes[name]
        reporter.current = 0
        reporter.report(force=True)
    # The files now live in the output folder (hard links or copies): the cache copy is no longer needed.
    shutil.rmtree(cache_dir / f"models--{repo_id.replace('/', '--')}", ignore_errors=True)
    ctx.log(f"downloaded {len(wanted)} files ({total} bytes); skipped {len(skipped)} duplicates")
    return {"source": "hub", "repo_id": repo_id, "revision": revision, "commit": info.sha, "path": str(out),
            "files": wanted, "skipped": skipped, "size_bytes": total}
