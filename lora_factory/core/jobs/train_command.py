"""The ``lora-factory train …`` and ``curl`` commands equivalent to a train request (「コマンドを表示」).

Why on the server: the UI sends the very body it would POST to ``/train/start`` and gets both
commands back, so what is shown is what would run; a test parses the CLI line with the CLI's own
argument parser and checks it rebuilds the same request.

Parameters become ``--param key=value``: the CLI reads each value as JSON, and as a plain string when
it is not JSON, so a string that would read as JSON (``"16"``, ``"true"``) is written JSON-quoted.
"""

from __future__ import annotations

import json
import shlex
from typing import Any


def _param_value(value: Any) -> str:
    if isinstance(value, str):
        try:
            json.loads(value)
        except json.JSONDecodeError:
            return value  # read back as the same plain string
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def cli_argv(body: dict[str, Any], home: str | None = None) -> list[str]:
    """The argv (without the shell) of ``lora-factory train`` for a ``TrainStartRequest`` body."""
    argv = ["lora-factory", "train"]
    if home:
        argv += ["--home", home]
    argv += ["--modality", str(body.get("modality") or "text"), "--base-model", str(body["base_model"]),
             "--dataset", str(body["dataset"]), "--output-name", str(body["output_name"])]
    if body.get("preset"):
        argv += ["--preset", str(body["preset"])]
    params = dict(body.get("params") or {})
    method = params.pop("method", None)
    if isinstance(method, str) and method:
        argv += ["--method", method]
    elif method is not None:
        params["method"] = method
    for key, value in params.items():
        argv += ["--param", f"{key}={_param_value(value)}"]
    if body.get("trust_remote_code"):
        argv.append("--trust-remote-code")
    devices = body.get("devices")
    if isinstance(devices, int):  # a count; a list names the devices (a lone "2" would read as a count)
        argv += ["--devices", str(devices)]
    elif devices:
        argv += ["--devices", ",".join(d if not str(d).isdigit() else f"cuda:{d}" for d in map(str, devices))]
    return argv


def train_commands(body: dict[str, Any], base_url: str, home: str | None = None,
                   token_needed: bool = False) -> dict[str, Any]:
    """``cli`` (POSIX shell quoting), ``cli_argv`` and ``curl`` for the body as it stands."""
    argv = cli_argv(body, home)
    payload = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    curl = shlex.join(["curl", "-X", "POST", f"{base_url.rstrip('/')}/train/start", "-H", "Content-Type: application/json"])
    if token_needed:  # the workspace's api_token.txt, read by the shell (double quotes: the variable expands)
        curl += ' -H "Authorization: Bearer $LORA_FACTORY_TOKEN"'
    curl += " -d " + shlex.quote(payload)
    return {"cli": shlex.join(argv), "cli_argv": argv, "curl": curl, "body": body}
