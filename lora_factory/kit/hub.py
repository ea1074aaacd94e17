"""Getting a base model: from the Hugging Face Hub, from a local folder, or as one checkpoint file.

Why per-file downloads through ``hf_hub_download`` into a cache under the workspace: the cache
survives a failed or canceled job, so running the same download again resumes the ``.incomplete``
files instead of starting over; the job's ``ctx.output_dir`` only receives finished files, and the
host moves it into ``models/<modality>/`` after the hook returns, so a half download never looks like
a model. Only safetensors weights are accepted: pickled ``.bin`` / ``.pt`` files can execute code on
load. Layouts with sub-folders (diffusers: ``unet/``, ``vae/``, ``text_encoder/`` ...) are kept as they are.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import time
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from lora_factory.core.errors import LoRAFactoryError, hub_error

# Weight formats that duplicate safetensors (or are pickles); skipped when safetensors exist.
DUPLICATE_WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".msgpack", ".h5", ".onnx", ".onnx_data", ".gguf", ".ckpt",
                             ".ot", ".tflite", ".pb", ".mlmodel")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
# The first request to the Hub; a network that drops packets fails in seconds, not minutes.
HUB_CONNECT_TIMEOUT_S = float(os.environ.get("LORA_FACTORY_HUB_TIMEOUT", "15"))
# What a local import copies besides *.safetensors.
LOCAL_KEEP_SUFFIXES = (".json", ".model", ".txt", ".jinja", ".tiktoken", ".md", ".csv", ".yaml", ".yml", ".list")
COPY_CHUNK = 8 * 1024 * 1024

Requirement = Iterable[str] | Callable[[list[str]], str | None]

__all__ = ["download_repo", "import_local_folder", "import_single_file", "select_repo_files", "hub_error",
           "canceled", "read_safetensors_header", "DUPLICATE_WEIGHT_SUFFIXES", "PICKLE_SUFFIXES"]


def canceled() -> LoRAFactoryError:
    return LoRAFactoryError("CANCELED", "ダウンロードを中止しました。再実行すると途中から再開します。",
                            "The download was canceled; running it again resumes it.", 409)


def _missing(require: Requirement | None, names: list[str]) -> str | None:
    """The first required file missing from ``names`` (or the callable's message), None when all is there."""
    if require is None:
        return None
    if callable(require):
        return require(names)
    present = set(names)
    for wanted in require:
        if wanted not in present:
            return wanted
    return None


PRECISION_VARIANTS = ("fp16", "bf16", "fp32", "non_ema", "ema")


def _variant_of(name: str) -> str | None:
    """``fp16`` for ``unet/diffusion_pytorch_model.fp16.safetensors``; None for a plain file."""
    base = PurePosixPath(name).name
    return next((v for v in PRECISION_VARIANTS if f".{v}." in base), None)


def _plain_name(name: str, variant: str) -> str:
    path = PurePosixPath(name)
    return str(path.with_name(path.name.replace(f".{variant}.", ".", 1)))


def _variant_name(name: str, variant: str) -> str:
    path = PurePosixPath(name)
    suffix = path.suffix
    return str(path.with_name(f"{path.name[: -len(suffix)]}.{variant}{suffix}")) if suffix else name


def select_repo_files(names: list[str], variant: str | None = None,
                      weight_suffixes: tuple[str, ...] = (".safetensors",)) -> tuple[list[str], list[str]]:
    """(files to fetch, files skipped).

    Safetensors (or the given ``weight_suffixes``, e.g. ``.onnx`` for an ONNX tagger) win over every
    duplicate weight format. Precision variants (``*.fp16.safetensors``):
    with ``variant`` the variant file replaces the plain one where both exist; without it, the plain
    file is kept and the variant skipped (no second copy of the same weights). A file that exists only
    as a variant is kept.
    """
    if not any(n.endswith(weight_suffixes) for n in names):
        return sorted(names), []
    keep = [n for n in names if not n.endswith(DUPLICATE_WEIGHT_SUFFIXES) or n.endswith(weight_suffixes)]
    present = set(keep)
    chosen = []
    for name in keep:
        own = _variant_of(name)
        if own is None:
            skip = bool(variant) and _variant_name(name, variant) in present
        elif own == variant:
            skip = False
        else:
            plain = _plain_name(name, own)
            skip = plain in present or (bool(variant) and _variant_name(plain, variant) in present)
        if not skip:
            chosen.append(name)
    return sorted(chosen), sorted(set(names) - set(chosen))


class ByteReporter:
    """Turns per-file byte counts into throttled ``ctx.progress(done, total, unit="bytes")`` calls."""

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

    def finish_file(self, size: int) -> None:
        self.done += size
        self.current = 0
        self.report(force=True)

    def bar_class(self) -> type:
        """A tqdm look-alike for ``hf_hub_download(tqdm_class=...)``."""
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


def _matches(name: str, patterns: Iterable[str] | None) -> bool:
    from fnmatch import fnmatch

    return patterns is None or any(fnmatch(name, p) for p in patterns)


def download_repo(ctx: Any, spec: dict[str, Any], out: Path, *, require: Requirement | None = ("config.json",),
                  allow_patterns: Iterable[str] | None = None, ignore_patterns: Iterable[str] | None = None,
                  variant: str | None = None, weight_suffixes: tuple[str, ...] = (".safetensors",),
                  what_ja: str = "transformers 形式", what_en: str = "a transformers model") -> dict[str, Any]:
    """Download ``spec["repo_id"]`` at ``spec["revision"]`` into ``out``, sub-folders included.

    :param require: files that must exist in the repo (or a callable returning what is missing).
    :param allow_patterns / ignore_patterns: fnmatch patterns on repo paths (e.g. ``["unet/*"]``).
    :param variant: a precision variant to prefer (``"fp16"``), see :func:`select_repo_files`.
    :param weight_suffixes: what counts as weights (``.safetensors``; an ONNX model: ``(".onnx",)``);
        pickle formats never do.
    :raises LoRAFactoryError: ``HUB_UNREACHABLE`` (in seconds), ``HUB_AUTH_REQUIRED``, ``MODEL_NOT_FOUND``,
        ``MODEL_INVALID`` (a required file is missing), ``UNSAFE_WEIGHTS`` (pickles only), ``CANCELED``.
    """
    from huggingface_hub import HfApi, hf_hub_download

    if any(suffix in PICKLE_SUFFIXES for suffix in weight_suffixes):
        raise ValueError("pickle formats are never accepted as weights")
    repo_id = str(spec.get("repo_id") or "").strip()
    if not repo_id:
        raise LoRAFactoryError("INVALID_REQUEST", "repo_id を指定してください。", "repo_id is required.", 422,
                               detail={"field": "repo_id"})
    revision = str(spec.get("revision") or "main")
    token = spec.get("token") or os.environ.get("HF_TOKEN") or None
    # Read at call time (huggingface_hub freezes HF_ENDPOINT at import): the worker, a test or a mirror can set it.
    endpoint = (spec.get("endpoint") or os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cache_dir = Path(ctx.workspace.home) / "models" / ".cache" / "hub"
    cache_dir.mkdir(parents=True, exist_ok=True)
    ctx.log(f"hub download {repo_id}@{revision} from {endpoint}")
    try:
        # a short first contact: a network that drops packets must fail in seconds, not minutes
        info = HfApi(endpoint=endpoint, token=token).model_info(repo_id, revision=revision, files_metadata=True,
                                                                timeout=HUB_CONNECT_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - every failure is mapped to a stable code
        raise hub_error(exc, endpoint, repo_id, revision) from exc
    sizes = {s.rfilename: int(s.size or 0) for s in (info.siblings or [])
             if _matches(s.rfilename, allow_patterns) and not (ignore_patterns and _matches(s.rfilename, ignore_patterns))}
    missing = _missing(require, list(sizes))
    if missing:
        raise LoRAFactoryError("MODEL_INVALID", f"「{repo_id}」に {missing} がありません({what_ja}ではありません)。",
                               f"'{repo_id}' has no {missing} (not {what_en}).", 422,
                               detail={"repo_id": repo_id, "missing": missing})
    wanted, skipped = select_repo_files(list(sizes), variant, weight_suffixes)
    if not any(n.endswith(weight_suffixes) for n in wanted):
        raise LoRAFactoryError("UNSAFE_WEIGHTS", f"「{repo_id}」には safetensors 形式の重みがありません。安全のため読み込めません。",
                               f"'{repo_id}' has no safetensors weights; pickled weights are refused for safety.",
                               422, detail={"repo_id": repo_id, "files": wanted})
    total = sum(sizes[n] for n in wanted)
    reporter = ByteReporter(ctx, total)
    commit = info.sha or revision
    for name in wanted:
        if ctx.should_stop():
            raise canceled()
        reporter.file, reporter.current = name, 0
        try:
            cached = hf_hub_download(repo_id, name, revision=commit, cache_dir=str(cache_dir), token=token,
                                     endpoint=endpoint, tqdm_class=reporter.bar_class())
        except Exception as exc:  # noqa: BLE001
            raise hub_error(exc, endpoint, repo_id, revision) from exc
        _place(Path(cached), out / PurePosixPath(name))
        reporter.finish_file(sizes[name])
    # The files now live in the output folder (hard links or copies): the cache copy is no longer needed.
    shutil.rmtree(cache_dir / f"models--{repo_id.replace('/', '--')}", ignore_errors=True)
    ctx.log(f"downloaded {len(wanted)} files ({total} bytes); skipped {len(skipped)} duplicates")
    return {"source": "hub", "repo_id": repo_id, "revision": revision, "commit": info.sha, "path": str(out),
            "files": wanted, "skipped": skipped, "size_bytes": total}


def _copy_with_progress(ctx: Any, src: Path, dest: Path, reporter: ByteReporter) -> None:
    """Copy in chunks so a cancel is honoured inside a multi-GB file and the bar moves."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    reporter.file, reporter.current = src.name, 0
    with open(src, "rb") as fin, open(dest, "wb") as fout:
        while True:
            if ctx.should_stop():
                raise canceled()
            chunk = fin.read(COPY_CHUNK)
            if not chunk:
                break
            fout.write(chunk)
            reporter.current += len(chunk)
            reporter.report()
    shutil.copystat(src, dest, follow_symlinks=True)
    reporter.finish_file(src.stat().st_size)


def _walk_files(src: Path) -> list[Path]:
    """Every file under ``src`` (links to files are read through; links to folders are not followed:
    no loops, nothing outside the folder walked), dot-folders (.git, .cache) skipped."""
    found = []
    for root, dirs, files in os.walk(src, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(root) / name
            if not name.startswith(".") and path.is_file():
                found.append(path)
    return found


def import_local_folder(ctx: Any, src: Path | str, out: Path, *, require: Requirement | None = ("config.json",),
                        keep_suffixes: tuple[str, ...] = LOCAL_KEEP_SUFFIXES, what_ja: str = "モデル",
                        what_en: str = "model") -> dict[str, Any]:
    """Copy a model folder (recursively: diffusers layouts have ``unet/``, ``vae/`` ...) into ``out``.

    Copies ``*.safetensors`` and the small files that describe the model (``keep_suffixes``); a
    folder whose only weights are pickles is refused (``UNSAFE_WEIGHTS``).
    """
    raw = str(src or "")
    src = Path(raw).expanduser()
    if not raw or not src.is_absolute() or not src.is_dir():
        raise LoRAFactoryError("MODEL_NOT_FOUND", f"フォルダ「{raw}」が見つかりません(絶対パスで指定してください)。",
                               f"Folder '{raw}' was not found (give an absolute path).", 404,
                               detail={"field": "local_path", "path": raw})
    files = _walk_files(src)
    rel_names = [p.relative_to(src).as_posix() for p in files]
    missing = _missing(require, rel_names)
    if missing:
        raise LoRAFactoryError("MODEL_INVALID", f"「{src.name}」に {missing} がありません。",
                               f"'{src.name}' has no {missing}.", 422,
                               detail={"field": "local_path", "path": str(src), "missing": missing})
    weights = [p for p in files if p.suffix == ".safetensors"]
    if not weights:
        pickles = [p.relative_to(src).as_posix() for p in files if p.suffix in PICKLE_SUFFIXES]
        if pickles:
            raise LoRAFactoryError(
                "UNSAFE_WEIGHTS",
                "このフォルダには pickle 形式の重み (.bin/.pt) しかありません。安全のため safetensors 形式のみ"
                "読み込めます。save_pretrained(safe_serialization=True) で変換してください。",
                "This folder only has pickled weights (.bin/.pt). For safety only safetensors are accepted; "
                "convert with save_pretrained(safe_serialization=True).",
                422, detail={"path": str(src), "files": pickles})
        raise LoRAFactoryError("MODEL_INVALID", f"「{src.name}」に重みファイル (*.safetensors) がありません。",
                               f"'{src.name}' has no weights (*.safetensors).", 422,
                               detail={"path": str(src), "missing": "*.safetensors"})
    chosen = [p for p in files if p.suffix == ".safetensors" or p.suffix in keep_suffixes]
    total = sum(p.stat().st_size for p in chosen)
    reporter = ByteReporter(ctx, total)
    for path in chosen:
        _copy_with_progress(ctx, path, Path(out) / path.relative_to(src), reporter)
    ctx.log(f"imported {len(chosen)} files ({total} bytes) from {src}")
    return {"source": "local", "path": str(out), "files": [p.relative_to(src).as_posix() for p in chosen],
            "size_bytes": total,
            "skipped": sorted(p.relative_to(src).as_posix() for p in files if p not in chosen)}


def read_safetensors_header(path: Path | str) -> dict[str, Any]:
    """The JSON header of a safetensors file (tensor names, dtypes, shapes, ``__metadata__``) without
    reading the tensors: cheap enough for a listing. Raises ``MODEL_INVALID`` for anything else."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            size_bytes = fh.read(8)
            if len(size_bytes) != 8:
                raise ValueError("file too short")
            (length,) = struct.unpack("<Q", size_bytes)
            if length <= 1 or length > 100 * 1024 * 1024:
                raise ValueError(f"header length {length} out of range")
            header = json.loads(fh.read(length).decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
        return header
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise LoRAFactoryError("MODEL_INVALID", f"「{path.name}」は safetensors ファイルではありません: {exc}",
                               f"'{path.name}' is not a safetensors file: {exc}", 422,
                               detail={"path": str(path), "reason": str(exc)}) from exc


def import_single_file(ctx: Any, src: Path | str, out: Path) -> Path:
    """Copy one ``.safetensors`` checkpoint (e.g. from Civitai) into ``out`` with progress and cancel.

    The plugin then converts it (diffusers' ``from_single_file``) or keeps it as it is.
    """
    src = Path(str(src)).expanduser()
    if not src.is_absolute() or not src.is_file():
        raise LoRAFactoryError("MODEL_NOT_FOUND", f"ファイル「{src}」が見つかりません(絶対パスで指定してください)。",
                               f"File '{src}' was not found (give an absolute path).", 404,
                               detail={"field": "local_path", "path": str(src)})
    if src.suffix.lower() != ".safetensors":
        raise LoRAFactoryError("UNSAFE_WEIGHTS", "単一ファイルのチェックポイントは .safetensors だけを読み込めます(pickle は不可)。",
                               "Single-file checkpoints must be .safetensors (pickles are refused).", 422,
                               detail={"path": str(src)})
    read_safetensors_header(src)
    dest = Path(out) / src.name
    reporter = ByteReporter(ctx, src.stat().st_size)
    _copy_with_progress(ctx, src, dest, reporter)
    ctx.log(f"imported the single-file checkpoint {src.name} ({src.stat().st_size} bytes)")
    return dest
