"""The kit's typed faces (``JobContext``, ``InferenceSession``, ``Workspace``) and its test fakes: the host's
objects fit the faces the hookspecs name, and the fakes are the host's objects, recording."""

from __future__ import annotations

import inspect
import json

from lora_factory import kit
from lora_factory.core.inference.session import InferenceSession
from lora_factory.core.jobs.context import JobContext
from lora_factory.core.plugin_host import hookspecs
from lora_factory.core.storage.workspace import Workspace
from lora_factory.kit.testing import FakeInferenceSession, FakeJobContext, collect_events, temp_workspace


def test_the_hookspecs_name_the_kit_faces_for_ctx_session_and_workspace():
    faces = {"ctx": "JobContext", "session": "InferenceSession", "workspace": "Workspace"}
    seen = set()
    for name, fn in inspect.getmembers(hookspecs, inspect.isfunction):
        if not hasattr(fn, "lora_factory_spec"):
            continue
        for param in inspect.signature(fn).parameters.values():
            if param.name in faces:
                assert param.annotation == faces[param.name], f"{name}({param.name}: {param.annotation})"
                assert getattr(hookspecs, faces[param.name]) is getattr(kit, faces[param.name])
                seen.add(param.name)
    assert seen == set(faces)


def test_the_host_objects_fit_the_faces(tmp_path):
    ws = Workspace(tmp_path / "ws")
    ctx = JobContext("j", ws, ws.run_dir("j"), ws.log_path("train", "j"))
    assert isinstance(ws, kit.Workspace)
    assert isinstance(ctx, kit.JobContext)
    assert isinstance(InferenceSession(tmp_path / "out", workspace=ws), kit.InferenceSession)
    assert not isinstance(object(), kit.JobContext)  # the check is not vacuous


def test_the_fakes_record_what_a_plugin_reports(tmp_path):
    ws = temp_workspace(tmp_path / "ws", "echo")
    assert (ws.home / "models" / "echo").is_dir() and not (ws.home / "models" / "text").exists()
    ctx = FakeJobContext(ws, "j1", modality="echo", stop_after=2)
    assert isinstance(ctx, kit.JobContext) and ctx.output_dir.is_dir() and ctx.resume_checkpoint is None
    assert ctx.should_stop() is False
    ctx.progress(1, 3, loss=0.5, lr=1e-3)
    ctx.log("one\ntwo")
    sample = tmp_path / "s.wav"
    sample.write_bytes(b"RIFF")
    ctx.report_sample(sample, 1, kind="audio", caption="hi")
    assert ctx.should_stop() is False
    ctx.progress(2, 3, loss=0.25)
    assert ctx.should_stop() is True and ctx.stop_polls == 3
    assert [r["step"] for r in ctx.records] == [1, 2] and ctx.records[0]["lr"] == 0.001
    assert ctx.lines == ["one\ntwo"] and "two" in ctx.log_path.read_text(encoding="utf-8")
    assert ctx.samples[0]["kind"] == "audio" and (ctx.sample_dir / "000001_s.wav").is_file()
    # written as the host writes them, so the host's readers work on a test run too
    assert [json.loads(line)["step"] for line in ctx.metrics_path.read_text().splitlines()] == [1, 2]

    cancelled = FakeJobContext(tmp_path / "other", "j2")
    assert cancelled.should_stop() is False
    cancelled.request_stop()
    assert cancelled.should_stop() is True and (tmp_path / "other" / "runs" / "j2").is_dir()


def test_the_fake_session_keeps_its_cache_and_writes_into_the_workspace(tmp_path):
    ws = temp_workspace(tmp_path / "ws")
    session = FakeInferenceSession(workspace=ws)
    assert isinstance(session, kit.InferenceSession)
    assert session.outputs_dir == ws.home / "artifacts" / "outputs" and session.outputs_dir.is_dir()
    session.cache["model"] = "loaded"
    assert FakeInferenceSession(tmp_path / "o").cache == {} and session.cache == {"model": "loaded"}
    done = collect_events(iter([kit.media.token_event("a"), kit.media.token_event("b"), kit.media.done_event()]))
    assert done["text"] == "ab" and done["media"] == []
