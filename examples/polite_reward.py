"""A GRPO reward: drop this file in <workspace>/plugins/ (or install it as a plugin) and name it in params.rewards."""

from lora_factory.kit import hookimpl


@hookimpl
def register_reward_functions(register):
    def polite(prompts, completions, answers, bonus=1.0):
        """1.0 (or ``bonus``) for an answer in the polite form, 0.0 otherwise."""
        return [bonus if c.rstrip().endswith(("です。", "ます。")) else 0.0 for c in completions]

    register("polite", polite, description_ja="です・ます調なら 1", description_en="1 for the polite form")
