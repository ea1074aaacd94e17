"""Japanese titles for the parameter forms the UI generates from JSON schema.

The forms are built from the pydantic models' schemas (titles in English); the UI shows
``title_ja`` when the language is Japanese. One table keeps the wording consistent across the
training form and every refine operation.
"""

from __future__ import annotations

from typing import Any

from lora_factory.kit.presets import with_titles

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
    "strategy": "複数デバイスの分散方式 (ddp / fsdp / deepspeed)",
    "overlong_rows": "最大長を超える会話 (truncate = 切り詰め / drop = 除外)",
    "text_stride": "長文ブロックの重なり (トークン, 文脈のみ)",
    "method": "学習方式 (sft / dpo / kto / orpo / simpo / grpo)", "beta": "ベータ (β, 空欄 = 方式の既定値)",
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


def with_japanese_titles(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with ``title_ja`` on every known property, in ``$defs`` too (modified in place)."""
    return with_titles(schema, TITLES_JA)
