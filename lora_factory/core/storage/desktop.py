"""Opening a workspace folder on the desktop of the machine the server runs on (the UI's 📂 buttons).

Only the folders ``Workspace.open_path_keys`` names can be opened: a client gives a key, never a path.
``LORA_FACTORY_NO_OPEN=1`` (tests, headless servers) creates the folder without opening it.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from lora_factory.core.errors import LoRAFactoryError
from lora_factory.core.storage.workspace import Workspace


def open_path(workspace: Workspace, key: str) -> dict[str, Any]:
    keys = workspace.open_path_keys()
    if key not in keys:
        raise LoRAFactoryError("UNKNOWN_PATH_KEY", f"不明なキーです: {key}", f"Unknown path key: {key}",
                               detail={"key": key, "known": sorted(keys)})
    path = keys[key]
    path.mkdir(parents=True, exist_ok=True)
    opened = False
    if os.environ.get("LORA_FACTORY_NO_OPEN") != "1":
        opened = open_in_file_manager(path)
    return {"ok": True, "key": key, "path": str(path), "opened": opened}


def open_in_file_manager(path: Path) -> bool:
    """Open a folder on the desktop of the machine the server runs on; False when there is none."""
    try:
        if sys.platform.startswith("win"):
            os.startfile(str(path))  # type: ignore[attr-defined]
            return True
        opener = "open" if platform.system() == "Darwin" else "xdg-open"
        if platform.system() != "Darwin" and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            return False
        subprocess.Popen([opener, str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
        return True
    except (OSError, FileNotFoundError):
        return False
