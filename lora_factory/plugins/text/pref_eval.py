"""How strongly a model prefers the chosen answer over the rejected one, on held-out pairs.

margin = log p(chosen | prompt) - log p(rejected | prompt), summed over the answer's tokens (the
end-of-turn token included), through the run's chat template. Preference accuracy is the share of
pairs with a positive margin. Measured for the adapter and for the base (the same model with the
adapter disabled), it says whether preference training moved the model the way the data asked.
"""

from __future__ import annotations

from typing import Any


def _answer_logp(model: Any, tokenizer: Any, prompt: list[dict[str, Any]], answer: list[dict[str, Any]]) -> float:
    import torch

    prefix = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(prompt + answer, tokenize=False)
    if not full.startswith(prefix):
        raise ValueError("the chat template does not render the prompt as a prefix of the conversation")
    prefix_ids = tokenizer(prefix, add_special_tokens=False)["input_ids"]
    ids = tokenizer(full.rstrip("\n"), add_special_tokens=False)["input_ids"]
    input_ids = torch.tensor([ids], device=next(model.parameters()).device)
    with torch.no_grad():
        logits = model(input_ids=input_ids).logits.float()
    logp = torch.log_softmax(logits[0, :-1], dim=-1)
    targets = input_ids[0, 1:]
    token_logp = logp.gather(-1, targets[:, None])[:, 0]
    return float(token_logp[len(prefix_ids) - 1:].sum())


def preference_margins(model: Any, tokenizer: Any, pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """``{"margins": [...], "mean_margin", "accuracy"}`` over TRL-style pairs (``prompt`` / ``chosen`` /
    ``rejected`` message lists, see :func:`pref_data.pair_row`)."""
    margins = []
    was_training = model.training
    model.eval()
    try:
        for pair in pairs:
            chosen = _answer_logp(model, tokenizer, pair["prompt"], pair["chosen"])
            rejected = _answer_logp(model, tokenizer, pair["prompt"], pair["rejected"])
            margins.append(chosen - rejected)
    finally:
        model.train(was_training)
    return {"margins": margins, "mean_margin": sum(margins) / max(1, len(margins)),
            "accuracy": sum(1 for m in margins if m > 0) / max(1, len(margins))}


def adapter_vs_base(peft_model: Any, tokenizer: Any, pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """The same figures for the adapter and for the base (adapter disabled: one model in memory)."""
    adapter = preference_margins(peft_model, tokenizer, pairs)
    with peft_model.disable_adapter():
        base = preference_margins(peft_model, tokenizer, pairs)
    return {"adapter": adapter, "base": base,
            "margin_gain": adapter["mean_margin"] - base["mean_margin"],
            "accuracy_gain": adapter["accuracy"] - base["accuracy"]}
