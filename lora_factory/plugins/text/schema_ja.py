"""Japanese titles for the parameter forms the UI generates from JSON schema.

The forms are built from the pydantic models' schemas (titles in English); the UI shows
``title_ja`` when the language is Japanese. One table keeps the wording consistent across the
training form and every refine operation.
"""

from __future__ import annotations

from typing import Any

from lora_factory.kit.presets import with_descriptions_ja, with_titles

TITLES_JA: dict[str, str] = {
    # training
    "rank": "LoRA ランク (r)", "alpha": "LoRA アルファ", "dropout": "ドロップアウト",
    "target_modules": "対象モジュール", "learning_rate": "学習率", "num_epochs": "エポック数",
    "max_steps": "最大ステップ数 (-1 = エポックで決める)", "batch_size": "バッチサイズ",
    "grad_accum": "勾配累積", "max_length": "最大長", "warmup_ratio": "ウォームアップ比率",
    "lr_scheduler": "学習率スケジューラ", "weight_decay": "重み減衰", "save_steps": "チェックポイント間隔 (ステップ)",
    "eval_ratio": "評価用に分ける割合", "packing": "パッキング", "assistant_only_loss": "回答部分だけで損失を計算",
    "gradient_checkpointing": "勾配チェックポイント (省メモリ)", "seed": "乱数シード",
    "quantization": "量子化 (4bit = QLoRA)", "logging_steps": "ログ間隔 (ステップ)",
    "strategy": "複数デバイスの分散方式",
    "overlong_rows": "最大長を超える会話",
    "text_stride": "長文ブロックの重なり (トークン, 文脈のみ)",
    "method": "学習方式", "beta": "ベータ (β, 空欄 = 方式の既定値)",
    "simpo_gamma": "SimPO の目標マージン (γ)", "num_generations": "GRPO: プロンプトごとの生成数",
    "max_completion_length": "GRPO: 生成の最大トークン数", "rewards": "GRPO: 報酬関数",
    # refine
    "unicode_form": "Unicode 正規化", "collapse_whitespace": "連続する空白をまとめる",
    "remove_control_chars": "制御文字を除去", "strip": "前後の空白を除去", "unit": "長さの単位",
    "min_length": "最小の長さ", "tokenizer": "トークナイザー (モデル)", "drop_empty_answers": "空の回答を除外",
    "min_japanese_ratio": "日本語の最低割合", "scope": "比較の範囲", "threshold": "類似度のしきい値",
    "num_perm": "MinHash の順列数", "ngram": "n-gram の文字数", "email": "メールアドレス", "phone": "電話番号",
    "url": "URL", "generator": "生成に使うモデル", "type": "種類", "base_url": "エンドポイント URL",
    "model": "モデル", "api_key": "API キー", "timeout": "タイムアウト (秒)", "adapter": "アダプタ",
    "rounds": "進化の回数", "methods": "進化の方法", "max_items": "最大件数", "generate_answers": "回答も生成する",
    "check_equal": "変化のない進化を除外", "keep_language": "元の言語を保つ", "max_new_tokens": "最大生成トークン数",
    "temperature": "温度 (temperature)",
}


DESCRIPTIONS_JA: dict[str, str] = {
    # training
    "rank": "LoRA の行列の大きさ。大きいほど表現力が増え、メモリと学習時間も増えます",
    "alpha": "LoRA の効き具合 (倍率 = アルファ / ランク)",
    "target_modules": "\"all-linear\"(すべての線形層)か、モジュール名のリスト",
    "strategy": "2 台以上のデバイスで学習するときの分散方式。ddp: 各デバイスにモデル全体 / fsdp: 重みを分割(GPU のみ) / deepspeed: ZeRO-2・ZeRO-3(DeepSpeed が必要)。1 台なら影響しません",
    "overlong_rows": "最大長より長い会話を、最大長で切り詰めるか、学習から除外するか(どちらもジョブのログと結果に件数が残ります)",
    "text_stride": "最大長より長いプレーンテキストはブロックに分けます。2 つ目以降のブロックは前のブロックの末尾をこのトークン数だけ文脈として繰り返します(二重には学習しません)",
    "method": "sft: 指示・会話・テキストデータ / dpo・orpo・simpo: 選好ペア / kto: 良い・悪いのラベルかペア / grpo: 報酬関数で採点するプロンプト",
    "beta": "DPO / KTO: 参照モデル(ベース)へ引き戻す強さ。ORPO: オッズ比の重み。SimPO: 報酬の倍率。GRPO: KL の重み。空欄なら方式の既定値 (0.1、SimPO 2.0、GRPO 0.0)",
    "simpo_gamma": "SimPO: 目標とする報酬のマージン", "num_generations": "GRPO: 1 つのプロンプトから生成する回答の数",
    "max_completion_length": "GRPO: 生成する回答の最大トークン数", "temperature": "生成のランダムさ (0 = いつも同じ)",
    "rewards": "GRPO の報酬関数。例: [{\"name\": \"exact_answer\"}, {\"name\": \"length\", \"target\": 40, \"weight\": 0.5}]",
    "max_steps": "-1 ならエポック数で長さが決まります。1 以上ならこのステップ数で止まり、エポック数より優先されます",
    # refine
    "min_length": "これより短い行を除外します",
    "tokenizer": "トークン数で数えるときに使うモデルのトークナイザー(長さの単位 = トークン)",
    "min_japanese_ratio": "日本語の文字の割合の下限", "scope": "行全体を比べるか、ユーザーの発話だけを比べるか",
    "base_url": "例: http://127.0.0.1:8080/v1", "model": "生成に使うモデル",
    "adapter": "生成に使うアダプタ(任意)",
}

