"""Push an adapter (any modality) to the Hugging Face Hub as an ``export`` job with target ``hub``.

Server side (``resolve_hub_spec``): the parameters are checked, a missing token is a 400 at once, and
the model card is written from what the workspace knows: the adapter's own card, the lineage of its
training data (dataset versions and the refine operations that made them) and its regression runs.
Job side (``run_hub_push``): ``create_repo`` then one ``create_commit`` with the adapter's files and
that card; the card and ``hub.json`` (repo, commit) stay in ``exports/<modality>/<name>/``, so the push is
listed under its adapter like any export. The token is the workspace's ``hf_token`` setting (or
``HF_TOKEN``), which the worker puts in the environment: it never enters the job's spec.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from lora_factory.core.errors import LoRAFactoryError, hub_error
from lora_factory.core.plugin_host.host_targets import REPO_ID_PATTERN
from lora_factory.core.storage.settings import load_settings
from lora_factory.core.storage.workspace import write_text_atomic

CARD = "README.md"
MAX_CARD_NODES = 50


def _invalid(field: str, ja: str, en: str) -> LoRAFactoryError:
    return LoRAFactoryError("INVALID_EXPORT_PARAMS", ja, en, detail={"field": field})


def hub_token(home: Path) -> str | None:
    return os.environ.get("HF_TOKEN") or load_settings(home).hf_token or None


def resolve_hub_spec(spec: dict[str, Any], *, home: Path, adapter_info: dict[str, Any]) -> dict[str, Any]:
    """The checked parameters and the model card; refuses (400) before queueing when no token is set."""
    given = dict(spec.get("params") or {})
    unknown = sorted(set(given) - {"repo_id", "private", "commit_message"})
    if unknown:
        raise _invalid(unknown[0], f"不明なパラメータ: {', '.join(unknown)}", f"Unknown parameter(s): {', '.join(unknown)}")
    repo_id = str(given.get("repo_id") or "").strip()
    if not re.match(REPO_ID_PATTERN, repo_id) or ".." in repo_id or len(repo_id) > 96:
        raise _invalid("repo_id", "repo_id は「ユーザー名/リポジトリ名」の形で指定してください。",
                       "repo_id must look like 'user/name'.")
    private = given.get("private", True)
    if not isinstance(private, bool):
        raise _invalid("private", "private は true / false です。", "private must be true or false.")
    if not hub_token(home):
        raise LoRAFactoryError(
            "HUB_TOKEN_REQUIRED",
            "Hub への公開には書き込み権限のあるトークンが必要です。システムタブで hf_token を設定してください"
            "(CLI: lora-factory settings set hf_token <token>)。",
            "Pushing to the Hub needs a token with write access: set hf_token in the System tab "
            "(CLI: lora-factory settings set hf_token <token>).", http_status=400, detail={"field": "hf_token"})
    message = str(given.get("commit_message") or f"Upload {Path(spec['adapter']).name} from LoRA Factory")
    params = {"repo_id": repo_id, "private": private, "commit_message": message[:200]}
    card = model_card(Path(spec["adapter"]), adapter_info)
    return dict(spec, params=params, card=card, warnings=[])


def _body_of(readme: str) -> str:
    """The adapter's own card without its YAML header (the Hub header is written anew)."""
    if readme.startswith("---"):
        end = readme.find("\n---", 3)
        if end != -1:
            return readme[end + 4:].lstrip("\n")
    return readme


def _walk(node: dict[str, Any], role: str | None, out: list[tuple[str | None, dict[str, Any]]], seen: set[str]) -> None:
    if not isinstance(node, dict) or node.get("id") in seen or len(out) >= MAX_CARD_NODES:
        return
    seen.add(str(node.get("id")))
    out.append((role, node))
    for parent in node.get("parents") or []:
        _walk(parent.get("artifact") or {}, parent.get("role"), out, seen)


def _hub_base_model(nodes: list[tuple[str | None, dict[str, Any]]]) -> str | None:
    """The base model's Hub id when it was downloaded from the Hub (a local path is no ``base_model``)."""
    for role, node in nodes:
        if node.get("kind") == "model" and role == "base_model":
            repo = (node.get("meta") or {}).get("repo_id")
            if isinstance(repo, str) and re.match(REPO_ID_PATTERN, repo):
                return repo
    return None


