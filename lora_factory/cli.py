"""``lora-factory``: the same operations as the REST API, on the workspace directly.

Errors print the same code and messages as the API (Japanese, then English) and exit with 2.
Commands that queue a job start it at once when a slot is free; ``--wait`` follows it with a
progress bar (the worker is detached: Ctrl+C stops watching, not the job).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from lora_factory import __version__
from lora_factory.core.errors import LoRAFactoryError
from lora_factory.core.jobs.devices import parse_cli as parse_devices

DEVICES_HELP = ("how many devices (GPUs) the job takes (2), or which ones (0,2; cuda:1; cpu:1) "
                "(default 1 for GPU work, 0 for CPU-only jobs and on a machine without devices)")


def _services(args: argparse.Namespace) -> Any:
    from lora_factory.core.services import Services

    return Services(args.home)


def _print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def _progress_line(job: dict[str, Any]) -> str:
    step, total = job.get("step") or 0, job.get("max_steps") or 0
    width = 30
    filled = int(width * step / total) if total else 0
    bar = "#" * filled + "-" * (width - filled)
    loss = job.get("loss")
    eta = (job.get("metrics") or {}).get("eta")
    parts = [f"[{bar}] {step}/{total}", job["status"]]
    if loss is not None:
        parts.append(f"loss {loss:.4f}")
    if eta is not None:
        parts.append(f"ETA {eta:.0f}s")
    return "  ".join(parts)


def _wait(svc: Any, job_id: str) -> int:
    def show(job: dict[str, Any]) -> None:
        sys.stderr.write("\r" + _progress_line(svc.job_views.present_job(job)).ljust(79))
        sys.stderr.flush()

    try:
        job = svc.jobs.wait(job_id, on_update=show)
    except KeyboardInterrupt:
        sys.stderr.write(f"\nstopped watching; job {job_id} goes on (lora-factory jobs show {job_id})\n")
        return 130
    sys.stderr.write("\n")
    view = svc.job_views.present_job(job)
    _print_json({k: view[k] for k in ("job_id", "status", "step", "max_steps", "loss", "devices", "result", "error",
                                      "log_file")})
    return 0 if job["status"] == "completed" else 1


def _submitted(svc: Any, job_id: str, wait: bool) -> int:
    if wait:
        return _wait(svc, job_id)
    job = svc.job_views.job_view(job_id)
    print(json.dumps({"job_id": job_id, "status": job["status"], "queue_position": job["queue_position"]}))
    return 0


def _parse_params(pairs: list[str], raw_json: str | None) -> dict[str, Any]:
    params: dict[str, Any] = json.loads(raw_json) if raw_json else {}
    for pair in pairs or []:
        if "=" not in pair:
            raise LoRAFactoryError("INVALID_TRAIN_PARAMS", f"--param は key=value で指定してください: {pair}",
                                   f"--param takes key=value: {pair}", detail={"field": pair})
        key, value = pair.split("=", 1)
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


# -- commands ----------------------------------------------------------------------------------
def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from lora_factory.app import create_app
    from lora_factory.routes.guard import is_loopback

    if not is_loopback(args.host):
        print(f"warning: listening on {args.host}: anyone who can reach this address can try LoRA Factory; "
              "every API call needs the token (api_token.txt in the workspace)", file=sys.stderr)
    if args.max_gpu_jobs:
        os.environ["LORA_FACTORY_MAX_GPU_JOBS"] = str(args.max_gpu_jobs)
    if args.cluster:  # this run's training jobs go to the cluster (the setting cluster_address, for one run)
        from lora_factory.core.jobs.cluster.config import ENV_ADDRESS, parse_address

        parse_address(args.cluster)
        os.environ[ENV_ADDRESS] = args.cluster
    app = create_app(args.home, bind_host=args.host, allowed_hosts=tuple(args.allowed_host or ()), port=args.port)
    print(f"LoRA Factory {__version__}: http://{args.host}:{args.port}  (workspace {app.state.services.workspace.home})")
    # open event streams (the UI follows jobs) must not keep Ctrl+C from stopping the server
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, timeout_graceful_shutdown=2)
    return 0


def _print_log(svc: Any, job_id: str, tail: int, follow: bool) -> int:
    """The log's last lines; with ``follow``, new lines as they come until the job ends."""
    import time

    from lora_factory.core.jobs.store import TERMINAL_STATUSES

    for line in svc.job_views.log_tail(job_id, tail)["lines"]:
        print(line)
    if not follow:
        return 0
    path = Path(svc.job_views.log_tail(job_id, 1)["log_file"])
    position = path.stat().st_size if path.exists() else 0
    try:
        while True:
            if path.exists() and path.stat().st_size > position:
                with open(path, "rb") as fh:
                    fh.seek(position)
                    chunk = fh.read()
                position += len(chunk)
                sys.stdout.write(chunk.decode("utf-8", errors="replace"))
                sys.stdout.flush()
            elif svc.store.get(job_id)["status"] in TERMINAL_STATUSES:
                return 0
            time.sleep(0.5)
    except KeyboardInterrupt:
        return 130


