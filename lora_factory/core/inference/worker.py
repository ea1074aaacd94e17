"""The long-lived inference process: keeps models loaded between chat requests.

Protocol (JSON lines): the host writes ``{"id", "modality", "request"}`` to stdin; the worker answers
``{"id", "event": {...}}`` for each event, then ``{"id", "end": true}`` or ``{"id", "error": {...}}``.
``{"cancel": <id>}`` stops that request (its client is gone): the hook's iterator is closed at the next
event, and ``session.should_stop()`` turns true for a hook that generates in a thread of its own.
The protocol uses a private copy of stdout: file descriptor 1 is pointed at stderr so a library that
prints cannot corrupt the stream.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import threading
import traceback
from pathlib import Path

from lora_factory.core.errors import LoRAFactoryError, as_user_error
from lora_factory.core.inference.session import InferenceSession
from lora_factory.core.plugin_host.host import load_plugin_host
from lora_factory.core.storage.settings import export_to_environment
from lora_factory.core.storage.workspace import Workspace


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lora_factory.core.inference.worker")
    parser.add_argument("--home", required=True)
    args = parser.parse_args(argv)
    proto = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    settings_loaded = False
    try:
        export_to_environment(Path(args.home))
        settings_loaded = True
    except LoRAFactoryError:
        pass  # answered to each request (SETTINGS_INVALID, with the file's path) until the file is fixed
    plugin_host = load_plugin_host(Path(args.home))
    home = Path(args.home)
    session = InferenceSession(workspace=Workspace(home, plugin_host.modalities().keys()))

    def send(obj: dict) -> None:
        proto.write(json.dumps(obj, ensure_ascii=False) + "\n")
        proto.flush()

    send({"ready": True, "pid": os.getpid()})
    requests: queue.Queue[dict | None] = queue.Queue()
    cancelled: set = set()

    def read_stdin() -> None:
        """Requests queue up; a cancel is seen at once, even while a request is being answered."""
        for line in sys.stdin:
            if not line.strip():
                continue
            msg = json.loads(line)
            if "cancel" in msg:
                cancelled.add(msg["cancel"])
            else:
                requests.put(msg)
        requests.put(None)

    threading.Thread(target=read_stdin, daemon=True, name="lora-factory-infer-stdin").start()
    while (msg := requests.get()) is not None:
        req_id = msg.get("id")
        session.should_stop = lambda req_id=req_id: req_id in cancelled
        try:
            if not settings_loaded:
                export_to_environment(Path(args.home))
                settings_loaded = True
            session.outputs_dir = home / "artifacts" / "outputs" / msg["modality"]
            events = plugin_host.call("infer", msg["modality"], request=msg["request"], session=session)
            if events is None:
                raise LoRAFactoryError("HOOK_NOT_IMPLEMENTED", f"「{msg['modality']}」は推論に対応していません。",
                                       f"Modality '{msg['modality']}' has no infer hook.")
            for event in events:
                if req_id in cancelled:
                    close = getattr(events, "close", None)
                    if close is not None:
                        close()  # the hook's finally blocks run; a generation thread sees should_stop()
                    raise LoRAFactoryError("CLIENT_GONE", "クライアントが切断したため推論を中止しました。",
                                           "The client went away; the inference was stopped.", http_status=499)
                send({"id": req_id, "event": event})
            send({"id": req_id, "end": True})
        except LoRAFactoryError as exc:
            send({"id": req_id, "error": exc.to_dict()["error"], "status": exc.http_status})
        except Exception as exc:  # noqa: BLE001 - report, keep serving
            traceback.print_exc()
            known = as_user_error(exc)  # a full disk: DISK_FULL (507), the same words as everywhere
            if known is not None:
                send({"id": req_id, "error": known.to_dict()["error"], "status": known.http_status})
                continue
            send({"id": req_id, "status": 500, "error": {
                "code": "INFERENCE_FAILED", "message": f"{type(exc).__name__}: {exc}",
                "message_ja": f"推論に失敗しました: {type(exc).__name__}: {exc}", "detail": None}})
        finally:
            cancelled.discard(req_id)
    return 0


if __name__ == "__main__":
    code = main()
    # The worker owns no file that needs closing here (outputs are written atomically per request), while the
    # ML libraries' native teardown can take longer than the client's grace period and get the process killed.
    # Leave at once, as the process would after that teardown.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
