"""The plugin host: hookspecs, loading (built-ins, entry points, drop-ins) and owner dispatch.

    hookspecs.py  the hook contracts (the docstrings are the reference in docs/plugins.md)
    faces.py      the typed faces of the hook arguments ctx / session / workspace (protocols; kit re-exports)
    host.py       PluginHost: loads plugins, records broken ones, routes each call to the modality's owner
    hook_docs.py  generates / checks the hook reference in docs/plugins.md

Depends on: ``core.errors``, ``core.storage``. Knows no built-in plugin by name beyond DEFAULT_PLUGINS.
"""
