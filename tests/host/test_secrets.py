from lora_factory.core.storage.secrets import REDACTED, merge_secrets, split_secrets


def test_split_and_merge_round_trip_nested_specs():
    spec = {"operations": [{"op": "evol_instruct", "params": {"generator": {"type": "openai", "api_key": "k1",
                                                                            "base_url": "http://x"}}},
                           {"op": "filter", "params": {"max_tokens": 5}}],
            "hf_token": "t", "empty_token": None, "password": ""}
    redacted, secrets = split_secrets(spec)
    assert redacted["operations"][0]["params"]["generator"]["api_key"] == REDACTED
    assert redacted["hf_token"] == REDACTED
    assert redacted["operations"][1]["params"]["max_tokens"] == 5  # "max_tokens" is not a secret
    assert redacted["empty_token"] is None and redacted["password"] == ""
    assert merge_secrets(redacted, secrets) == spec
    assert spec["hf_token"] == "t"  # the input is not modified


def test_eta_after_a_resume_uses_only_the_steps_of_this_run(tmp_path, monkeypatch):
    """A regression: a run resumed at step 1200 of 4000 divided its few seconds by 1200 steps."""
    from lora_factory.core.jobs import context as context_module
    from lora_factory.core.jobs.context import JobContext

    clock = [100.0]
    monkeypatch.setattr(context_module.time, "monotonic", lambda: clock[0])
    ctx = JobContext("j", None, tmp_path / "run", tmp_path / "log.txt")
    ctx.progress(1201, 4000)
    assert ctx.last_metrics["eta"] is None
    clock[0] += 10.0
    ctx.progress(1211, 4000)  # 10 steps in 10 s: 2789 steps left -> 2789 s
    assert abs(ctx.last_metrics["eta"] - 2789.0) < 1e-6
