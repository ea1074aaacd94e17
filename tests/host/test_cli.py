"""The CLI drives the same operations as the API, on the workspace directly."""

from __future__ import annotations

import json
import subprocess
import sys


def cli(home, *args, timeout=120):
    return subprocess.run([sys.executable, "-m", "lora_factory.cli", *args, "--home", str(home)],
                          capture_output=True, text=True, timeout=timeout)


def test_cli_train_wait_logs_chat_and_jobs(dummy_home):
    out = cli(dummy_home, "train", "--base-model", "base", "--dataset", "data.txt", "--output-name", "c1",
              "--modality", "dummy", "--preset", "fast", "--param", "steps=3", "--param", "delay=0.01", "--wait")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["status"] == "completed" and result["step"] == 3
    assert "3/3" in out.stderr  # the progress bar
    job_id = result["job_id"]
    listed = cli(dummy_home, "jobs", "list")
    assert job_id in listed.stdout and "completed" in listed.stdout
    logs = cli(dummy_home, "jobs", "logs", job_id, "--follow")
    assert logs.returncode == 0 and "job completed" in logs.stdout
    chat = cli(dummy_home, "chat", "abc", "--base-model", "base", "--adapter", "c1", "--compare", "--modality", "dummy")
    assert chat.returncode == 0, chat.stderr
    assert chat.stdout.splitlines() == ["--- base ---", "cba", "--- adapter ---", "[adapter] cba"]
    bad = cli(dummy_home, "train", "--base-model", "../x", "--dataset", "data.txt", "--output-name", "c2",
              "--modality", "dummy")
    assert bad.returncode == 2 and "[UNSAFE_PATH]" in bad.stderr


def test_home_is_accepted_before_and_after_the_subcommand(tmp_path):
    """README says every command takes ``--home DIR``: ``lora-factory --home DIR serve`` used to fail with
    "invalid choice" / lose DIR; both orders now name the same workspace, and the later one wins."""
    from lora_factory.cli import build_parser

    parser = build_parser()
    before = parser.parse_args(["--home", str(tmp_path / "a"), "serve"])
    after = parser.parse_args(["serve", "--home", str(tmp_path / "b")])
    both = parser.parse_args(["--home", str(tmp_path / "a"), "jobs", "list", "--home", str(tmp_path / "b")])
    neither = parser.parse_args(["plugins"])
    assert before.home == str(tmp_path / "a")
    assert after.home == str(tmp_path / "b")
    assert both.home == str(tmp_path / "b")
    assert neither.home is None
