"""The plugin's hooks as the jobs call them: long recording -> slice -> transcribe (tiny Whisper);
transcript edits and the user dictionary -> streamed synthesis (chunks, rate, loudness, FLAC) ->
regression checks -> transcription. Training, the openai client and peft are in test_end_to_end.
Tiny random models: the sound is noise, the paths are real.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from lora_factory.core.inference.session import InferenceSession
from lora_factory.core.jobs.context import JobContext
from lora_factory.core.storage.workspace import Workspace
from lora_factory.kit import LoRAFactoryError, media
from lora_factory.plugins import audio as plugin
from lora_factory.plugins.audio.dataset_formats import read_clip_list
from lora_factory.plugins.audio.loudness import integrated_loudness
from tests.audio.synthetic import recording_with_pauses, write_clip_dataset

VOICE_TEXTS = ["こんにちは。", "今日はいい天気ですね。", "1,100円です。", "東京に行きます。"]


def make_ctx(ws: Workspace, name: str, kind: str) -> JobContext:
    return JobContext(name, ws, ws.home / "runs" / name, ws.home / "logs" / f"{name}.log", kind=kind, modality="audio")


@pytest.fixture
def workspace(tmp_path: Path, tiny_tts: Path, tiny_asr: Path) -> Workspace:
    ws = Workspace(tmp_path / "ws")
    ws.ensure(["audio"])
    shutil.copytree(tiny_tts, ws.models_dir("audio") / "tiny-tts")
    shutil.copytree(tiny_asr, ws.models_dir("audio") / "tiny-whisper")
    return ws


def test_builder_slices_and_transcribes_a_long_recording(workspace: Workspace) -> None:
    recordings = workspace.datasets_dir("audio") / "takes"
    recordings.mkdir()
    wave, spans = recording_with_pauses(22050)
    sf.write(recordings / "take1.flac", wave, 22050)
    info = plugin.inspect_dataset(modality="audio", path=str(recordings), options={})
    assert info["format"] == "recordings" and info["rows"] == 1

    spec = plugin.resolve_refine_spec(modality="audio", workspace=workspace, spec={
        "dataset": str(recordings), "output_name": "takes-sliced",
        "operations": [{"op": "slice", "params": {"min_seconds": 2.0, "max_seconds": 12.0}},
                       {"op": "transcribe", "params": {"model": "tiny-whisper", "prompt": "はい。", "max_new_tokens": 6}},
                       {"op": "resample", "params": {"sample_rate": 16000}}]})
    assert spec["gpu"] is True and spec["operations"][1]["params"]["model"].endswith("tiny-whisper")
    ctx = make_ctx(workspace, "refine1", "refine")
    report = plugin.refine_dataset(modality="audio", spec=spec, ctx=ctx)
    assert report["output"] == {"kind": "folder", "name": "takes-sliced", "format": report["format"]}
    assert report["steps"][0] == {"op": "slice", "rows_in": 1, "rows_out": len(spans)}
    out = ctx.output_dir / "takes-sliced"
    listing = read_clip_list(out)
    transcribed = [c for c in listing.clips if c.text]
    if transcribed:
        assert report["rows_out"] == len(transcribed)
    else:  # the tiny Whisper may write nothing: the slices are kept (a recordings dataset) and the notes say why
        assert report["format"] == "recordings" and report["rows_out"] == len(spans) == len(listing.clips)
        assert "wrote no text" in report["notes"][0]
    assert all(sf.info(out / c.id).samplerate == 16000 for c in listing.clips)
    assert all(c.extra.get("start") is None or c.extra["start"] >= 0 for c in listing.clips)

    with pytest.raises(LoRAFactoryError) as err:
        plugin.resolve_refine_spec(modality="audio", workspace=workspace, spec={
            "dataset": str(recordings), "output_name": "x", "operations": [{"op": "slice", "params": {"max_seconds": -1}}]})
    assert err.value.code == "REFINE_INVALID_PARAMS" and err.value.detail["index"] == 0


def test_edits_dictionary_streamed_speech_and_regression_checks(workspace: Workspace) -> None:
    voice = write_clip_dataset(workspace.datasets_dir("audio") / "voice", VOICE_TEXTS, seconds=0.8)
    (workspace.datasets_dir("audio") / ".user_dictionary.json").write_text(
        json.dumps({"entries": [{"surface": "東京", "reading": "とーきょー"}]}, ensure_ascii=False), encoding="utf-8")

    # a per-clip transcript edit is a new version
    edit = plugin.resolve_refine_spec(modality="audio", workspace=workspace, spec={
        "dataset": str(voice), "output_name": "voice-v2",
        "operations": [{"op": "edit_items", "params": {"edits": [{"id": "wavs/clip000.wav", "text": "こんばんは。"}]}},
                       {"op": "normalize_text", "params": {}}]})
    ctx = make_ctx(workspace, "refine2", "refine")
    plugin.refine_dataset(modality="audio", spec=edit, ctx=ctx)
    v2 = workspace.datasets_dir("audio") / "voice-v2"
    shutil.move(ctx.output_dir / "voice-v2", v2)
    lines = (v2 / "esd.list").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "wavs/clip000.wav|alice|JP|こんばんは。" and lines[2].endswith("|せんひゃくえんです。")
    assert lines[3].endswith("|とーきょーに行きます。")  # the user dictionary applied
    assert (voice / "esd.list").read_text(encoding="utf-8").splitlines()[0].endswith("|こんにちは。")  # parent intact

    base = workspace.models_dir("audio") / "tiny-tts"
    spec = plugin.resolve_train_spec(modality="audio", spec={
        "base_model": str(base), "dataset": str(v2), "preset": "quick", "params": {}, "output_name": "voice-lora"})
    assert spec["params"]["user_dictionary"] == [{"surface": "東京", "reading": "とーきょー", "note": ""}]
    assert spec["task"] == "tts" and spec["params"]["max_steps"] == 30
    assert "gpu" not in spec  # a train job queues with the GPU jobs anyway: no dead flag in config.json
    with pytest.raises(LoRAFactoryError) as err:
        plugin.resolve_train_spec(modality="audio", spec={"base_model": str(base), "dataset": str(v2),
                                                          "preset": "quick", "params": {"lora_r": 0}})
    assert err.value.code == "INVALID_TRAIN_PARAMS"

    # streamed synthesis: a chunk per sentence, before the end
    session = InferenceSession()
    session.outputs_dir = workspace.home / "artifacts" / "outputs" / "audio"
    request = {"task": "speech", "base_model": str(base), "adapters": [], "stream": True,
               "input": {"text": "こんにちは。東京は晴れです。"},
               "params": {"seed": 1, "max_seconds_per_sentence": 1.0, "pause_ms": 200}}
    request = plugin.resolve_infer_request(modality="audio", request=request, workspace=workspace)
    events = list(plugin.infer(modality="audio", request=request, session=session))
    kinds = [("chunk" if e.get("chunk") else "file" if e.get("path") else e["type"]) for e in events]
    assert kinds == ["chunk", "chunk", "file", "done"]
    assert events[1]["text"] == "とーきょーは晴れです。"
    pcm = b"".join(media.decode_chunk(e) for e in events[:2])
    final = events[2]
    wave, rate = sf.read(final["path"], dtype="float32")
    assert rate == 16000 == final["sample_rate"] and abs(wave.size - len(pcm) // 2) <= 1
    assert abs(integrated_loudness(wave, rate) - (-16.0)) <= 1.0
    assert final["meta"]["time_to_first_chunk_s"] <= final["meta"]["total_s"]

    flac = plugin.resolve_infer_request(modality="audio", workspace=workspace, request=dict(
        request, params={**request["params"], "format": "flac", "sample_rate": 22050, "speed": 1.2}))
    done = list(plugin.infer(modality="audio", request=flac, session=session))
    info = sf.info(io.BytesIO(Path(done[-2]["path"]).read_bytes()))
    assert info.format == "FLAC" and info.samplerate == 22050

    # regression checks on the synthesised file
    output = {"text": events[-1]["text"], "media": [{"kind": "audio", "path": final["path"], "meta": final["meta"]}],
              "case": {"input": {"text": "こんにちは。東京は晴れです。"}}}
    loud = plugin.regression_check(modality="audio", check={"type": "loudness", "min": -17, "max": -15},
                                   output=output, reference=None, session=session)
    assert loud["passed"] and abs(loud["score"] + 16) <= 1
    pace = plugin.regression_check(modality="audio", check={"type": "duration_per_char", "min": 0.01, "max": 5.0},
                                   output=output, reference=None, session=session)
    assert pace["passed"] and pace["score"] > 0
    heard = plugin.regression_check(modality="audio", check={"type": "cer", "asr_model": "tiny-whisper", "max": 5.0,
                                                                      "max_new_tokens": 8},
                                    output=output, reference={"score": 1.0}, session=session)
    assert heard["score"] is not None and heard["detail"]["previous"] == 1.0

    # transcription with the tiny Whisper: text and timestamps
    take = workspace.home / "take.wav"
    sf.write(take, recording_with_pauses(16000)[0][: 16000 * 4], 16000)
    answer = list(plugin.infer(modality="audio", session=session, request=plugin.resolve_infer_request(
        modality="audio", workspace=workspace, request={
            "task": "transcribe", "base_model": str(workspace.models_dir("audio") / "tiny-whisper"),
            "input": {"audio": str(take)}, "params": {"max_new_tokens": 6}})))
    assert answer[-1]["type"] == "done" and isinstance(answer[-1]["segments"], list)
    assert np.isclose(answer[-1]["duration"], 4.0)


def test_whisper_lora_trains_with_held_out_cer(workspace: Workspace) -> None:
    voice = write_clip_dataset(workspace.datasets_dir("audio") / "asr-voice", VOICE_TEXTS, seconds=0.6)
    whisper = workspace.models_dir("audio") / "tiny-whisper"
    spec = plugin.resolve_train_spec(modality="audio", spec={
        "base_model": str(whisper), "dataset": str(voice), "preset": "quick", "output_name": "asr-lora",
        "params": {"max_steps": 3, "eval_fraction": 0.25, "batch_size": 2}})
    assert spec["task"] == "asr"
    ctx = make_ctx(workspace, "train-asr", "train")
    result = plugin.train(modality="audio", spec=spec, ctx=ctx)
    assert result["task"] == "asr" and result["steps"] == 3
    assert result["clips"] == 3 and result["held_out_clips"] == 1
    assert result["cer_before"] is not None and result["cer_after"] is not None

    from peft import PeftModel
    from transformers import WhisperForConditionalGeneration

    model = PeftModel.from_pretrained(WhisperForConditionalGeneration.from_pretrained(str(whisper)), str(ctx.output_dir))
    assert any("lora_A" in name for name, _ in model.named_parameters())


def test_tts_training_resumes_from_its_checkpoint(workspace: Workspace) -> None:
    voice = write_clip_dataset(workspace.datasets_dir("audio") / "resume-voice", VOICE_TEXTS[:2], seconds=0.5)
    base = workspace.models_dir("audio") / "tiny-tts"
    spec = plugin.resolve_train_spec(modality="audio", spec={
        "base_model": str(base), "dataset": str(voice), "preset": "quick", "output_name": "resumed",
        "params": {"max_steps": 4, "save_every": 2, "sample_every": 0, "sample_max_seconds": 0.3, "batch_size": 2}})
    first = make_ctx(workspace, "train-a", "train")
    plugin.train(modality="audio", spec=spec, ctx=first)
    checkpoint = first.checkpoint_dir / "checkpoint-2"
    assert (checkpoint / "COMPLETE").is_file() and (checkpoint / "adapter_model.safetensors").is_file()

    second = JobContext("train-b", workspace, workspace.home / "runs" / "train-b", workspace.home / "logs" / "b.log",
                        kind="train", modality="audio", resume_checkpoint=checkpoint)
    result = plugin.train(modality="audio", spec=spec, ctx=second)
    steps = [json.loads(x)["step"] for x in second.metrics_path.read_text().splitlines()]
    assert steps == [3, 4] and result["steps"] == 4
    assert "resumed from checkpoint-2" in second.log_path.read_text(encoding="utf-8")


def test_the_trainers_trust_the_resolved_spec_and_name_a_bad_value(workspace: Workspace, monkeypatch) -> None:
    """The worker trains the ``task`` resolve decided (the model kind is not checked again), and a bad value
    in the resolved parameters (a hand-edited config.json) is INVALID_TRAIN_PARAMS naming the field, as from
    the server, not a raw validation error."""
    from lora_factory.kit.testing import FakeJobContext
    from lora_factory.plugins.audio import model_info

    def checked_again(path):  # noqa: ANN001, ANN202
        raise AssertionError(f"the model kind of {path} was checked again in the worker")

    monkeypatch.setattr(model_info, "model_kind", checked_again)
    voice = write_clip_dataset(workspace.datasets_dir("audio") / "bad-voice", VOICE_TEXTS[:2], seconds=0.5)
    for task, model in (("tts", "tiny-tts"), ("asr", "tiny-whisper")):
        spec = {"base_model": str(workspace.models_dir("audio") / model), "dataset": str(voice), "task": task,
                "output_name": "x", "params": {"lora_r": 0}}
        with pytest.raises(LoRAFactoryError) as err:
            plugin.train(modality="audio", spec=spec, ctx=FakeJobContext(workspace, f"bad-{task}", modality="audio"))
        assert err.value.code == "INVALID_TRAIN_PARAMS" and err.value.detail["field"] == "lora_r", task


def test_a_refine_without_a_model_never_imports_torch(tmp_path: Path) -> None:
    """Only transcription loads a model: an edit / normalisation refine ran after importing torch just to
    pick a device (seconds per job in a fresh worker, and in a warm process's fork when none was loaded)."""
    import subprocess
    import sys

    script = (
        "import sys\nfrom pathlib import Path\nfrom lora_factory.core.jobs.context import JobContext\n"
        "from lora_factory.core.storage.workspace import Workspace\nfrom lora_factory.plugins import audio as plugin\n"
        "from tests.audio.synthetic import write_clip_dataset\n"
        "ws = Workspace(Path(sys.argv[1]))\nws.ensure(['audio'])\n"
        "voice = write_clip_dataset(ws.datasets_dir('audio') / 'voice', ['こんにちは。', 'さようなら。'], seconds=0.5)\n"
        "spec = plugin.resolve_refine_spec(modality='audio', workspace=ws, spec={'dataset': str(voice), "
        "'output_name': 'v2', 'operations': [{'op': 'edit_items', 'params': {'edits': [{'id': 'wavs/clip000.wav', "
        "'text': 'こんばんは。'}]}}, {'op': 'normalize_text', 'params': {}}]})\n"
        "ctx = JobContext('r1', ws, ws.home / 'runs' / 'r1', ws.home / 'logs' / 'r1.log', kind='refine', modality='audio')\n"
        "report = plugin.refine_dataset(modality='audio', spec=spec, ctx=ctx)\n"
        "print(report['rows_out'], 'torch' in sys.modules)\n")
    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "ws")], capture_output=True, text=True,
                         timeout=120, cwd=repo)
    assert out.stdout.split()[-2:] == ["2", "False"], out
