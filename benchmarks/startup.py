"""How fast is ``lora-factory serve`` ready, next to what importing the ML stack would cost?

The host promises to stay torch-free so that the server is ready in about a second. This measures it:

* the time from starting ``lora-factory serve`` (a subprocess, a fresh temporary workspace, a free
  port) to its first HTTP 200 on ``/utils/paths``;
* the time ``import torch, transformers`` takes in a fresh interpreter, in the same run, and the ratio;
* the idle server's resident memory (psutil RSS, its child processes included) once it answered, and
  whether torch's library got mapped into it (it must not).

Run: ``.venv/bin/python benchmarks/startup.py`` (``--runs 3`` for medians, ``--json`` for a record).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


def free_port() -> int:
    """A port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_command(port: int) -> list[str]:
    """The installed console script beside this interpreter (``Scripts\\lora-factory.exe`` on Windows)."""
    bindir = Path(sys.executable).parent
    for name in ("lora-factory.exe", "lora-factory"):
        candidate = bindir / name
        if candidate.exists():
            return [str(candidate), "serve", "--host", "127.0.0.1", "--port", str(port)]
    found = shutil.which("lora-factory")
    if found is None:
        raise SystemExit("lora-factory is not installed in this environment: run setup.py first")
    return [found, "serve", "--host", "127.0.0.1", "--port", str(port)]


def first_200(url: str, proc: subprocess.Popen[bytes], timeout: float) -> float | None:
    """Poll until ``url`` answers 200; the moment it did (monotonic), or None if it never did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return None
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return time.monotonic()
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.02)
    return None


def process_tree_rss(pid: int) -> tuple[int, bool]:
    """RSS in bytes of the process and its children, and whether any of them mapped libtorch."""
    import psutil

    root = psutil.Process(pid)
    processes = [root, *root.children(recursive=True)]
    rss = 0
    torch_loaded = False
    for process in processes:
        try:
            rss += process.memory_info().rss
            if sys.platform.startswith("linux"):
                torch_loaded = torch_loaded or any(
                    "libtorch" in (m.path or "") for m in process.memory_maps(grouped=True)
                )
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return rss, torch_loaded


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the server we started (and only it), politely first."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def measure_server(timeout: float) -> dict[str, Any]:
    """One cold start of the server in a fresh workspace: seconds to the first 200, and its RSS."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="lf_bench_") as home:
        env = dict(os.environ, LORA_FACTORY_HOME=home, LORA_FACTORY_NO_OPEN="1", LORA_FACTORY_NO_BROWSER="1")
        log_path = Path(home) / "server_output.log"
        with open(log_path, "wb") as log:
            started = time.monotonic()
            proc = subprocess.Popen(serve_command(port), cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT)
            try:
                ready = first_200(f"http://127.0.0.1:{port}/utils/paths", proc, timeout)
                if ready is None:
                    output = log_path.read_text(encoding="utf-8", errors="replace")[-3000:]
                    raise SystemExit(f"the server did not answer 200 on /utils/paths within {timeout} s\n{output}")
                time.sleep(0.5)  # "idle": let start-up work that follows the first answer settle
                rss, torch_loaded = process_tree_rss(proc.pid)
            finally:
                stop(proc)
    return {"ready_s": ready - started, "rss_bytes": rss, "torch_loaded": torch_loaded}


def measure_import(modules: str = "torch, transformers") -> float:
    """Seconds for a fresh interpreter to ``import`` the ML stack (what the server must never pay)."""
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", f"import {modules}"], check=True, capture_output=True)
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="repeat and report medians")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the server")
    parser.add_argument("--json", action="store_true", help="print one JSON record instead of text")
    args = parser.parse_args(argv)

    servers = [measure_server(args.timeout) for _ in range(max(1, args.runs))]
    imports = [measure_import() for _ in range(max(1, args.runs))]
    ready = statistics.median(s["ready_s"] for s in servers)
    rss = statistics.median(s["rss_bytes"] for s in servers)
    torch_loaded = any(s["torch_loaded"] for s in servers)
    import_s = statistics.median(imports)
    record = {
        "runs": len(servers),
        "serve_to_first_200_s": round(ready, 3),
        "import_torch_transformers_s": round(import_s, 3),
        "ratio_import_over_serve": round(import_s / ready, 2) if ready else None,
        "server_rss_mib": round(rss / 2**20, 1),
        "server_loaded_torch": torch_loaded,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
    }
    if args.json:
        print(json.dumps(record))
    else:
        print(f"lora-factory serve -> first 200 on /utils/paths : {ready:7.3f} s")
        print(f"import torch, transformers (fresh process)     : {import_s:7.3f} s")
        print(f"ratio import / serve                           : {record['ratio_import_over_serve']}x")
        print(f"idle server RSS                                : {record['server_rss_mib']} MiB")
        print(f"server mapped libtorch                         : {'YES (bug)' if torch_loaded else 'no'}")
        print(f"({record['runs']} run(s), medians; Python {record['python']}, {record['cpus']} CPUs)")
    return 1 if torch_loaded else 0


if __name__ == "__main__":
    sys.exit(main())
