"""The slice review's API against a real server: a recording's waveform and the cuts the slicer proposes
under the chosen silence settings, then the edited cut list (moved, merged, split) saved by the refine
route as a new dataset version cut exactly there, with its lineage; a bad cut list is a 422."""

from __future__ import annotations

import json
from pathlib import Path

import soundfile as sf

from tests.audio.synthetic import recording_with_pauses
from tests.conftest import wait_for


def _recordings(home: Path) -> tuple[Path, list[tuple[float, float]]]:
    wave, spans = recording_with_pauses(sr=16000)
    folder = home / "datasets" / "audio" / "recs"
    folder.mkdir(parents=True)
    sf.write(folder / "take1.wav", wave, 16000)
    return folder, spans


def test_preview_then_save_the_edited_cuts_as_a_version_with_lineage(tmp_path: Path, server_factory) -> None:
    home = tmp_path / "ws"
    _, spans = _recordings(home)
    with server_factory(home).client() as c:
        shown = c.post("/api/audio/slices/preview", json={"dataset": "recs", "points": 400}).json()
        assert shown["recordings"] == ["take1.wav"] and shown["recording"] == "take1.wav"
        assert len(shown["envelope"]) == 400 and all(lo <= hi for lo, hi in shown["envelope"])
        assert abs(shown["duration"] - 18.6) < 0.01
        cuts = shown["cuts"]
        assert len(cuts) == len(spans)
        for (start, end), (a, b) in zip(cuts, spans):  # each planted utterance, padded inside its pauses
            assert start <= a + 0.1 and end >= b - 0.1 and end - start < b - a + 0.5
        # the silence settings change the proposal: a long minimum keeps only the 4.5 s and 5 s utterances
        longer = c.post("/api/audio/slices/preview", json={"dataset": "recs", "min_seconds": 4.0}).json()
        assert len(longer["cuts"]) == 2 and len(longer["dropped"]) == 2

        # the edit: first cut moved later, the 2nd and 3rd merged, the last one split in two
        edited = [[cuts[0][0] + 0.5, cuts[0][1]], [cuts[1][0], cuts[2][1]],
                  [cuts[3][0], 13.0], [13.0, cuts[3][1]]]
        job = c.post("/api/datasets/refine", json={"modality": "audio", "dataset": "recs", "output_name": "recs-review",
                                                   "operations": [{"op": "slice", "params": {"cuts": {"take1.wav": edited}}}]})
        assert job.status_code == 200, job.text
        assert wait_for(c, job.json()["job_id"], ("completed", "failed"), timeout=120)["status"] == "completed"
        out = home / "datasets" / "audio" / "recs-review"
        rows = [json.loads(line) for line in (out / "slices.jsonl").read_text(encoding="utf-8").splitlines()]
        assert [[r["start"], r["end"]] for r in rows] == [[round(a, 3), round(b, 3)] for a, b in edited]
        assert all(r["source"] == "take1.wav" for r in rows)
        for row in rows:  # each clip holds exactly its span of the recording
            assert abs(sf.info(out / row["id"]).duration - (row["end"] - row["start"])) < 0.002
        lineage = c.get("/api/datasets/audio/recs-review/lineage").json()
        assert "recs" in json.dumps(lineage, ensure_ascii=False)

        # a cut list that overlaps, or names a recording the dataset lacks, is refused with the reason
        bad = c.post("/api/datasets/refine", json={"modality": "audio", "dataset": "recs", "output_name": "recs-bad",
                                                   "operations": [{"op": "slice", "params": {"cuts": {
                                                       "take1.wav": [[1.0, 3.0], [2.5, 4.0]]}}}]})
        assert bad.status_code == 422 and "overlaps" in bad.json()["error"]["message"]
        missing = c.post("/api/audio/slices/preview", json={"dataset": "recs", "recording": "nope.wav"})
        assert missing.status_code == 422 and "nope.wav" in missing.json()["error"]["message"]
        outside = c.post("/api/audio/slices/preview", json={"dataset": "../recs"})
        assert outside.status_code in (400, 403, 404, 422)
