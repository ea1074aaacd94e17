"""Warm start (core/jobs/warm_start, core/jobs/zygote): on Linux without a GPU, job workers are forked from one
process that imported the modality's libraries once; anything it cannot do ends in the ordinary spawn."""

from __future__ import annotations

import os
import sys
import types

import psutil
import pytest

from lora_factory.core.jobs.warm_start import imports_modality_libraries, warm_start_wanted
from lora_factory.core.jobs.zygote import Zygote
from tests.conftest import wait_for
from tests.host.test_job_lifecycle import start_dummy

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a warm start forks: Linux only")


def finished(c, job_id: str) -> dict:
    job = wait_for(c, job_id, ("completed", "failed", "canceled"))
    assert job["status"] == "completed", job
    return job


def warm_process_pids() -> set[int]:
    return {p.pid for p in psutil.process_iter(["cmdline"]) if "lora_factory.core.jobs.zygote" in (p.info["cmdline"] or [])}


def test_workers_are_forked_from_one_warm_process_with_their_own_randomness(dummy_home, server_factory):
    server = server_factory(dummy_home)
    with server.client() as c:
        first = finished(c, start_dummy(c, "w1", steps=1, delay=0.0))["result"]
        second = finished(c, start_dummy(c, "w2", steps=1, delay=0.0))["result"]
        warm = psutil.Process(first["parent_pid"])
        assert "lora_factory.core.jobs.zygote" in warm.cmdline() and warm.ppid() == server.proc.pid
        assert second["parent_pid"] == first["parent_pid"]  # one warm process for both
        # the dummy modality declares worker_modules ["numpy"]: imported once there, and each fork draws its own
        assert first["numpy_draw"] != second["numpy_draw"]
    assert "numpy imported" in (dummy_home / "logs" / "warm_start.log").read_text()  # what the modality declared
    server.stop()
    assert psutil.wait_procs([warm], timeout=10)[0], "the warm process ends with the server"


def test_the_demo_model_build_is_forked_with_the_modality_libraries_imported(dummy_home, server_factory):
    """``tiny-model`` builds with torch and the model library: the warm process imports them before it forks
    that worker (and the training that follows finds them there); a real download only fetches files."""
    server = server_factory(dummy_home)
    with server.client() as c:
        r = c.post("/api/models/tiny", json={"modality": "dummy", "name": "demo"})
        assert r.status_code == 200, r.text
        job = finished(c, r.json()["job_id"])
    assert "numpy imported" in (dummy_home / "logs" / "warm_start.log").read_text()
    assert "warm start not used" not in job_log(dummy_home, job)
    assert imports_modality_libraries("download", {"source": "tiny", "name": "demo"})
    # a single-file checkpoint is converted by the model library (diffusers): forked warm too
    assert imports_modality_libraries("download", {"source": "single_file", "local_path": "x.safetensors"})
    assert not imports_modality_libraries("download", {"source": "local", "local_path": "models/x"})
    assert not imports_modality_libraries("download", {"repo_id": "org/model", "name": "model"})
    assert all(imports_modality_libraries(kind, {}) for kind in ("train", "eval", "merge", "export"))
    # a training on a Ray cluster: the worker here only drives it, the ranks import on the nodes
    assert not imports_modality_libraries("train", {"executor": {"kind": "ray", "address": "127.0.0.1:6379"}})
    assert not imports_modality_libraries("refine", {})
    # a refine that loads a model shares the training's import: one the plugin lists as ``uses_model``
    # (the image tagger / captioner), or a GPU-bound one (Evol-Instruct with a local model, transcription)
    tagging = {"operations": [{"op": "edit_tags"}, {"op": "auto_tag"}]}
    assert imports_modality_libraries("refine", tagging, model_operations={"auto_tag", "auto_caption"})
    assert not imports_modality_libraries("refine", {"operations": [{"op": "edit_tags"}]},
                                          model_operations={"auto_tag", "auto_caption"})
    assert imports_modality_libraries("refine", {"operations": [{"op": "evol_instruct"}]}, gpu=True)


def test_the_refine_operations_that_load_a_model_come_from_the_plugins_listing():
    from lora_factory.core.plugin_host.host import PluginHost

    host = PluginHost(load_entry_points=False)
    assert host.model_operations("image") == {"auto_tag", "auto_caption"}
    assert host.model_operations("text") == set() and host.model_operations("no-such-modality") == set()