def cmd_jobs(args: argparse.Namespace) -> int:
    svc = _services(args)
    if args.action == "list":
        jobs = svc.job_views.list_jobs(args.kind, args.status, args.modality, args.limit)
        if args.json:
            _print_json(jobs)
        else:
            for job in jobs:
                loss = f"{job['loss']:.4f}" if job["loss"] is not None else "-"
                print(f"{job['id']}  {job['kind']:<8} {job['modality']:<6} {job['status']:<11} "
                      f"{job['step']}/{job['max_steps']}  loss {loss}  {job['output_name'] or ''}")
        return 0
    if not args.job_id:
        raise LoRAFactoryError("JOB_ID_REQUIRED", "ジョブ ID を指定してください。", "Give a job id.")
    if args.action == "show":
        _print_json(svc.job_views.job_view(args.job_id))
    elif args.action == "cancel":
        job = svc.jobs.cancel(args.job_id)
        print(json.dumps({"ok": True, "status": job["status"]}))
    elif args.action == "logs":
        return _print_log(svc, args.job_id, args.tail, args.follow)
    elif args.action == "rerun":
        return _submitted(svc, svc.jobs.rerun(args.job_id), args.wait)
    elif args.action == "resume":
        return _submitted(svc, svc.jobs.resume(args.job_id), args.wait)
    elif args.action == "wait":
        return _wait(svc, args.job_id)
    elif args.action == "delete":
        svc.jobs.delete(args.job_id, confirm=args.yes)
        print(json.dumps({"ok": True}))
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from lora_factory.core.plugin_host.extensions import collect_commands, collect_routes, collect_ui

    svc = _services(args)
    # what each plugin adds, collected as the server and the CLI would, so a refusal is listed with it
    collect_routes(svc.plugins, svc.workspace)
    collect_ui(svc.plugins)
    collect_commands(svc.plugins, set(_commands_of(build_parser(with_plugins=False))))
    if args.json:
        _print_json({"plugins": svc.plugins.plugin_list(), "modalities": list(svc.plugins.modalities().values())})
    else:
        for plugin in svc.plugins.plugin_list():
            state = "ok" if plugin["ok"] else f"ERROR: {plugin['error']}"
            print(f"{plugin['name']:<40} {plugin['source']:<11} {','.join(plugin['modalities']) or '-':<12} {state}")
            for reason in plugin["extension_errors"]:
                print(f"{'':<40} refused: {reason}")
        for mod in svc.plugins.modalities().values():
            print(f"modality {mod['id']:<10} {'available' if mod['available'] else 'unavailable: ' + str(mod.get('reason_en'))}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from lora_factory.core.jobs.devices import inventory
    from lora_factory.core.system_info import system_info

    home = Path(args.home or os.environ.get("LORA_FACTORY_HOME") or Path.cwd())
    _print_json(system_info(home) | {"devices": inventory()})
    return 0


def train_request(args: argparse.Namespace) -> Any:
    """The ``TrainStartRequest`` a ``train`` command line stands for (the UI's 「コマンドを表示」 prints
    lines that parse back to the request it would POST)."""
    from lora_factory.core.schemas import TrainStartRequest

    params = _parse_params(args.param, args.params_json)
    if args.method:  # the same key as the API's params.method (a preset's method unless given)
        params["method"] = args.method
    # devices only when given: the request then equals the one the form posts (the command preview's check)
    chosen = {"devices": args.devices} if args.devices is not None else {}
    return TrainStartRequest(base_model=args.base_model, dataset=args.dataset, output_name=args.output_name,
                             preset=args.preset, modality=args.modality,
                             params=params,
                             trust_remote_code=args.trust_remote_code, **chosen)


def cmd_train(args: argparse.Namespace) -> int:
    svc = _services(args)
    req = train_request(args)
    if args.dry_run:  # what the UI's estimate shows: steps, time, memory; nothing is queued
        from lora_factory.core.jobs.train_plan import estimate_train
        from lora_factory.core.system_info import system_info

        _print_json(estimate_train(svc.submitter, svc.store, req, system_info(svc.workspace.home)))
        return 0
    return _submitted(svc, svc.submitter.start_train(req), args.wait)


def cmd_tiny_model(args: argparse.Namespace) -> int:
    """Build the offline demo model in this process (no job needed: it takes seconds)."""
    from lora_factory.core.jobs.context import JobContext
    from lora_factory.core.storage.workspace import safe_name

    svc = _services(args)
    svc.plugins.require_modality(args.modality)
    out = Path(args.out) if args.out else svc.workspace.models_dir(args.modality) / "tiny-demo"
    if not out.is_absolute():
        out = svc.workspace.resolve_inside(args.out)
    safe_name(out.name, "model name")
    if out.exists():
        raise LoRAFactoryError("OUTPUT_EXISTS", f"「{out}」は既に存在します。", f"'{out}' already exists.", http_status=409)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="lf-tiny-") as tmp:
        ctx = JobContext("tiny-model", svc.workspace, Path(tmp), Path(tmp) / "log.txt", kind="download",
                         modality=args.modality)
        spec = {"source": "tiny", "name": out.name, "seed": args.seed, "kind": args.kind}
        if args.arch:  # image: sd15 / sdxl / flux
            spec["arch"] = args.arch
        result = svc.plugins.call("download_model", args.modality, spec=spec, ctx=ctx)
        if result is None:
            raise LoRAFactoryError("TINY_MODEL_UNSUPPORTED", f"「{args.modality}」はデモ用モデルを作成できません。",
                                   f"Modality '{args.modality}' cannot build a demo model.")
        out.parent.mkdir(parents=True, exist_ok=True)
        svc.workspace.move_into_place(ctx.output_dir, out)
    if svc.workspace.home in out.resolve().parents:
        svc.artifacts.register("model", args.modality, out, meta={"source": "tiny"})
    _print_json({"path": str(out), **{k: v for k, v in result.items() if k != "path"}})
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from lora_factory.core.schemas import DownloadRequest, ImportRequest, MergeRequest

    svc = _services(args)
    if args.action == "list":
        _print_json(svc.catalog.list_models(args.modality, args.kind))
    elif args.action == "download":
        req = DownloadRequest(modality=args.modality, repo_id=args.target, revision=args.revision, name=args.name,
                              kind=args.kind, variant=args.variant)
        return _submitted(svc, svc.submitter.start_download(req), args.wait)
    elif args.action == "import":
        req_i = ImportRequest(modality=args.modality, source_path=str(Path(args.target).resolve()), name=args.name,
                              kind=args.kind)
        return _submitted(svc, svc.submitter.start_import(req_i), args.wait)
    elif args.action == "merge":
        req_m = MergeRequest(modality=args.modality, adapter=args.target, output_name=args.name or f"{args.target}-merged",
                             devices=args.devices)
        return _submitted(svc, svc.submitter.start_merge(req_m), args.wait)
    elif args.action == "delete":
        svc.catalog.delete_model(args.modality, args.target, confirm=args.yes, kind=args.kind)
        print(json.dumps({"ok": True}))
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from lora_factory.core.schemas import RefineRequest

    svc = _services(args)
    if args.action == "list":
        _print_json(svc.datasets.list_datasets(args.modality))
    elif args.action == "upload":
        options: dict[str, Any] = {}
        if args.format:
            options["format"] = args.format
        if args.mapping:
            options["mapping"] = json.loads(args.mapping)
        if Path(args.target).is_dir():  # a folder dataset (images + captions, wavs + esd.list)
            info = svc.datasets.import_folder(args.modality, str(Path(args.target).resolve()), args.name, options)
        else:
            with open(args.target, "rb") as fh:
                info = svc.datasets.upload_dataset(args.modality, Path(args.target).name, fh, name=args.name,
                                                   options=options)
        _print_json({k: info.get(k) for k in ("name", "kind", "format", "encoding", "rows", "stats")})
    elif args.action == "sample":
        info = svc.datasets.add_sample_dataset(args.modality, args.name)
        _print_json({k: info.get(k) for k in ("name", "format", "rows")})
    elif args.action == "show":
        path = svc.datasets.dataset_path(args.modality, args.target)
        _print_json(svc.datasets.inspect_dataset(args.modality, path, {"preview_rows": 5}))
    elif args.action == "lineage":
        _print_json(svc.datasets.dataset_lineage(args.modality, args.target))
    elif args.action == "export":
        path = svc.datasets.archive(args.modality, args.target, Path(args.out or ".").resolve(),
                                    target=args.to)
        _print_json({"path": str(path)})
    elif args.action == "refine":
        ops = json.loads(args.operations) if args.operations else [{"op": "dedup_exact", "params": {}}]
        req = RefineRequest(modality=args.modality, dataset=args.target, operations=ops,
                            output_name=args.name or f"{Path(args.target).stem}-refined", devices=args.devices)
        return _submitted(svc, svc.submitter.start_refine(req), args.wait)
    elif args.action == "delete":
        svc.datasets.delete_dataset(args.modality, args.target, confirm=args.yes)
        print(json.dumps({"ok": True}))
    return 0


