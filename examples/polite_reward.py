"""A GRPO reward for the text plugin: drop this file in <workspace>/plugins/ and name it in params.rewards."""


def text_reward_functions():
    def polite(prompts, completions, answers, bonus=1.0):
        """1.0 (or ``bonus``) for an answer in the polite form, 0.0 otherwise."""
        return [bonus if c.rstrip().endswith(("です。", "ます。")) else 0.0 for c in completions]

    return {"polite": polite}