def job_log(home, job: dict) -> str:
    return (home / "logs" / f"{job['kind']}_{job['id']}.log").read_text(encoding="utf-8")


def test_off_spawns_each_worker_from_the_server(dummy_home, server_factory):
    server = server_factory(dummy_home, LORA_FACTORY_WARM_START="off")
    with server.client() as c:
        result = finished(c, start_dummy(c, "s1", steps=1, delay=0.0))["result"]
    assert result["parent_pid"] == server.proc.pid
    assert not (dummy_home / "logs" / "warm_start.log").exists()


@pytest.mark.parametrize("mode", ["auto", "off"])
def test_a_crashed_worker_fails_with_its_exit_code_either_way(dummy_home, server_factory, mode):
    server = server_factory(dummy_home, LORA_FACTORY_WARM_START=mode)
    with server.client() as c:
        job = wait_for(c, start_dummy(c, steps=6, delay=0.01, crash_at=2), ("failed", "completed"))
    assert job["status"] == "failed" and job["error"]["code"] == "WORKER_CRASHED", job
    assert "exit code 3" in job["error"]["message"]
    assert ((dummy_home / "runs" / job["id"] / "worker_exit.json").exists()) == (mode == "auto")


def test_changed_settings_get_the_worker_spawned_and_then_a_fresh_warm_process(dummy_home, server_factory):
    server = server_factory(dummy_home)
    with server.client() as c:
        before = finished(c, start_dummy(c, "t1", steps=1, delay=0.0))
        assert c.put("/api/settings", json={"hf_token": "hf_warmtoken12345"}).status_code == 200
        tiny = c.post("/api/models/tiny", json={"modality": "dummy", "name": "m1"})
        assert tiny.status_code == 200, tiny.text
        job = finished(c, tiny.json()["job_id"])
        assert job["result"]["hf_token_seen"] == "hf_warmtoken12345"  # the new setting, not the warm process's
        assert "warm start not used (settings changed)" in c.get(f"/api/jobs/{job['id']}/log").text
        after = finished(c, start_dummy(c, "t2", steps=1, delay=0.0))
        assert after["result"]["parent_pid"] not in (before["result"]["parent_pid"], server.proc.pid)


def test_a_warm_process_killed_between_jobs_is_replaced(dummy_home, server_factory):
    server = server_factory(dummy_home)
    with server.client() as c:
        first = finished(c, start_dummy(c, "k1", steps=1, delay=0.0))["result"]["parent_pid"]
        psutil.Process(first).kill()
        psutil.wait_procs([psutil.Process(first)], timeout=10)
        second = finished(c, start_dummy(c, "k2", steps=1, delay=0.0))["result"]["parent_pid"]
    assert second != first and second != server.proc.pid


def test_the_warm_process_refuses_once_cuda_is_initialised(tmp_path, monkeypatch):
    zygote = Zygote(tmp_path)
    assert zygote.refusal() is None
    fake_torch = types.SimpleNamespace(cuda=types.SimpleNamespace(is_initialized=lambda: True))
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    assert zygote.refusal() == "CUDA initialised in the warm process"


def test_when_a_warm_start_is_wanted(monkeypatch):
    assert warm_start_wanted(lambda: False, {}) is True  # auto, no GPU
    assert warm_start_wanted(lambda: True, {}) is False  # auto, a GPU: not verified there yet
    assert warm_start_wanted(lambda: True, {"LORA_FACTORY_WARM_START": "on"}) is True
    assert warm_start_wanted(lambda: False, {"LORA_FACTORY_WARM_START": "off"}) is False
    monkeypatch.setattr(sys, "platform", "win32")
    assert warm_start_wanted(lambda: False, {"LORA_FACTORY_WARM_START": "on"}) is False  # no fork there


CHAT = {"modality": "dummy", "base_model": "base", "messages": [{"role": "user", "content": "ab"}], "stream": False}


def inference_worker(server) -> psutil.Process:  # noqa: ANN001
    found = [p for p in psutil.Process(server.proc.pid).children(recursive=True)
             if "lora_factory.core.inference.worker" in " ".join(p.cmdline())]
    assert len(found) == 1, found
    return found[0]


