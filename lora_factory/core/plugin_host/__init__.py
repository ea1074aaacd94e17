"""The plugin host: hookspecs, loading (built-ins, entry points, drop-ins) and owner dispatch.

    hookspecs.py  the hook contracts (the docstrings are the reference in docs/plugins.md)
    faces.py      the typed faces of the hook arguments ctx / session / workspace (protocols; kit re-exports)
    host.py       PluginHost: loads plugins, records broken ones, routes each call to the modality's owner
    hook_docs.py  generates / checks the hook reference in docs/plugins.md
    extensions.py what plugins add to the server (routes), the CLI (commands) and the UI (static folders,
                  ES modules), collected per plugin and checked (owned modality, free name, inside folder)

Depends on: ``core.errors``, ``core.storage``. Knows no built-in plugin by name beyond DEFAULT_PLUGINS.
"""