# the values of choice fields, in words (the value itself is what is sent)
ENUM_LABELS: dict[str, dict[str, tuple[str, str]]] = {
    "strategy": {"ddp": ("DDP (データ並列)", "DDP (data parallel)"), "fsdp": ("FSDP (重みを分割)", "FSDP (sharded weights)"),
                 "deepspeed_zero2": ("DeepSpeed ZeRO-2", "DeepSpeed ZeRO-2"),
                 "deepspeed_zero3": ("DeepSpeed ZeRO-3", "DeepSpeed ZeRO-3")},
    "overlong_rows": {"truncate": ("切り詰める", "cut at max_length"), "drop": ("除外する", "leave out")},
    "quantization": {"none": ("なし", "none"), "4bit": ("4bit (QLoRA)", "4-bit (QLoRA)")},
    "lr_scheduler": {"linear": ("線形に減衰 (linear)", "linear decay"), "cosine": ("コサイン (cosine)", "cosine"),
                     "constant": ("一定 (constant)", "constant"),
                     "constant_with_warmup": ("ウォームアップ後に一定", "constant after warm-up"),
                     "cosine_with_restarts": ("コサイン (再始動あり)", "cosine with restarts")},
    "method": {"sft": ("SFT (教師あり微調整)", "SFT (supervised fine-tuning)"), "dpo": ("DPO (選好ペア)", "DPO (preference pairs)"),
               "kto": ("KTO (良い / 悪いのラベル)", "KTO (good / bad labels)"), "orpo": ("ORPO (参照モデルなし)", "ORPO (reference-free)"),
               "simpo": ("SimPO (参照モデルなし)", "SimPO (reference-free)"), "grpo": ("GRPO (報酬関数)", "GRPO (reward functions)")},
    "unicode_form": {"NFKC": ("NFKC (全角英数を半角に)", "NFKC (compatibility)"), "NFC": ("NFC", "NFC"), "none": ("しない", "none")},
    "unit": {"chars": ("文字数", "characters"), "tokens": ("トークン数", "tokens")},
    "scope": {"all": ("行全体", "whole rows"), "user": ("ユーザーの発話だけ", "user turns only")},
    "methods": {"constraints": ("制約を加える (constraints)", "add constraints"), "deepen": ("深く掘り下げる (deepen)", "deepen"),
                "concretize": ("具体的にする (concretize)", "concretize"),
                "reasoning": ("推論の段階を増やす (reasoning)", "more reasoning steps"),
                "breadth": ("新しい話題を作る (breadth)", "a new, rarer topic (breadth)")},
}

# the variants of a choice between kinds of settings (Evol-Instruct's generator)
VARIANT_TITLES: dict[str, tuple[str, str]] = {
    "OpenAIGeneratorParams": ("OpenAI 互換の API (外部・ローカルのサーバー)", "An OpenAI-compatible API (a server)"),
    "LocalGeneratorParams": ("このワークスペースのモデル", "A model of this workspace"),
}


def localise(schema: dict[str, Any], descriptions_ja: dict[str, str] | None = None) -> dict[str, Any]:
    """Japanese titles and descriptions, labelled choice values (``enum_labels_ja`` / ``enum_labels_en``)
    and titled variants on ``schema`` (in place, ``$defs`` too), so no English is left in the Japanese form."""
    with_titles(schema, TITLES_JA)
    with_descriptions_ja(schema, {**DESCRIPTIONS_JA, **(descriptions_ja or {})})

    def walk(node: dict[str, Any]) -> None:
        for name, prop in (node.get("properties") or {}).items():
            labels = ENUM_LABELS.get(name)
            if labels:
                prop.setdefault("enum_labels_ja", {k: v[0] for k, v in labels.items()})
                prop.setdefault("enum_labels_en", {k: v[1] for k, v in labels.items()})
        for def_name, definition in (node.get("$defs") or {}).items():
            if def_name in VARIANT_TITLES:
                definition.setdefault("title_ja", VARIANT_TITLES[def_name][0])
                definition.setdefault("title_en", VARIANT_TITLES[def_name][1])
            walk(definition)

    walk(schema)
    return schema


def with_japanese_titles(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with ``title_ja`` on every known property, in ``$defs`` too (modified in place), and the
    Japanese descriptions and choice labels (:func:`localise`)."""
    return localise(schema)
