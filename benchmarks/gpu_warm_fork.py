"""Whether a worker forked by the warm process trains on CUDA (a check for a machine with an NVIDIA GPU).

Why: the warm start (``core.jobs.zygote``) imports torch and the model libraries once and forks each job's
worker from that process. CUDA cannot be used in a fork of a process that initialised it, so the warm
process never does; this checks the other half on a real GPU: a fork of a warm process that preloaded
the text modality's libraries initialises CUDA itself and runs a few LoRA steps of the text train job
(``gpu_train_text.run_mode``, tiny model) on the GPU. The server only warm-starts on a GPU machine when
``LORA_FACTORY_WARM_START=on``; this is what that setting relies on.

    python benchmarks/gpu_warm_fork.py            # prints one JSON line; exit code 0 when the fork trained on CUDA
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

PRELOAD = ["torch", "transformers", "peft", "trl", "lora_factory.plugins.text.train"]


def main() -> int:
    from gpu_train_text import build_model, make_dataset, run_mode

    from lora_factory.core.jobs.fork_state import mark_forked_warm
    from lora_factory.core.jobs.zygote import Zygote

    work = Path(tempfile.mkdtemp(prefix="lf-warm-fork-"))
    zygote = Zygote(work / "home")
    started = time.perf_counter()
    zygote.preload(PRELOAD)
    preload_s = time.perf_counter() - started
    build_model(work / "model", "tiny")  # on the CPU: "tiny" never touches CUDA
    make_dataset(work / "data.jsonl", rows=64)
    refused = zygote.refusal()
    if refused:
        print(json.dumps({"ok": False, "refused": refused}))
        return 1
    result_path = work / "result.json"
    pid = os.fork()
    if pid == 0:  # the worker, as zygote.become_worker makes it (the job code itself is the benchmark's)
        code = 1
        try:
            os.setsid()
            mark_forked_warm()
            import torch

            r = run_mode(work / "model", work / "data.jsonl", "lora", steps=3, batch=2, max_length=128)
            r["cuda_initialised_in_fork"] = torch.cuda.is_initialized()
            result_path.write_text(json.dumps(r))
            code = 0 if r["device"] != "cpu" else 1
        except BaseException as exc:  # noqa: BLE001 - reported by the parent
            result_path.write_text(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    result = json.loads(result_path.read_text()) if result_path.exists() else {}
    import torch

    print(json.dumps({"ok": code == 0, "fork_exit_code": code, "preloaded": zygote.preloaded,
                      "preload_s": round(preload_s, 1), "warm_process_cuda_initialised": torch.cuda.is_initialized(),
                      **result}))
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
