"""``lora-factory audio-dictionary``: the user dictionary from the command line, the same operations
as ``/api/audio/dictionary`` and ``/api/audio/read`` (``dictionary_store``), added through the host's
``register_commands`` hook.

    lora-factory audio-dictionary list
    lora-factory audio-dictionary add 東京 とーきょー [--note ...]
    lora-factory audio-dictionary remove 東京
    lora-factory audio-dictionary read "LFは1,100円です。" [--latin kana]
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from lora_factory.plugins.audio import dictionary_store

NAME = "audio-dictionary"
HELP = "the voice's user dictionary: list / add / remove entries, read a text as it will be spoken"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["list", "add", "remove", "read"])
    parser.add_argument("words", nargs="*", help="add: SURFACE READING; remove: SURFACE; read: TEXT")
    parser.add_argument("--note", default="")
    parser.add_argument("--latin", default="keep", help="read: keep / spell / kana")


def run(args: argparse.Namespace, workspace: Any, modality: str) -> int:
    from lora_factory.kit import LoRAFactoryError

    folder = workspace.datasets_dir(modality)
    wanted = {"add": 2, "remove": 1, "read": 1, "list": 0}[args.action]
    if len(args.words) != wanted:
        usage = {"add": "add SURFACE READING", "remove": "remove SURFACE", "read": "read TEXT", "list": "list"}
        raise LoRAFactoryError("INVALID_REQUEST", f"使い方: audio-dictionary {usage[args.action]}",
                               f"Usage: audio-dictionary {usage[args.action]}", 422)
    entries = dictionary_store.load_entries(folder)
    if args.action == "add":
        entries = dictionary_store.save_entries(
            folder, [*entries, {"surface": args.words[0], "reading": args.words[1], "note": args.note}])
    elif args.action == "remove":
        kept = [e for e in entries if e["surface"] != args.words[0]]
        if len(kept) == len(entries):
            raise LoRAFactoryError("DICTIONARY_ENTRY_NOT_FOUND", f"「{args.words[0]}」は辞書にありません。",
                                   f"'{args.words[0]}' is not in the dictionary.", 404)
        entries = dictionary_store.save_entries(folder, kept)
    elif args.action == "read":
        print(json.dumps(dictionary_store.read_preview(folder, args.words[0], args.latin), ensure_ascii=False, indent=2))
        return 0
    print(json.dumps({"entries": entries}, ensure_ascii=False, indent=2))
    return 0
