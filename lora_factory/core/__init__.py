"""The host: knows nothing of torch, transformers or diffusers; plugins do the ML work.

    errors.py       LoRAFactoryError: one error type with a stable code and messages in Japanese and English
    process.py      process groups per OS (POSIX sessions, CREATE_NEW_PROCESS_GROUP on Windows)
    schemas.py      pydantic request models shared by the routes and the CLI
    system_info.py  CPU / GPU / disk / library versions without importing torch
    services.py     wiring only: one object holding the parts below for a workspace
    storage/        workspace folders, SQLite, settings, secrets
    plugin_host/    hookspecs, plugin loading, owner dispatch
    catalog/        models, datasets, adapters, archives, the artifact registry
    inference/      the inference worker process, sessions, generated media
    jobs/           the job queue, job workers, publishing, recovery, regression

Lower layers never import higher ones: errors < storage < plugin_host < catalog < inference < jobs < services.
"""