def test_the_chat_model_process_is_forked_too_and_spawned_when_the_warm_process_refuses(dummy_home, server_factory):
    server = server_factory(dummy_home, LORA_FACTORY_RELEASE_INFERENCE="always")
    with server.client() as c:
        assert c.post("/api/infer/chat", json=CHAT).json()["text"] == "ba"
        forked = inference_worker(server)  # shown as what it is (setproctitle), forked from the warm process
        assert "lora_factory.core.jobs.zygote" in " ".join(psutil.Process(forked.ppid()).cmdline())
        assert os.getsid(forked.pid) == forked.pid  # its own session, as a spawned one
        assert c.post("/api/infer/chat", json=CHAT).json()["text"] == "ba"  # the same process answers again
        assert inference_worker(server).pid == forked.pid
        finished(c, start_dummy(c, "r1", steps=1, delay=0.0))  # a GPU-kind job stops the chat model first
        psutil.wait_procs([forked], timeout=10)
        assert c.put("/api/settings", json={"hf_endpoint": "https://mirror.example"}).status_code == 200
        assert c.post("/api/infer/chat", json=CHAT).json()["text"] == "ba"  # refused (settings changed): spawned
        assert inference_worker(server).ppid() == server.proc.pid


def test_off_spawns_the_chat_model_process(dummy_home, server_factory):
    server = server_factory(dummy_home, LORA_FACTORY_WARM_START="off")
    with server.client() as c:
        assert c.post("/api/infer/chat", json=CHAT).json()["text"] == "ba"
        assert inference_worker(server).ppid() == server.proc.pid


def test_the_fork_probe_finds_a_warm_process_whose_forks_would_hang():
    """GNU OpenMP does not survive a fork once it ran: a library that computed in parallel while it was
    imported would make every forked worker hang in its first operation. The probe sees it in seconds.
    (A probe that passes is in every test above: a refused fork would make the server the parent.)"""
    import subprocess

    # two threads (one would start no pool to break; the suite's workers get one each through OMP_NUM_THREADS
    # and MKL_NUM_THREADS), then an elementwise operation that runs on ATen's OpenMP pool
    script = ("import torch\nfrom lora_factory.core.jobs.zygote import probe_fork\ntorch.set_num_threads(2)\n"
              "torch.ones(1 << 22).add_(1).sum()\nprint(probe_fork(timeout=5.0))\n")
    env = dict(os.environ, OMP_NUM_THREADS="2", MKL_NUM_THREADS="2")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert "hangs in its first parallel operation" in out.stdout, out


def test_a_variable_torch_writes_at_run_time_does_not_make_the_warm_process_stale():
    """torch sets TORCHINDUCTOR_CACHE_DIR in a process that first asks for its compiler cache (services in a
    test's own process, as ``check_conformance`` runs them): a fork gets it, the warm process is not restarted
    for it (it was, importing torch again before a conformance run's single-file import); a variable read
    at import, such as the Hub's endpoint, still needs a fresh one."""
    from lora_factory.core.jobs.warm_start import import_environment

    base = {"PATH": "/usr/bin", "HF_ENDPOINT": "https://huggingface.co"}
    assert import_environment({**base, "TORCHINDUCTOR_CACHE_DIR": "/tmp/torchinductor_me"}) == import_environment(base)
    assert import_environment({**base, "HF_ENDPOINT": "https://hf-mirror.example"}) != import_environment(base)


def test_what_the_warm_process_imported_is_frozen_out_of_the_forks_collections(tmp_path):
    """After its imports the warm process freezes what is alive (gc.freeze, as Python advises before fork):
    a fork's full collections then skip the libraries' objects (about 0.4 s each with torch, transformers
    and peft loaded; the Trainer runs one at the start of every training). Garbage is collected, not frozen."""
    import subprocess

    script = ("import gc, sys, weakref\nfrom pathlib import Path\nfrom lora_factory.core.jobs.zygote import Zygote\n"
              "class Cycle: pass\ngc.disable()\ngarbage = Cycle()\ngarbage.me = garbage\ngone = weakref.ref(garbage)\n"
              "del garbage\nbefore = gc.get_freeze_count()\nZygote(Path(sys.argv[1])).preload(['colorsys'])\n"
              "print(before, gc.get_freeze_count() > 1000, gone() is None)\n")
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["0", "True", "True"], out