def cmd_adapters(args: argparse.Namespace) -> int:
    svc = _services(args)
    if args.action == "list":
        _print_json(svc.catalog.list_adapters(args.modality))
    elif args.action == "show":
        _print_json(svc.catalog.adapter_info(args.modality, svc.catalog.adapter_path(args.modality, args.target),
                                             with_lineage=True))
    elif args.action == "delete":
        svc.catalog.delete_adapter(args.modality, args.target, confirm=args.yes)
        print(json.dumps({"ok": True}))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from lora_factory.core.schemas import EvalRequest

    svc = _services(args)
    req = EvalRequest(modality=args.modality, adapter=args.adapter, suite_file=args.suite, dataset=args.dataset,
                      devices=args.devices)
    return _submitted(svc, svc.submitter.start_eval(req), args.wait)


def cmd_settings(args: argparse.Namespace) -> int:
    from lora_factory.core.services import default_home
    from lora_factory.core.storage.settings import load_settings, public_view, update_settings

    home = Path(args.home) if args.home else default_home()
    if args.action == "set":
        if not args.key or args.value is None:
            raise LoRAFactoryError("SETTINGS_INVALID", "settings set KEY VALUE の形で指定してください。",
                                   "Use: settings set KEY VALUE.")
        value: object = args.value
        if args.key == "modality_owners" and args.value:
            try:  # a JSON object, e.g. '{"text": "my_plugin"}'
                value = json.loads(args.value)
            except json.JSONDecodeError as exc:
                raise LoRAFactoryError("SETTINGS_INVALID", f"modality_owners は JSON オブジェクトで指定してください: {exc.msg}",
                                       f"modality_owners must be a JSON object: {exc.msg}",
                                       detail={"field": "modality_owners"}) from exc
        _print_json(public_view(update_settings(home, {args.key: value})))
    else:
        _print_json(public_view(load_settings(home)))
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    """Chat in this process (models load here); streamed tokens go to stdout as they come."""
    from lora_factory.core.inference.session import InferenceSession
    from lora_factory.core.schemas import ChatRequest

    svc = _services(args)
    messages = [{"role": "system", "content": args.system}] if args.system else []
    messages.append({"role": "user", "content": args.prompt})
    params: dict[str, Any] = {"max_new_tokens": args.max_new_tokens, "temperature": args.temperature}
    session = InferenceSession()
    targets = [("base", None), ("adapter", args.adapter)] if (args.compare and args.adapter) else [(None, args.adapter)]
    for label, adapter in targets:
        req = ChatRequest(modality=args.modality, base_model=args.base_model, adapter=adapter, messages=messages,
                          params=params, stream=True)
        events = svc.plugins.call("infer", args.modality, request=svc.generation.chat_request(req), session=session)
        if events is None:
            raise LoRAFactoryError("HOOK_NOT_IMPLEMENTED", f"「{args.modality}」は推論に対応していません。",
                                   f"Modality '{args.modality}' has no infer hook.")
        if label:
            print(f"--- {label} ---")
        for event in events:
            if event.get("type") == "token":
                sys.stdout.write(event.get("text", ""))
                sys.stdout.flush()
        print()
    return 0


