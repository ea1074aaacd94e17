"""The catalog: what the workspace holds (models, datasets, adapters) and where each came from.

    models.py     models and adapters: list, import, delete (refused while a job uses them)
    datasets.py   dataset files and folders: upload, versions, preview, stats, lineage, export
    artifacts.py  registry of artifacts with content hash and lineage (SQLite)
    dataset_index.py  datasets listed by an index file (``dataset_info.json``) imported and registered
    archives.py   zip uploads checked member by member and extracted into a temp folder

Depends on: ``core.errors``, ``core.storage``; calls plugins through the PluginHost it is given.
"""
