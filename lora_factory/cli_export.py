"""``lora-factory export <adapter> --to gguf|ollama|vllm|ct2|a1111|lora_merge|lora_resize|hub ...``: the CLI
face of ``POST /api/exports``.

The export runs as a job like any other (progress, cancel, log: ``lora-factory jobs ...``); with
``--wait`` the command follows it and prints where the files are and the commands that load them.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from lora_factory.core.jobs.devices import parse_cli as parse_devices


def add_parser(sub: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p = sub.add_parser("export", parents=[common],
                       help="export an adapter for another runtime (GGUF / Ollama / vLLM / faster-whisper / A1111), "
                            "merge or resize image LoRAs, or push it to the Hugging Face Hub")
    p.add_argument("adapter", help="the adapter's name (lora_adapters/<modality>/<name>)")
    p.add_argument("--to", dest="target", required=True, help="the target: one of the modality's export_targets")
    p.add_argument("--modality", default="text")
    p.add_argument("--base-model", help="the base model (default: the one the adapter was trained on)")
    p.add_argument("--name", help="the export's name under exports/<modality>/ (default: <adapter>-<target>)")
    p.add_argument("--param", action="append", default=[], help="key=value (JSON values allowed), repeatable")
    p.add_argument("--params-json")
    p.add_argument("--devices", type=parse_devices, help="devices the export takes (default 0: exports need no GPU)")
    p.add_argument("--wait", action="store_true")
    p.add_argument("--list-targets", action="store_true", help="show the modality's targets and exit")
    return p


def cmd_export(args: argparse.Namespace, services: Any, parse_params: Any, wait: Any) -> int:
    from lora_factory.core.schemas import ExportRequest

    svc = services(args)
    if args.list_targets:
        desc = svc.plugins.require_modality(args.modality)
        print(json.dumps(desc.get("export_targets") or {}, ensure_ascii=False, indent=2))
        return 0
    req = ExportRequest(modality=args.modality, adapter=args.adapter, target=args.target, base_model=args.base_model,
                        output_name=args.name, params=parse_params(args.param, args.params_json),
                        devices=args.devices)
    queued = svc.submitter.start_export(req)
    for warning in queued["warnings"]:
        print(f"注意 / warning [{warning.get('code')}] {warning.get('message_ja', '')}\n  {warning.get('message')}",
              file=sys.stderr)
    if not args.wait:
        print(json.dumps(queued, ensure_ascii=False))
        return 0
    code = wait(svc, queued["job_id"])
    if code == 0:
        result = svc.jobs.store.get(queued["job_id"]).get("result") or {}
        if result.get("publish_as") == "adapter":  # a merge / resize: a new adapter, not an export folder
            info = svc.catalog.adapter_info(args.modality, svc.catalog.adapter_path(args.modality, queued["output_name"]))
            print(json.dumps({"adapter": info["name"], "path": info["path"], "checks": result.get("checks"),
                              "commands": result.get("commands")}, ensure_ascii=False, indent=2))
            return code
        info = svc.exports.export_info(args.modality, svc.exports.export_path(args.modality, queued["output_name"]))
        print(json.dumps({k: info[k] for k in ("path", "primary", "opens_in", "commands", "warnings", "checks")},
                         ensure_ascii=False, indent=2))
    return code
