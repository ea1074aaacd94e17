from lora_factory.core.secrets import REDACTED, merge_secrets, split_secrets


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
