"""The text training methods: what each one needs as data, and the error when it gets something else.

Why a table with no torch in it: the server checks a train request against it before anything
queues (a DPO run on an instruction set is a 422 naming the kind of data DPO needs, not a job that
dies ten minutes later), and the UI lists the methods from it. The worker then picks TRL's trainer
for the method (:mod:`pref_train`).

Data kinds: ``chat`` (instruction / conversation rows, and plain text for SFT), ``pairs`` (a
preferred and a rejected answer to one prompt), ``labels`` (KTO: one answer marked good or bad;
pairs split into one good and one bad row), ``prompts`` (GRPO: the prompt of any chat or
preference row; the reference answer, when there is one, goes to the reward functions).
"""

from __future__ import annotations

from typing import Any

from lora_factory.kit import LoRAFactoryError

METHODS: dict[str, dict[str, Any]] = {
    "sft": {"label_ja": "SFT (教師あり微調整)", "label_en": "SFT (supervised fine-tuning)",
            "data": ["chat", "text"], "reference": "none"},
    "dpo": {"label_ja": "DPO (選好ペア)", "label_en": "DPO (preference pairs)",
            "data": ["pairs"], "reference": "adapter_disabled", "beta": 0.1},
    "kto": {"label_ja": "KTO (良い / 悪いの二値ラベル)", "label_en": "KTO (good / bad labels)",
            "data": ["labels", "pairs"], "reference": "adapter_disabled", "beta": 0.1},
    "orpo": {"label_ja": "ORPO (参照モデルなし)", "label_en": "ORPO (reference-free)",
             "data": ["pairs"], "reference": "none", "beta": 0.1},
    "simpo": {"label_ja": "SimPO (参照モデルなし)", "label_en": "SimPO (reference-free)",
              "data": ["pairs"], "reference": "none", "beta": 2.0},
    "grpo": {"label_ja": "GRPO (報酬関数)", "label_en": "GRPO (reward functions)",
             "data": ["prompts"], "reference": "adapter_disabled", "beta": 0.0, "uses_rewards": True},
}
METHOD_NAMES = tuple(METHODS)
PREFERENCE_METHODS = ("dpo", "kto", "orpo", "simpo")

_KIND_WORDS = {
    "chat": ("指示・会話データ (alpaca / sharegpt / openai)", "instruction or chat data (alpaca / sharegpt / openai)"),
    "text": ("テキストデータ", "plain text"),
    "pairs": ("選好ペア (chosen / rejected)", "preference pairs (chosen / rejected)"),
    "labels": ("KTO ラベル付きデータ (良い / 悪い) か選好ペア", "KTO labelled data (good / bad) or preference pairs"),
    "prompts": ("プロンプトを含む会話データか選好データ", "chat or preference data with prompts"),
}


def describe_methods() -> list[dict[str, Any]]:
    """The methods as the UI lists them (id, labels, the data each needs, whether it learns from rewards)."""
    return [{"id": name, "label_ja": m["label_ja"], "label_en": m["label_en"], "data": list(m["data"]),
             "reference": m["reference"], "uses_rewards": bool(m.get("uses_rewards"))} for name, m in METHODS.items()]


def default_beta(method: str) -> float:
    return float(METHODS[method].get("beta", 0.1))


def data_kinds_of_rows(rows: list[dict[str, Any]]) -> set[str]:
    """The kinds present in canonical rows: ``pairs``, ``labels``, ``chat``, ``text``."""
    kinds = set()
    for row in rows:
        if row.get("preference") == "pair":
            kinds.add("pairs")
        elif row.get("preference") == "kto":
            kinds.add("labels")
        elif "messages" in row:
            kinds.add("chat")
        else:
            kinds.add("text")
    return kinds


def data_kinds_of_format(fmt: str | None) -> set[str] | None:
    """What a dataset format can hold (None when unknown: the worker checks the rows)."""
    if not fmt or fmt == "auto":
        return None
    if fmt == "preference":
        return {"pairs", "labels"}
    if fmt == "text":
        return {"text"}
    return {"chat"}


def accepts(method: str, kinds: set[str]) -> bool:
    """True when every kind of row in the data is usable by ``method``."""
    if method == "grpo":
        return bool(kinds) and "text" not in kinds
    wanted = set(METHODS[method]["data"])
    return bool(kinds) and kinds <= wanted


def wrong_data(method: str, dataset_name: str, found: set[str]) -> LoRAFactoryError:
    """422: the dataset holds a kind of data the method cannot train on; says which kind it needs."""
    needed = METHODS[method]["data"]
    need_ja = " / ".join(_KIND_WORDS[k][0] for k in needed)
    need_en = " / ".join(_KIND_WORDS[k][1] for k in needed)
    found_ja = "、".join(_KIND_WORDS[k][0] for k in sorted(found)) or "なし"
    found_en = ", ".join(_KIND_WORDS[k][1] for k in sorted(found)) or "nothing"
    return LoRAFactoryError(
        "DATASET_WRONG_KIND_FOR_METHOD",
        f"学習方式 {method.upper()} には {need_ja} が必要です。データセット「{dataset_name}」は {found_ja} です。",
        f"The {method.upper()} method needs {need_en}; the dataset '{dataset_name}' holds {found_en}.",
        http_status=422,
        detail={"field": "dataset", "dataset": dataset_name, "method": method, "needs": list(needed),
                "found": sorted(found)},
    )