def model_card(adapter: Path, info: dict[str, Any]) -> str:
    """The Hub card: the adapter's own card plus its training data's lineage and regression results."""
    nodes: list[tuple[str | None, dict[str, Any]]] = []
    _walk(info.get("lineage") or {}, None, nodes, set())
    try:
        own = (adapter / CARD).read_text(encoding="utf-8")
    except OSError:
        own = f"# {adapter.name}\n"
    base_repo = _hub_base_model(nodes)
    header = ["---", "library_name: " + ("diffusers" if info.get("modality") == "image" else "peft"),
              f"tags: [lora-factory, lora, {info.get('modality')}]"]
    if base_repo:
        header.insert(1, f"base_model: {json.dumps(base_repo)}")
    lines = [*header, "---", "", _body_of(own).rstrip(), "", "## 学習データの由来 / training data lineage", ""]
    datasets = [(role, n) for role, n in nodes if n.get("kind") == "dataset"]
    if not datasets:
        lines.append(f"- dataset: `{info.get('dataset') or '?'}` (no recorded lineage)")
    for role, node in datasets:
        meta = node.get("meta") or {}
        what = f"- `{node.get('name')}`" + (f" ({role})" if role else "")
        if meta.get("rows") is not None:
            what += f", {meta['rows']} rows"
        if meta.get("operations"):
            ops = ", ".join(str(op.get("op", op)) if isinstance(op, dict) else str(op) for op in meta["operations"])
            what += f", refined by: {ops}"
        lines.append(what + (f" — job `{node.get('job_id')}`" if node.get("job_id") else ""))
    base = next((n for role, n in nodes if role == "base_model"), None)
    if base is not None:
        lines.append(f"- base model: `{base_repo or base.get('name')}`")
    lines += ["", "## 回帰テスト / regression results", ""]
    evals = [e for e in info.get("evals") or [] if isinstance(e.get("summary"), dict)]
    if not evals:
        lines.append("回帰テストは未実行です。 / No regression run recorded.")
    else:
        lines += ["| run | adapter | base model | previous version | created |", "|---|---|---|---|---|"]
        for e in evals:
            summary = e["summary"]
            cells = [_passed(summary.get(k)) for k in ("adapter", "base", "previous")]
            lines.append(f"| `{e.get('job_id')}` | {' | '.join(cells)} | {e.get('created_at') or ''} |")
    return "\n".join(lines) + "\n"


def _passed(part: Any) -> str:
    """``passed / total`` of one side of a regression summary, ``-`` when that side did not run."""
    if not isinstance(part, dict) or part.get("total") is None:
        return "-"
    return f"{part.get('passed')} / {part.get('total')}"


def _files(adapter: Path) -> list[Path]:
    return [p for p in sorted(adapter.rglob("*")) if p.is_file() and p.name != CARD
            and not any(part.startswith(".") for part in p.relative_to(adapter).parts)]


def _push_error(exc: BaseException, endpoint: str, repo_id: str) -> LoRAFactoryError:
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status in (401, 403):
        return LoRAFactoryError(
            "HUB_AUTH_REQUIRED",
            f"「{repo_id}」に書き込めません(HTTP {status})。書き込み権限のあるトークンか、リポジトリ名の所有者を確認してください。",
            f"Cannot write to '{repo_id}' (HTTP {status}): check that the token has write access and owns that name.",
            401, detail={"endpoint": endpoint, "repo_id": repo_id, "status": status})
    return hub_error(exc, endpoint, repo_id, "main")


def run_hub_push(spec: dict[str, Any], ctx: Any) -> dict[str, Any]:
    from huggingface_hub import CommitOperationAdd, HfApi

    params, adapter = spec["params"], Path(spec["adapter"])
    repo_id = params["repo_id"]
    endpoint = (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
    token = os.environ.get("HF_TOKEN")
    out = Path(ctx.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / CARD, spec["card"])
    files = _files(adapter)
    api = HfApi(endpoint=endpoint, token=token)
    ctx.log(f"push {adapter.name} to {endpoint}/{repo_id} ({'private' if params['private'] else 'public'}), "
            f"{len(files)} files + model card")
    try:
        url = api.create_repo(repo_id, private=params["private"], exist_ok=True, repo_type="model")
        ctx.progress(1, 2)
        if ctx.should_stop():
            return {"stopped": True}
        operations = [CommitOperationAdd(path_in_repo=p.relative_to(adapter).as_posix(), path_or_fileobj=str(p))
                      for p in files]
        operations.append(CommitOperationAdd(path_in_repo=CARD, path_or_fileobj=spec["card"].encode("utf-8")))
        commit = api.create_commit(repo_id, operations, commit_message=params["commit_message"], repo_type="model")
    except LoRAFactoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - every failure is mapped to a stable code
        raise _push_error(exc, endpoint, repo_id) from exc
    ctx.progress(2, 2)
    record = {"repo_id": repo_id, "url": str(url), "commit": commit.oid, "commit_url": commit.commit_url,
              "private": params["private"], "endpoint": endpoint,
              "files": [p.relative_to(adapter).as_posix() for p in files] + [CARD]}
    write_text_atomic(out / "hub.json", json.dumps(record, ensure_ascii=False, indent=2))
    ctx.log(f"pushed: {commit.commit_url}")
    return {"files": [CARD, "hub.json"], "primary": None, "opens_in": ["Hugging Face Hub"],
            "commands": [f"huggingface-cli download {repo_id}"], "checks": record, "warnings": []}
