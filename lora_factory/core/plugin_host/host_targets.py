"""Export targets the host offers for every modality (added to each modality's ``export_targets``).

``hub``: the adapter folder pushed to the Hugging Face Hub (or the endpoint set in the settings) with a
model card that says where its training data came from and how its regression runs went. It works
the same for any modality, so it is the host's, not a plugin's (see :mod:`lora_factory.core.jobs.hub_push`).
"""

from __future__ import annotations

from typing import Any

HUB_TARGET = "hub"
REPO_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$"
HOST_EXPORT_TARGETS: dict[str, dict[str, Any]] = {
    HUB_TARGET: {
        "label_ja": "Hugging Face Hub に公開", "label_en": "Push to the Hugging Face Hub",
        "description_ja": "アダプターをモデルカード(学習データの由来と回帰テストの結果)付きで Hub にアップロードします。"
                          "トークンはシステムタブの設定 (hf_token) を使います。",
        "description_en": "The adapter uploaded to the Hub with a model card (training data lineage, regression "
                          "results). The token is the hf_token setting (System tab).",
        "params_schema": {"type": "object", "required": ["repo_id"], "properties": {
            "repo_id": {"type": "string", "title": "Repo id", "title_ja": "リポジトリ (user/name)",
                        "pattern": REPO_ID_PATTERN},
            "private": {"type": "boolean", "default": True, "title": "Private", "title_ja": "非公開"},
            "commit_message": {"type": "string", "title": "Commit message", "title_ja": "コミットメッセージ"}}},
    },
}