def add_plugin_commands(sub: Any, common: argparse.ArgumentParser, home: str | None) -> None:
    """``lora-factory <command>`` added by plugins (``register_commands``); ``run(args, workspace)``."""
    from lora_factory.core.plugin_host.extensions import collect_commands
    from lora_factory.core.plugin_host.host import load_plugin_host
    from lora_factory.core.services import default_home

    home_path = Path(home) if home else default_home()
    host = load_plugin_host(home_path)
    for command in collect_commands(host, set(sub.choices)):
        p = sub.add_parser(command.name, parents=[common], help=f"{command.help} [{command.plugin}]".strip())
        if command.configure is not None:
            command.configure(p)
        p.set_defaults(func=lambda a, run=command.run: _run_plugin_command(a, run, host))


def _run_plugin_command(args: argparse.Namespace, run: Any, host: Any) -> int:
    from lora_factory.core.services import default_home
    from lora_factory.core.storage.workspace import Workspace

    workspace = Workspace(Path(args.home) if args.home else default_home(), host.modalities().keys())
    return int(run(args, workspace) or 0)


def _home_in(argv: list[str]) -> str | None:
    """``--home DIR`` / ``--home=DIR`` anywhere in argv: the workspace whose plugins add commands."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--home", default=None)
    return pre.parse_known_args(argv)[0].home


def _commands_of(parser: argparse.ArgumentParser) -> dict[str, Any]:
    return next(a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def build_parser(argv: list[str] | None = None, with_plugins: bool = True) -> argparse.ArgumentParser:
    """The CLI's parser; ``with_plugins`` adds the commands of the plugins of the workspace named by
    ``--home`` in ``argv`` (``sys.argv`` when None)."""
    parser = argparse.ArgumentParser(prog="lora-factory", description="LoRA Factory / LoRAファクトリー")
    parser.add_argument("--version", action="version", version=f"lora-factory {__version__}")
    home_help = "workspace folder (default: $LORA_FACTORY_HOME or the current folder)"
    # --home is accepted before the subcommand and after it; the subcommand's copy only overrides when given
    # (SUPPRESS), so `lora-factory --home DIR serve` keeps DIR.
    parser.add_argument("--home", default=None, help=home_help)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", default=argparse.SUPPRESS, help=home_help)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", parents=[common], help="start the web UI and the REST API")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=int(os.environ.get("LORA_FACTORY_PORT", "8081")))
    p.add_argument("--log-level", default="warning")
    p.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                   help="another Host name the server answers to (repeatable; also $LORA_FACTORY_ALLOWED_HOSTS)")
    p.add_argument("--max-gpu-jobs", type=int, default=None,
                   help="GPU-bound jobs (train, eval, merge) run at once; default: one per device, or 1 on a machine "
                        "without devices ($LORA_FACTORY_MAX_GPU_JOBS; devices: $LORA_FACTORY_DEVICES)")
    p.add_argument("--cluster", default=None, metavar="ADDRESS",
                   help="send training jobs to this Ray cluster, e.g. 10.0.0.5:6379 or ray://10.0.0.5:10001 "
                        "(overrides the cluster_address setting; $LORA_FACTORY_CLUSTER)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("jobs", parents=[common], help="list / show / cancel / logs / rerun / resume / delete jobs")
    p.add_argument("action", choices=["list", "show", "cancel", "logs", "rerun", "resume", "wait", "delete"])
    p.add_argument("job_id", nargs="?")
    p.add_argument("--kind")
    p.add_argument("--status")
    p.add_argument("--modality")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--tail", type=int, default=200)
    p.add_argument("--follow", "-f", action="store_true", help="with logs: keep printing until the job ends")
    p.add_argument("--wait", action="store_true")
    p.add_argument("--yes", action="store_true", help="confirm a deletion")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_jobs)

    p = sub.add_parser("plugins", parents=[common], help="loaded plugins, their modalities and load errors")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("doctor", parents=[common], help="system information (CPU, RAM, GPU, disk, versions)")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("train", parents=[common], help="start a LoRA training job")
    p.add_argument("--base-model", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--output-name", required=True)
    p.add_argument("--preset", default="quick")
    p.add_argument("--modality", default="text")
    p.add_argument("--method", help="text: sft (default), dpo, kto, orpo, simpo or grpo (= --param method=...)")
    p.add_argument("--param", action="append", default=[], help="key=value override (repeatable)")
    p.add_argument("--params-json")
    p.add_argument("--trust-remote-code", action="store_true")
    p.add_argument("--devices", type=parse_devices, help=DEVICES_HELP)
    p.add_argument("--wait", action="store_true", help="follow the job with a progress bar")
    p.add_argument("--dry-run", action="store_true",
                   help="print the estimate (total steps, time, memory) and start nothing")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("settings", parents=[common],
                       help="show / set hf_token, hf_endpoint, modality_owners (settings.json)")
    p.add_argument("action", choices=["show", "set"])
    p.add_argument("key", nargs="?", choices=["hf_token", "hf_endpoint", "modality_owners"])
    p.add_argument("value", nargs="?", help="an empty string clears the setting")
    p.set_defaults(func=cmd_settings)

    p = sub.add_parser("tiny-model", parents=[common], help="build a tiny random-weight model (offline demo / tests)")
    p.add_argument("modality", nargs="?", default="text")
    p.add_argument("--out", help="destination folder, e.g. models/text/tiny-demo")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--kind", default=None, help="audio: tts (default, Llasa layout + XCodec2) or asr (Whisper)")
    p.add_argument("--arch", help="architecture, when the modality has several (image: sd15, sdxl, flux)")
    p.set_defaults(func=cmd_tiny_model)

    p = sub.add_parser("models", parents=[common], help="list / download / import / merge / delete models")
    p.add_argument("action", choices=["list", "download", "import", "merge", "delete"])
    p.add_argument("target", nargs="?", help="repo id, local folder, adapter or model name")
    p.add_argument("--modality", default="text")
    p.add_argument("--revision", default="main")
    p.add_argument("--name")
    p.add_argument("--kind", help="an auxiliary model kind of the modality (vae, controlnet ...)")
    p.add_argument("--variant", help="precision variant to download, e.g. fp16")
    p.add_argument("--devices", type=parse_devices, help=DEVICES_HELP)
    p.add_argument("--wait", action="store_true")
    p.add_argument("--yes", action="store_true")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("datasets", parents=[common],
                       help="list / upload (a file, a zip or a folder) / show / lineage / refine / export / delete datasets")
    p.add_argument("action", choices=["list", "upload", "sample", "show", "lineage", "refine", "export", "delete"])
    p.add_argument("target", nargs="?")
    p.add_argument("--modality", default="text")
    p.add_argument("--name")
    p.add_argument("--format")
    p.add_argument("--mapping", help='JSON, e.g. {"instruction": "質問", "output": "回答"}')
    p.add_argument("--operations", help='JSON list, e.g. [{"op": "dedup_near", "params": {"threshold": 0.7}}]')
    p.add_argument("--out", help="export: the folder the zip is written to (default: the current folder)")
    p.add_argument("--to", help="export: a layout another tool opens (audio: sbv2, gpt_sovits); default: the folder as it is")
    p.add_argument("--devices", type=parse_devices, help=DEVICES_HELP)
    p.add_argument("--wait", action="store_true")
    p.add_argument("--yes", action="store_true")
    p.set_defaults(func=cmd_datasets)

    p = sub.add_parser("adapters", parents=[common], help="list / show / delete adapters")
    p.add_argument("action", choices=["list", "show", "delete"])
    p.add_argument("target", nargs="?")
    p.add_argument("--modality", default="text")
    p.add_argument("--yes", action="store_true")
    p.set_defaults(func=cmd_adapters)

    p = sub.add_parser("chat", parents=[common], help="ask a base model (+ adapter) one question, streamed")
    p.add_argument("prompt")
    p.add_argument("--base-model", required=True)
    p.add_argument("--adapter")
    p.add_argument("--system")
    p.add_argument("--compare", action="store_true", help="answer with the base and with the adapter")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--modality", default="text")
    p.set_defaults(func=cmd_chat)

    from lora_factory import cli_generate

    cli_generate.add_parser(sub, common).set_defaults(func=lambda a: cli_generate.cmd_generate(a, _services))
    from lora_factory import cli_export

    cli_export.add_parser(sub, common).set_defaults(
        func=lambda a: cli_export.cmd_export(a, _services, _parse_params, _wait))

    p = sub.add_parser("eval", parents=[common], help="run a regression suite / eval loss against an adapter")
    p.add_argument("--adapter", required=True)
    p.add_argument("--suite", help="JSONL suite, workspace-relative")
    p.add_argument("--dataset")
    p.add_argument("--modality", default="text")
    p.add_argument("--devices", type=parse_devices, help=DEVICES_HELP)
    p.add_argument("--wait", action="store_true")
    p.set_defaults(func=cmd_eval)

    if with_plugins:
        add_plugin_commands(sub, common, _home_in(sys.argv[1:] if argv is None else argv))
    return parser


def main(argv: list[str] | None = None) -> int:
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(encoding="utf-8")  # Japanese on a Windows console
    args = build_parser(argv).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except LoRAFactoryError as exc:
        print(f"エラー [{exc.code}] {exc.message_ja}", file=sys.stderr)
        print(f"Error [{exc.code}] {exc.message_en}", file=sys.stderr)
        if exc.detail:
            print(json.dumps(exc.detail, ensure_ascii=False, default=str), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
