"""Storage: where the workspace's state lives on disk, and nothing else.

    workspace.py  the folders (models/, datasets/, lora_adapters/, artifacts/, logs/, runs/), safe names,
                  atomic writes, stale temporaries
    db.py         the SQLite file (WAL) shared by the server, the CLI and the workers; the timestamp format
    settings.py   settings.json (validated, written atomically)
    secrets.py    API keys kept out of run folders
    desktop.py    a workspace folder opened on the server's desktop (by key, never by path)

Depends on: ``core.errors`` only. Everything else in ``core`` may depend on it.
"""
